"""A worker's heartbeat after Redis came back empty while a batch ran: the lease renewal finds no
group (NOGROUP), and that is no heartbeat failure (before: an error logged every beat until the
batch ended); the batch is still answered."""

from __future__ import annotations

from pathlib import Path

import redis

from inference.cluster.wire import encode_batch
from inference.jobs import TextToImageJob
from inference.prepare import PreparedJob
from tests.cluster.helpers import (
    log_tail,
    start_worker,
    stop,
    wait_for,
    wait_for_worker,
    wait_until_running,
    worker_toml,
)


def test_the_heartbeat_goes_on_quietly_after_redis_lost_the_running_batchs_stream(tiny_config, valkey,
                                                                                 client: redis.Redis,
                                                                                 tmp_path: Path) -> None:
    toml = worker_toml(tiny_config, valkey.connection_url, tmp_path)
    worker = start_worker(toml, "w1")
    try:
        wait_for_worker(client, "w1", worker)
        job = TextToImageJob(job_id="a", owner=1, prompt="a lighthouse", width=128, height=128, steps=40, count=4,
                             model="tiny")
        client.xadd("t:jobs:tiny", encode_batch([PreparedJob(job)], 2**20))
        wait_until_running(client, "a", "w1", worker)
        client.flushall()  # Redis restarted without persistence, the batch still running
        wait_for(lambda: client.exists("t:worker:w1"), what="a heartbeat after the flush")
        client.delete("t:worker:w1")
        wait_for(lambda: client.exists("t:worker:w1"), what="a second heartbeat after the flush")
        wait_for(lambda: client.exists("t:results") and client.xlen("t:results") == 1, what="the batch answered")
        assert "heartbeat failed" not in log_tail(toml, "w1")
    finally:
        stop(worker)
