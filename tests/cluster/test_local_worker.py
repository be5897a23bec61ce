"""``cluster.local_worker``: the bot's own GPU serves as one more worker of its cluster, in its process."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
from pathlib import Path

import pytest
import redis

from config import ConfigError, load_config
from inference.backends import build_executor
from inference.cluster.dispatch import ClusterExecutor
from inference.cluster.local import ClusterWithLocalWorker
from inference.engine import Engine
from inference.jobs import Failed, Finished, JobEvent, Progress, TextToImageJob
from inference.prepare import PreparedJob
from tests.cluster.helpers import cluster_config, wait_for


def _job(job_id: str, owner: int) -> TextToImageJob:
    return TextToImageJob(job_id=job_id, owner=owner, prompt="a lighthouse", width=64, height=64, steps=2,
                          model="tiny")


async def test_the_bots_own_gpu_serves_the_cluster_with_no_worker_process(
        tiny_config, valkey, client: redis.Redis, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    broken = tmp_path / "broken-model"
    broken.mkdir()  # there, but no model in it: the local worker's load fails, as a worker's would
    config = cluster_config(tiny_config, valkey.connection_url, local_worker=True)
    config = dataclasses.replace(config, models=(dataclasses.replace(config.model, name="broken",
                                                                     source=str(broken)),))
    caplog.set_level(logging.ERROR, logger="inference.cluster.worker")
    executor = build_executor(config)
    assert isinstance(executor, ClusterWithLocalWorker)
    name = f"{socket.gethostname()}-local"
    engine = Engine(config, executor)
    done: dict[str, JobEvent] = {}
    finished = asyncio.Event()

    def listen(event: JobEvent) -> None:
        if isinstance(event, Finished | Failed):
            done[event.job_id] = event
            if len(done) == 3:
                finished.set()

    engine.add_listener(listen)
    try:
        await asyncio.to_thread(wait_for, lambda: client.exists(f"t:worker:{name}"), 60, "the local worker")
        await engine.start()
        for job in (_job("a", 1), _job("b", 2), _job("c", 1)):
            engine.submit(job)
        await asyncio.wait_for(finished.wait(), 60)
        assert all(isinstance(e, Finished) for e in done.values()), done
        [listed] = await asyncio.wrap_future(executor.workers())
        assert listed["name"] == name and listed["models"] == ["tiny"] and listed["served"] == 3
        assert any("model broken could not load" in r.getMessage() for r in caplog.records)
    finally:
        await engine.stop()
    assert not client.keys("t:worker:*")
    assert not executor.local_worker.running


async def test_stopping_lets_the_local_workers_running_batch_end_and_answer_it(
        tiny_config, valkey, client: redis.Redis) -> None:
    config = cluster_config(tiny_config, valkey.connection_url, local_worker=True, worker_name="here")
    executor = ClusterWithLocalWorker(config)
    try:
        await asyncio.to_thread(wait_for, lambda: client.exists("t:worker:here"), 60, "the local worker")
        started = asyncio.Event()
        loop = asyncio.get_running_loop()
        job = dataclasses.replace(_job("long", 1), steps=20, count=4)
        future = executor.run_batch([PreparedJob(job)],
                                    lambda e: isinstance(e, Progress) and loop.call_soon_threadsafe(started.set))
        await asyncio.wait_for(started.wait(), 60)
        await asyncio.to_thread(executor.local_worker.stop)  # while the batch runs
        [outcome] = await asyncio.wrap_future(future)
        assert isinstance(outcome, Finished) and len(outcome.result.images) == 4
        assert not client.keys("t:worker:*")
    finally:
        await asyncio.to_thread(executor.shutdown)


def test_local_worker_is_off_by_default_and_needs_a_redis_url(tmp_path: Path) -> None:
    toml = tmp_path / "easel.toml"
    toml.write_text("[cluster]\n", encoding="utf-8")
    assert load_config(toml, environ={}).cluster.local_worker is False
    toml.write_text('[cluster]\nredis_url = "redis://127.0.0.1:6379/0"\nlocal_worker = true\n', encoding="utf-8")
    assert load_config(toml, environ={}).cluster.local_worker is True
    toml.write_text("[cluster]\nlocal_worker = true\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="cluster.local_worker: needs cluster.redis_url"):
        load_config(toml, environ={})


def test_without_local_worker_the_bot_dispatches_only(tiny_config, valkey) -> None:
    executor = build_executor(cluster_config(tiny_config, valkey.connection_url))
    try:
        assert type(executor) is ClusterExecutor
    finally:
        executor.shutdown()
