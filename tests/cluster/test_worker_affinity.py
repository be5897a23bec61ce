"""A worker holding two models with room for one on its device reads the stream of the model it has on
the device first (within queue.affinity_skips reads in a row), so mixed batches do not make it switch
models every batch; with affinity off it takes them as they come. Against a real Valkey server."""

from __future__ import annotations

import asyncio
import dataclasses
import json

import pytest
import redis

from config import Config
from inference.cluster.keys import WORKERS_GROUP
from inference.cluster.reading import ReadOrder
from inference.cluster.wire import encode_batch
from inference.cluster.worker import Worker
from inference.jobs import TextToImageJob
from inference.prepare import PreparedJob
from tests.cluster.helpers import cluster_config


def test_the_preferred_streams_are_read_alone_at_most_bound_times_in_a_row() -> None:
    order = ReadOrder(bound=2)
    streams = {"a": "t:jobs:a", "b": "t:jobs:b"}
    assert order.first(streams, frozenset({"b"}), "t:jobs:-") == ["t:jobs:b", "t:jobs:-"]
    assert order.may_read_alone()
    order.took_preferred()
    order.took_preferred()
    assert not order.may_read_alone()  # the bound: the next read takes from every stream
    assert order.first(streams, frozenset({"b"}), "t:jobs:-") == ["t:jobs:b", "t:jobs:-"]  # still read first
    order.read_all()
    assert order.may_read_alone()
    assert order.first(streams, frozenset({"a", ""}), "t:jobs:-") == ["t:jobs:a", "t:jobs:-"]
    assert order.first(streams, frozenset(), "t:jobs:-") == []  # a switch costs nothing: no preference
    assert order.first(streams, frozenset({"c"}), "t:jobs:-") == []  # not a model of this worker
    assert ReadOrder(bound=0).first(streams, frozenset({"a"}), "t:jobs:-") == []  # affinity off


def _job(job_id: str, model: str) -> TextToImageJob:
    return TextToImageJob(job_id=job_id, owner=1, prompt="a lighthouse", width=64, height=64, steps=1, model=model)


def _two_models(tiny_config: Config, url: str, skips: int) -> Config:
    twin = dataclasses.replace(tiny_config.model, name="twin")
    config = cluster_config(tiny_config, url, slots=1)
    return dataclasses.replace(config, models=(twin,), device=dataclasses.replace(config.device, resident_models=1),
                               queue=dataclasses.replace(config.queue, affinity_skips=skips))


async def _switches(tiny_config: Config, url: str, client: redis.Redis, skips: int) -> tuple[int, list[str]]:
    """Model switches while one worker runs 3 batches of each model, sent alternately."""
    for model in ("tiny", "twin"):
        client.xgroup_create(f"t:jobs:{model}", WORKERS_GROUP, id="0", mkstream=True)
    worker = Worker(_two_models(tiny_config, url, skips), name="w1")
    task = asyncio.create_task(worker.run())
    try:
        async with asyncio.timeout(60):
            while not client.exists("t:worker:w1"):
                assert not task.done(), task.exception()
                await asyncio.sleep(0.05)
        before = len(worker.executor.model_switches())
        for i in range(3):  # the bot's fair order: one member on each model
            for model in ("tiny", "twin"):
                job = _job(f"{model}{i}", model)
                client.xadd(f"t:jobs:{model}", encode_batch([PreparedJob(job)], 2**20))
        async with asyncio.timeout(90):
            while client.xlen("t:results") < 6:
                assert not task.done(), task.exception()
                await asyncio.sleep(0.05)
        order = [json.loads(f[b"meta"])["job_id"] for _, f in client.xrange("t:results")]
        return len(worker.executor.model_switches()) - before, order
    finally:
        worker.stop()
        await asyncio.wait_for(task, 60)


@pytest.mark.parametrize("skips", [0, 2])
async def test_a_worker_prefers_the_model_on_its_device_within_the_bound(tiny_config, valkey, client: redis.Redis,
                                                                         skips: int) -> None:
    switches, order = await _switches(tiny_config, valkey.connection_url, client, skips)
    assert sorted(order) == ["tiny0", "tiny1", "tiny2", "twin0", "twin1", "twin2"]  # every job ran once
    if skips == 0:
        assert switches >= 3  # taken as they came: the models alternate
    else:
        assert switches <= 2, order  # the model on the device first: one run of each model
        runs = 1 + sum(1 for x, y in zip(order, order[1:], strict=False) if x[:4] != y[:4])
        assert runs <= 3, order  # e.g. tiny0-2 then twin0-2 (a read may catch twin0 with tiny0: one run more)
