"""Regressions: a bot restart keeps the workers' jobs, a stale pending result, bad entries, per-stream COUNT."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import redis

from inference.cluster.dispatch import ClusterExecutor
from inference.cluster.keys import BOT_GROUP, WORKERS_GROUP
from inference.cluster.wire import encode_batch, encode_result
from inference.engine import Engine
from inference.jobs import Failed, Finished, TextToImageJob
from inference.prepare import PreparedJob
from tests.cluster.helpers import (
    cluster_config,
    start_worker,
    stop,
    wait_for,
    wait_for_worker,
    wait_until_running,
    worker_and_dispatcher,
    worker_toml,
)

NESTED = "[" * 200000  # deep enough that json.loads raises RecursionError


def _job(job_id: str, steps: int = 4, count: int = 1, size: int = 64) -> TextToImageJob:
    return TextToImageJob(job_id=job_id, owner=1, prompt="a lighthouse", width=size, height=size, steps=steps,
                          count=count, model="tiny")


async def test_a_job_a_worker_runs_when_the_engine_stops_is_not_cancelled(tiny_config, valkey, client: redis.Redis,
                                                                         tmp_path: Path) -> None:
    worker = start_worker(worker_toml(tiny_config, valkey.connection_url, tmp_path), "w1")
    config = cluster_config(tiny_config, valkey.connection_url)
    engine = Engine(config, ClusterExecutor(config))
    executor = None
    try:
        await asyncio.to_thread(wait_for_worker, client, "w1", worker)
        await engine.start()
        job = _job("a", steps=40, count=4, size=128)
        engine.submit(job)
        await asyncio.to_thread(wait_until_running, client, "a", "w1", worker)  # the worker is running it
        await engine.stop()
        assert not client.exists("t:cancel:a")
        executor = ClusterExecutor(config)  # the bot started again; the job log hands the job over again
        [outcome] = await asyncio.wrap_future(executor.run_batch([PreparedJob(job)], lambda e: None))
        assert isinstance(outcome, Finished), outcome
    finally:
        await engine.stop()
        if executor is not None:
            await asyncio.to_thread(executor.shutdown)
        stop(worker)


def test_a_stale_pending_result_does_not_stop_new_jobs_after_a_restart(tiny_config, valkey, client: redis.Redis,
                                                                       tmp_path: Path) -> None:
    client.xgroup_create("t:results", BOT_GROUP, id="0", mkstream=True)
    client.xadd("t:results", encode_result(Failed("ghost", "gone"), "old", 2**20))
    client.xreadgroup(BOT_GROUP, "bot", {"t:results": ">"})  # read before the restart, never acknowledged
    with worker_and_dispatcher(tiny_config, valkey.connection_url, client, tmp_path) as (worker, executor):
        [outcome] = executor.run_batch([PreparedJob(_job("a"))], lambda e: None).result(timeout=45)
        assert isinstance(outcome, Finished), outcome


def test_a_worker_skips_a_deeply_nested_entry_and_serves_the_next(tiny_config, valkey, client: redis.Redis,
                                                                  tmp_path: Path) -> None:
    with worker_and_dispatcher(tiny_config, valkey.connection_url, client, tmp_path) as (worker, executor):
        client.xadd("t:jobs:tiny", {"v": "1", "meta": NESTED})
        [outcome] = executor.run_batch([PreparedJob(_job("a"))], lambda e: None).result(timeout=45)
        assert isinstance(outcome, Finished), outcome
        assert worker.poll() is None
        assert client.xpending("t:jobs:tiny", WORKERS_GROUP)["pending"] == 0


def test_a_deeply_nested_result_does_not_stop_the_bots_collector(tiny_config, valkey, client: redis.Redis,
                                                                 tmp_path: Path) -> None:
    with worker_and_dispatcher(tiny_config, valkey.connection_url, client, tmp_path) as (worker, executor):
        client.xadd("t:results", {"v": "1", "meta": NESTED})
        [outcome] = executor.run_batch([PreparedJob(_job("a"))], lambda e: None).result(timeout=45)
        assert isinstance(outcome, Finished), outcome


def test_one_free_slot_serves_entries_waiting_on_two_streams_without_a_takeover(tiny_config, valkey,
                                                                                client: redis.Redis,
                                                                                tmp_path: Path) -> None:
    for stream, job_id in (("t:jobs:tiny", "a"), ("t:jobs:-", "b")):
        client.xgroup_create(stream, WORKERS_GROUP, id="0", mkstream=True)
        client.xadd(stream, encode_batch([PreparedJob(_job(job_id))], 2**20))
    worker = start_worker(worker_toml(tiny_config, valkey.connection_url, tmp_path, slots=1, max_attempts=1), "w1")
    try:
        wait_for(lambda: client.xlen("t:results") == 2, what="two results")
        metas = {m["job_id"]: m for m in (json.loads(f[b"meta"]) for _, f in client.xrange("t:results"))}
        assert {k: m["status"] for k, m in metas.items()} == {"a": "finished", "b": "finished"}, metas
    finally:
        stop(worker)
