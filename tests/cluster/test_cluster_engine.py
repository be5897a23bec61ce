"""The engine driving the cluster executor, worker faults that end in a clear failure, and /easel status."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import signal
from pathlib import Path

import redis

from inference.cluster.dispatch import ClusterExecutor
from inference.cluster.keys import WORKERS_GROUP
from inference.cluster.status import workers_text
from inference.cluster.wire import encode_batch
from inference.engine import Engine
from inference.jobs import Cancelled, Failed, Finished, JobEvent, TextToImageJob
from inference.prepare import PreparedJob
from tests.cluster.helpers import (
    cluster_config,
    log_tail,
    start_worker,
    stop,
    wait_for,
    wait_for_worker,
    wait_until_running,
    worker_and_dispatcher,
    worker_toml,
)


def _job(job_id: str, owner: int = 1, steps: int = 4, count: int = 1, size: int = 64) -> TextToImageJob:
    return TextToImageJob(job_id=job_id, owner=owner, prompt="a lighthouse", width=size, height=size, steps=steps,
                          count=count, model="tiny")


async def test_the_engine_serves_every_members_jobs_through_a_worker(tiny_config, valkey, client: redis.Redis,
                                                                    tmp_path: Path) -> None:
    worker = start_worker(worker_toml(tiny_config, valkey.connection_url, tmp_path), "w1")
    config = cluster_config(tiny_config, valkey.connection_url)
    engine = Engine(config, ClusterExecutor(config))
    done: dict[str, JobEvent] = {}
    finished = asyncio.Event()

    def listen(event: JobEvent) -> None:
        if isinstance(event, Finished | Failed):
            done[event.job_id] = event
            if len(done) == 3:
                finished.set()

    engine.add_listener(listen)
    try:
        await asyncio.to_thread(wait_for_worker, client, "w1", worker)
        await engine.start()
        for job in (_job("a", 1), _job("b", 2), _job("c", 1)):
            engine.submit(job)
        await asyncio.wait_for(finished.wait(), 45)
        assert all(isinstance(e, Finished) for e in done.values()), done
        assert engine.status().served == 3
    finally:
        await engine.stop()
        stop(worker)


def test_a_job_that_stopped_its_workers_too_often_fails_with_the_reason(tiny_config, valkey, client: redis.Redis,
                                                                        tmp_path: Path) -> None:
    client.xgroup_create("t:jobs:tiny", WORKERS_GROUP, id="0", mkstream=True)
    client.xadd("t:jobs:tiny", encode_batch([PreparedJob(_job("a"))], 2**20))
    client.xreadgroup(WORKERS_GROUP, "crashed", {"t:jobs:tiny": ">"})  # delivered once, never answered
    worker = start_worker(worker_toml(tiny_config, valkey.connection_url, tmp_path, max_attempts=1), "w1")
    try:
        wait_for(lambda: client.xlen("t:results") == 1, what="a result")
        meta = json.loads(client.xrange("t:results")[0][1][b"meta"])
        assert meta["status"] == "failed" and "stopped 1 GPU workers" in meta["message"]
        assert client.xpending("t:jobs:tiny", WORKERS_GROUP)["pending"] == 0
    finally:
        stop(worker)


def test_a_worker_told_to_stop_finishes_its_job_and_leaves(tiny_config, valkey, client: redis.Redis,
                                                          tmp_path: Path) -> None:
    with worker_and_dispatcher(tiny_config, valkey.connection_url, client, tmp_path) as (worker, executor):
        future = executor.run_batch([PreparedJob(_job("a", steps=40, count=4, size=128))], lambda e: None)
        wait_until_running(client, "a", "w1", worker)
        worker.send_signal(signal.SIGTERM)
        [outcome] = future.result(timeout=90)
        assert isinstance(outcome, Finished) and len(outcome.result.images) == 4
        assert worker.wait(30) == 0
        assert not client.exists("t:worker:w1")
        assert "letting 1 running batch(es) end" in log_tail(tmp_path / "worker.toml", "w1")


def test_status_lists_each_worker_with_its_models_device_and_heartbeat() -> None:
    text = workers_text([{"name": "gpu-a", "models": ["sdxl", "sd15"], "device": "cuda:0", "dtype": "float16",
                          "slots": 1, "free": 0, "served": 12, "beat": 100.0}], now=103.0)
    assert text == "Workers:\n- gpu-a: sdxl, sd15 on `cuda:0` (float16), 12 served, 1/1 busy, heartbeat 3 s ago"
    assert "none connected" in workers_text([])


def test_a_member_cancels_a_job_a_worker_is_running(tiny_config, valkey, client: redis.Redis, tmp_path: Path) -> None:
    with worker_and_dispatcher(tiny_config, valkey.connection_url, client, tmp_path) as (worker, executor):
        future = executor.run_batch([PreparedJob(_job("a", steps=40, count=4, size=128))], lambda e: None)
        wait_until_running(client, "a", "w1", worker)  # a long job (4 images of 128 px, 40 steps) is under way
        executor.cancel("a")
        assert future.result(timeout=90) == [Cancelled("a")]


def test_a_job_cancelled_before_any_worker_took_it_is_never_sent(tiny_config, valkey, client: redis.Redis) -> None:
    executor = ClusterExecutor(cluster_config(tiny_config, valkey.connection_url))
    try:
        future = executor.run_batch([PreparedJob(_job("a"))], lambda e: None)
        executor.cancel("a")
        assert future.result(timeout=10) == [Cancelled("a")]
        assert client.xlen("t:jobs:tiny") == 0
    finally:
        executor.shutdown()


def test_batches_waiting_for_a_worker_go_out_in_the_order_they_came(tiny_config, valkey, client: redis.Redis,
                                                                   tmp_path: Path) -> None:
    executor = ClusterExecutor(cluster_config(tiny_config, valkey.connection_url))
    worker = None
    try:
        ids = [f"j{i}" for i in range(5)]
        futures = [executor.run_batch([PreparedJob(_job(i))], lambda e: None) for i in ids]
        answered: list[str] = []  # in the order their results were settled (both streams are trimmed)
        for job_id, future in zip(ids, futures, strict=True):
            future.add_done_callback(lambda _, job_id=job_id: answered.append(job_id))
        worker = start_worker(worker_toml(tiny_config, valkey.connection_url, tmp_path), "w1")
        outcomes = [o for f in futures for o in f.result(timeout=55)]
        assert all(isinstance(o, Finished) for o in outcomes)
        # One worker with one slot reads and answers them in the order they were sent.
        assert answered == ids
    finally:
        executor.shutdown()
        if worker is not None:
            stop(worker)


def test_a_model_a_worker_could_not_load_is_not_sent_to_it(tiny_config, valkey, client: redis.Redis,
                                                          tmp_path: Path) -> None:
    broken = tmp_path / "broken-model"
    broken.mkdir()  # there, but no model in it: the worker's load fails
    toml = worker_toml(tiny_config, valkey.connection_url, tmp_path)
    toml.write_text(toml.read_text(encoding="utf-8") + f'\n[[models]]\nsource = "{broken}"\nname = "broken"\n'
                    'family = "sd15"\n', encoding="utf-8")
    worker = start_worker(toml, "w1")
    config = cluster_config(tiny_config, valkey.connection_url, no_worker_timeout_s=0.5)
    config = dataclasses.replace(config, models=(dataclasses.replace(config.model, name="broken",
                                                                     source=str(broken)),))
    executor = ClusterExecutor(config)
    try:
        wait_for_worker(client, "w1", worker)
        assert json.loads(client.hget("t:worker:w1", "models")) == ["tiny"]
        job = dataclasses.replace(_job("b"), model="broken")
        [outcome] = executor.run_batch([PreparedJob(job)], lambda e: None).result(timeout=20)
        assert isinstance(outcome, Failed) and "'broken'" in outcome.message
        assert client.xlen("t:jobs:broken") == 0
    finally:
        executor.shutdown()
        stop(worker)
