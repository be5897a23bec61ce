"""The bot's dispatcher against a real Valkey server, with worker records written by hand (no worker
process): room per worker, a resent batch's place, results deleted once handled, Redis out of
memory, results of jobs not handed over yet, and withdraw racing a batch's outcome."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator

import pytest
import redis

from config import ClusterConfig, Config, DeviceConfig, ModelConfig
from inference.cluster import collect
from inference.cluster.dispatch import ClusterExecutor
from inference.cluster.keys import BOT_GROUP, WORKERS_GROUP
from inference.cluster.wire import encode_batch, encode_result
from inference.executor import Withdrawn, internal_error_message
from inference.jobs import Cancelled, Failed, TextToImageJob
from inference.prepare import PreparedJob
from tests.cluster.helpers import wait_for

RESULTS = "t:results"


@pytest.fixture
def config(valkey) -> Config:
    """Two models ("tiny", "b") and nothing on disk: no worker here loads them."""
    model = ModelConfig(source="unused", name="tiny", family="sd15")
    return Config(model=model, models=(ModelConfig(source="unused", name="b", family="sd15"),),
                  device=DeviceConfig(device="cpu", previews=False, pin_threads=False),
                  cluster=ClusterConfig(redis_url=valkey.connection_url, prefix="t", heartbeat_s=0.2, lease_s=1.0))


@pytest.fixture
def executor(config: Config) -> Iterator[ClusterExecutor]:
    ex = ClusterExecutor(config)
    try:
        yield ex
    finally:
        ex.shutdown()


def _worker(client: redis.Redis, name: str, models: list[str], slots: int = 1, **extra: object) -> None:
    client.hset(f"t:worker:{name}", mapping={"name": name, "models": json.dumps(models), "device": "cpu",
                                             "dtype": "float32", "slots": slots, "free": slots, "served": 0,
                                             "beat": 1.0, **{k: str(v) for k, v in extra.items()}})


def _job(job_id: str, model: str = "tiny", size: int = 64) -> PreparedJob:
    return PreparedJob(TextToImageJob(job_id=job_id, owner=1, prompt="a lighthouse", width=size, height=size,
                                      steps=4, model=model))


def _sent(client: redis.Redis, stream: str = "t:jobs:tiny") -> list[str]:
    """The job ids in a job stream, in the order they were sent."""
    return [j["job_id"] for _, f in client.xrange(stream) for j in json.loads(f[b"meta"])["jobs"]]


def _answer(client: redis.Redis, job_id: str, message: str = "boom") -> None:
    client.xadd(RESULTS, encode_result(Failed(job_id, message), "w1", 2**20))


def _state(executor: ClusterExecutor, future):
    return executor._by_future[future]


def _caught_up(executor: ClusterExecutor, client: redis.Redis) -> None:
    """One job there and back: the executor has read everything older and now takes new results."""
    _worker(client, "w0", ["tiny"], slots=8)
    future = executor.run_batch([_job("warm")], lambda e: None)
    wait_for(lambda: "warm" in _sent(client), what="the warm-up job sent")
    _answer(client, "warm")
    future.result(timeout=20)
    client.delete("t:worker:w0", "t:jobs:tiny")


# ------------------------------------------------------------------ 1. room per worker


def test_a_worker_holding_two_models_gets_its_slots_plus_one_in_all(executor, client: redis.Redis) -> None:
    _worker(client, "w1", ["tiny", "b"], slots=1)
    futures = [executor.run_batch([_job(jid, model)], lambda e: None)
               for jid, model in (("a", "tiny"), ("b1", "b"), ("c", "tiny"), ("d", "b"))]
    wait_for(lambda: len(_sent(client)) + len(_sent(client, "t:jobs:b")) == 2, what="two batches sent")
    for future in futures[2:]:  # room for its model (two places each, one taken), none in all
        assert not executor._on_loop(executor._room_for(_state(executor, future))).result(10)
    assert _sent(client) == ["a"] and _sent(client, "t:jobs:b") == ["b1"]  # in the order handed over
    _answer(client, "a")
    wait_for(lambda: len(_sent(client)) + len(_sent(client, "t:jobs:b")) == 3, what="the next batch sent")


def test_room_counts_only_workers_that_can_run_the_batch(executor, client: redis.Redis) -> None:
    _worker(client, "small", ["tiny"], slots=1, max_pixels=64 * 64, loras=json.dumps({"tiny": []}))
    small = executor.run_batch([_job("small")], lambda e: None)
    wait_for(lambda: _sent(client) == ["small"], what="the small batch sent")
    big = executor.run_batch([_job("big", size=128)], lambda e: None)  # larger than the worker takes
    assert not executor._on_loop(executor._room_for(_state(executor, big))).result(10)
    assert _sent(client) == ["small"]
    assert not small.done()


def test_a_later_batch_of_another_model_goes_when_the_earlier_one_cannot(executor, client: redis.Redis) -> None:
    _worker(client, "w1", ["tiny"], slots=1)
    _worker(client, "w2", ["b"], slots=0)
    first = executor.run_batch([_job("b1", "b")], lambda e: None)
    wait_for(lambda: _sent(client, "t:jobs:b") == ["b1"], what="the first b batch sent")
    executor.run_batch([_job("b2", "b")], lambda e: None)  # no room left for "b": it waits
    executor.run_batch([_job("a")], lambda e: None)  # later, but its model has room: it goes
    wait_for(lambda: _sent(client) == ["a"], what="the tiny batch sent past the waiting b batch")
    assert _sent(client, "t:jobs:b") == ["b1"]
    assert not first.done()


# ------------------------------------------------------------------ 2. a resent batch keeps its place


def test_a_batch_sent_again_after_redis_lost_its_streams_keeps_its_place(executor, client: redis.Redis) -> None:
    _worker(client, "w1", ["tiny"], slots=0)
    first = executor.run_batch([_job("a")], lambda e: None)
    wait_for(lambda: _sent(client) == ["a"], what="the first batch sent")
    second = executor.run_batch([_job("b")], lambda e: None)
    wait_for(lambda: _state(executor, second).seq >= 0, what="the second batch numbered")
    seq = _state(executor, first).seq
    assert seq < _state(executor, second).seq
    client.flushall()  # a Redis restarted without persistence: streams, groups and worker records gone
    _worker(client, "w1", ["tiny"], slots=0)
    wait_for(lambda: _sent(client) == ["a"], what="the first batch sent again")
    assert _state(executor, first).seq == seq
    assert not executor._on_loop(executor._room_for(_state(executor, second))).result(10)
    assert _sent(client) == ["a"]


# ------------------------------------------------------------------ 3 and 5. results deleted; results kept


def test_handled_results_are_deleted_duplicates_and_unreadable_ones_too(executor, client: redis.Redis) -> None:
    _caught_up(executor, client)
    _worker(client, "w1", ["tiny"])
    future = executor.run_batch([_job("a")], lambda e: None)
    wait_for(lambda: _sent(client) == ["a"], what="the batch sent")
    _answer(client, "a", "first")
    [outcome] = future.result(timeout=20)
    assert isinstance(outcome, Failed) and outcome.message == "first"
    wait_for(lambda: client.xlen(RESULTS) == 0, what="the result deleted")
    _answer(client, "a", "second")  # the job ran twice after a takeover
    client.xadd(RESULTS, {"v": "1", "meta": "not json"})
    wait_for(lambda: client.xlen(RESULTS) == 0, what="the duplicate and the unreadable entry deleted")
    assert client.xpending(RESULTS, BOT_GROUP)["pending"] == 0


def test_a_result_for_a_job_not_handed_over_yet_waits_for_it(executor, client: redis.Redis) -> None:
    _caught_up(executor, client)
    _answer(client, "late", "made while the bot was away")
    wait_for(lambda: client.xpending(RESULTS, BOT_GROUP)["pending"] == 1, what="the result read")
    assert client.xlen(RESULTS) == 1  # read and kept, not dropped
    _worker(client, "w1", ["tiny"])
    [outcome] = executor.run_batch([_job("late")], lambda e: None).result(timeout=20)
    assert isinstance(outcome, Failed) and outcome.message == "made while the bot was away"
    assert _sent(client) == []  # not run a second time
    wait_for(lambda: client.xlen(RESULTS) == 0, what="the result deleted")


def test_the_oldest_kept_result_goes_first_past_the_limit(executor, client: redis.Redis,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(collect, "STASH_MAX", 1)
    _caught_up(executor, client)
    _answer(client, "x", "old")
    wait_for(lambda: client.xpending(RESULTS, BOT_GROUP)["pending"] == 1, what="the first result read")
    _answer(client, "y", "new")
    wait_for(lambda: client.xlen(RESULTS) == 1, what="the oldest result evicted")
    [(_, fields)] = client.xrange(RESULTS)
    assert b'"job_id": "y"' in fields[b"meta"]
    assert client.xpending(RESULTS, BOT_GROUP)["pending"] == 1


def test_a_kept_result_taken_by_a_withdrawn_batch_waits_for_the_next_handover(executor,
                                                                               client: redis.Redis) -> None:
    _caught_up(executor, client)
    _answer(client, "s", "kept")
    wait_for(lambda: client.xpending(RESULTS, BOT_GROUP)["pending"] == 1, what="the result read")
    future = executor.run_batch([_job("s"), _job("t")], lambda e: None)  # no worker: "t" waits
    assert executor.withdraw(future)
    assert isinstance(future.exception(timeout=5), Withdrawn)
    _worker(client, "w1", ["tiny"])
    [outcome] = executor.run_batch([_job("s")], lambda e: None).result(timeout=20)
    assert isinstance(outcome, Failed) and outcome.message == "kept"
    wait_for(lambda: client.xlen(RESULTS) == 0, what="the result deleted")


def test_a_kept_result_read_back_while_its_batch_is_withdrawn_is_kept_for_the_next_handover(
        executor, client: redis.Redis) -> None:
    """The batch is taken back while its kept result is being read from Redis: the result must not
    be acknowledged (and deleted) as if nobody wanted it; the next handover of the job gets it."""
    _caught_up(executor, client)
    _answer(client, "s", "kept")
    wait_for(lambda: "s" in executor._stash, what="the result kept for the job's handover")
    real_xrange = executor._redis.xrange
    read_back: list[str] = []

    async def withdrawn_meanwhile(*args, **kwargs):
        taken = [f for f, state in list(executor._by_future.items()) if "t" in state.ids]
        if taken:
            read_back.append("withdrawn" if executor.withdraw(taken[0]) else "not withdrawn")
            await asyncio.sleep(0.1)  # the engine took the batch back, and the dispatcher forgets it, meanwhile
        entries = await real_xrange(*args, **kwargs)
        read_back.append("read")
        return entries

    executor._redis.xrange = withdrawn_meanwhile
    first = executor.run_batch([_job("s"), _job("t")], lambda e: None)
    assert isinstance(first.exception(timeout=5), Withdrawn)
    wait_for(lambda: read_back[-1:] == ["read"], what="the kept result read back")
    assert read_back == ["withdrawn", "read"]
    time.sleep(0.3)  # what the dispatcher does with it now is done before the job is handed over again
    executor._redis.xrange = real_xrange
    _worker(client, "w1", ["tiny"])
    [outcome] = executor.run_batch([_job("s")], lambda e: None).result(timeout=20)
    assert isinstance(outcome, Failed) and outcome.message == "kept"  # not sent to a worker again
    assert "s" not in _sent(client)


def test_a_job_still_queued_from_before_a_restart_is_not_sent_again(config: Config, client: redis.Redis) -> None:
    client.xgroup_create("t:jobs:tiny", WORKERS_GROUP, id="0", mkstream=True)
    for jid in ("acked", "pending", "unread"):  # three batches sent by the bot before it stopped
        client.xadd("t:jobs:tiny", encode_batch([_job(jid)], 2**20))
    [[_, [(acked, _)]]] = client.xreadgroup(WORKERS_GROUP, "w0", {"t:jobs:tiny": ">"}, count=1)
    client.xack("t:jobs:tiny", WORKERS_GROUP, acked)  # answered (its result handled by the last bot)
    client.xreadgroup(WORKERS_GROUP, "w0", {"t:jobs:tiny": ">"}, count=1)  # read, not answered yet
    _worker(client, "w1", ["tiny"], slots=8)
    executor = ClusterExecutor(config)
    try:  # the job log hands the three over again
        futures = {jid: executor.run_batch([_job(jid)], lambda e: None) for jid in ("acked", "pending", "unread")}
        wait_for(lambda: len(_sent(client)) == 4, what="the answered job sent again")
        for jid in ("pending", "unread"):
            _answer(client, jid)
            assert isinstance(futures[jid].result(timeout=20)[0], Failed)
        assert sorted(_sent(client)) == ["acked", "acked", "pending", "unread"]
    finally:
        executor.shutdown()


def test_a_job_waiting_in_redis_from_before_a_restart_and_cancelled_in_the_queue_is_not_run(
        config: Config, client: redis.Redis) -> None:
    """The member cancels it before the job log hands it over again: its worker is told not to run it,
    and the Cancelled it answers is dropped as a duplicate (nothing waits for it)."""
    client.xgroup_create("t:jobs:tiny", WORKERS_GROUP, id="0", mkstream=True)
    client.xadd("t:jobs:tiny", encode_batch([_job("old")], 2**20))  # sent by the bot before it stopped
    _answer(client, "done", "made while the bot was away")  # a result of another job, kept at start
    executor = ClusterExecutor(config)
    try:
        wait_for(lambda: "done" in executor._stash, what="the result kept for its job's handover")
        for jid in ("old", "never-sent", "done"):  # all three cancelled in the fair queue
            executor.cancel_queued(jid)
        wait_for(lambda: client.exists("t:cancel:old"), what="the cancel passed on to the workers")
        assert 3600 < client.ttl("t:cancel:old") <= 7 * 24 * 3600  # however long until a worker reads it
        assert not client.exists("t:cancel:never-sent")  # not in Redis: nothing to tell
        wait_for(lambda: client.xlen(RESULTS) == 0, what="the kept result nobody wants now deleted")
        client.xadd(RESULTS, encode_result(Cancelled("old"), "w1", 2**20))  # what its worker answers
        wait_for(lambda: client.xlen(RESULTS) == 0, what="the answer acknowledged and deleted")
        assert not {"old", "done"} & set(executor._stash)
    finally:
        executor.shutdown()


# ------------------------------------------------------------------ 4. Redis out of memory; other errors


def test_an_xadd_refused_for_memory_is_retried_and_the_batch_stays_withdrawable(
        executor, client: redis.Redis, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="inference.cluster.dispatch")
    _caught_up(executor, client)
    _worker(client, "w1", ["tiny"], slots=4)
    client.config_set("maxmemory", "1")  # noeviction: every write is refused
    try:
        withdrawn = executor.run_batch([_job("a")], lambda e: None)
        cancelled = executor.run_batch([_job("b")], lambda e: None)
        wait_for(lambda: any("refused" in r.getMessage() for r in caplog.records), what="the refusal logged")
        wait_for(lambda: executor.withdraw(withdrawn), what="withdrawn between two tries")
        executor.cancel("b")
        [outcome] = cancelled.result(timeout=20)
        assert isinstance(outcome, Cancelled)
        sent = executor.run_batch([_job("c")], lambda e: None)
        assert not sent.done()
    finally:
        client.config_set("maxmemory", "0")
    wait_for(lambda: "c" in _sent(client), what="the batch sent once Redis had room")
    assert _sent(client) == ["c"], _sent(client)
    assert sum("refused" in r.getMessage() for r in caplog.records) == 1
    _answer(client, "c")
    assert isinstance(sent.result(timeout=20)[0], Failed)


def test_an_unexpected_error_while_sending_fails_the_batch_with_a_clear_message(
        executor, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr("inference.cluster.dispatch.encode_batch", broken)
    outcomes = executor.run_batch([_job("a"), _job("b")], lambda e: None).result(timeout=20)
    assert [(o.job_id, o.message) for o in outcomes] == [("a", internal_error_message()),
                                                        ("b", internal_error_message())]


# ------------------------------------------------------------------ 6. withdraw vs an outcome


def test_an_outcome_first_then_withdraw(executor) -> None:
    future = executor.run_batch([_job("a")], lambda e: None)  # no worker: it waits
    state = _state(executor, future)
    state.outcomes["a"] = Failed("a", "done")
    assert executor._complete(state)
    assert not executor.withdraw(future)
    assert future.result(timeout=5) == [Failed("a", "done")]


def test_withdraw_first_then_an_outcome(executor) -> None:
    future = executor.run_batch([_job("a")], lambda e: None)
    state = _state(executor, future)
    assert executor.withdraw(future)
    state.outcomes["a"] = Failed("a", "done")
    assert not executor._complete(state)
    executor._on_loop(executor._settle(Cancelled("a"), None)).result(10)
    assert isinstance(future.exception(timeout=5), Withdrawn)
    assert not executor.withdraw(future)


def test_a_kept_result_is_held_as_its_entry_id_and_read_back_when_its_job_comes(executor, client: redis.Redis,
                                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Results of a long outage wait in Redis, not decoded in the bot's memory: nothing is decoded
    until the job is handed over; a kept result that cannot be read then still ends its job."""
    _caught_up(executor, client)
    decoded: list[str] = []
    real = collect.decode_result
    monkeypatch.setattr(collect, "decode_result", lambda fields: decoded.append("x") or real(fields))
    _answer(client, "k", "kept for later")
    client.xadd(RESULTS, {"v": "1", "meta": json.dumps({"job_id": "bad", "status": "finished"})})
    wait_for(lambda: client.xpending(RESULTS, BOT_GROUP)["pending"] == 2, what="both results read")
    assert decoded == [] and all(isinstance(v, bytes) for v in executor._stash.values())
    _worker(client, "w1", ["tiny"])
    [outcome] = executor.run_batch([_job("k")], lambda e: None).result(timeout=20)
    assert isinstance(outcome, Failed) and outcome.message == "kept for later" and decoded == ["x"]
    [bad] = executor.run_batch([_job("bad")], lambda e: None).result(timeout=20)
    assert isinstance(bad, Failed) and bad.message == collect.UNREADABLE_RESULT
    assert _sent(client) == []  # neither job ran a second time
    wait_for(lambda: client.xlen(RESULTS) == 0, what="both results deleted")
