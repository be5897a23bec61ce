"""A worker trims what it answered, outlives Redis errors, announces its LoRAs and pixel limit, and hands
back a batch it cannot run; large uploads travel; /easel status shows what a worker can do."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from PIL import Image
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

import inference.cluster.worker as worker_module
from config import ConfigError, load_config
from inference.cluster.keys import WORKERS_GROUP, Keys
from inference.cluster.roster import read_workers
from inference.cluster.status import workers_text
from inference.cluster.wire import decode_batch, encode_batch
from inference.cluster.worker import Worker
from inference.jobs import ImageToImageJob, TextToImageJob
from inference.prepare import PreparedJob
from tests.cluster.helpers import cluster_config

STREAM = "t:jobs:tiny"


def _job(job_id: str, size: int = 64, loras: tuple[tuple[str, float], ...] = ()) -> TextToImageJob:
    return TextToImageJob(job_id=job_id, owner=1, prompt="a lighthouse", width=size, height=size, steps=2,
                          model="tiny", loras=loras)


def _group(client: redis.Redis) -> None:
    """The workers' group on the job stream, unless a worker made it first."""
    with contextlib.suppress(ResponseError):  # BUSYGROUP
        client.xgroup_create(STREAM, WORKERS_GROUP, id="0", mkstream=True)


def _send(client: redis.Redis, *jobs: TextToImageJob) -> bytes:
    """A batch into the job stream."""
    _group(client)
    return client.xadd(STREAM, encode_batch([PreparedJob(j) for j in jobs], 2**20))


def _results(client: redis.Redis) -> dict[str, dict[str, Any]]:
    return {m["job_id"]: m for m in (json.loads(f[b"meta"]) for _, f in client.xrange("t:results"))}


def _trimmed(client: redis.Redis) -> bool:
    return client.xlen(STREAM) == 0 and client.xpending(STREAM, WORKERS_GROUP)["pending"] == 0


async def _until(check: Callable[[], object], what: str, timeout: float = 45.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.05)
    assert check(), what


@asynccontextmanager
async def _serving(tiny_config, url: str, client: redis.Redis, **cluster: object) -> AsyncIterator[Worker]:
    """A worker in this process (the tiny model on the CPU), serving until the block ends."""
    worker = Worker(cluster_config(tiny_config, url, **cluster), name="w1")
    task = asyncio.create_task(worker.run())
    try:
        await _until(lambda: task.done() or client.exists("t:worker:w1"), "the worker's heartbeat")
        assert not task.done(), task.exception()
        yield worker
        assert not task.done(), "the worker stopped on its own"
    finally:
        worker.stop()
        await asyncio.wait_for(task, 60)


def _fails_once(call: Callable[..., Any]) -> tuple[Callable[..., Any], list[str]]:
    """``call``, except that its first use raises ConnectionError (Redis away for a moment)."""
    raised: list[str] = []

    async def flaky(*args: Any, **kwargs: Any) -> Any:
        if not raised:
            raised.append(getattr(call, "__name__", "call"))
            raise RedisConnectionError("Redis went away")
        return await call(*args, **kwargs)

    return flaky, raised


# --------------------------------------------------------------------------- 1. trimming


async def test_answered_and_unreadable_entries_leave_nothing_in_the_job_stream(tiny_config, valkey,
                                                                                client: redis.Redis) -> None:
    _send(client, _job("a"))
    client.xadd(STREAM, {"v": "1", "meta": "not json"})
    async with _serving(tiny_config, valkey.connection_url, client):
        await _until(lambda: client.xlen("t:results") == 1, "a result")
        await _until(lambda: _trimmed(client), "the job stream trimmed")
    assert {k: m["status"] for k, m in _results(client).items()} == {"a": "finished"}  # the unreadable: dropped


# --------------------------------------------------------------------------- 2. Redis errors


async def test_a_redis_error_before_a_batch_runs_neither_fails_it_nor_ends_the_worker(tiny_config, valkey,
                                                                                     client: redis.Redis) -> None:
    async with _serving(tiny_config, valkey.connection_url, client) as worker:
        assert worker._redis is not None
        worker._redis.hset, hset_raised = _fails_once(worker._redis.hset)  # type: ignore[method-assign]
        worker._redis.exists, exists_raised = _fails_once(worker._redis.exists)  # type: ignore[method-assign]
        _send(client, _job("a"))
        await _until(lambda: client.xlen("t:results") == 1, "a result")
        assert hset_raised and exists_raised  # both calls met the outage
        assert _results(client)["a"]["status"] == "finished"
        await _until(lambda: _trimmed(client), "the job stream trimmed")


async def test_a_redis_error_dropping_an_unreadable_entry_is_retried(tiny_config, valkey, client: redis.Redis,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    flaky, raised = _fails_once(worker_module.drop)
    monkeypatch.setattr(worker_module, "drop", flaky)
    async with _serving(tiny_config, valkey.connection_url, client):
        client.xadd(STREAM, {"v": "1", "meta": "not json"})
        await _until(lambda: _trimmed(client) and raised, "the unreadable entry dropped")
        client.xadd(STREAM, encode_batch([PreparedJob(_job("b"))], 2**20))
        await _until(lambda: client.xlen("t:results") == 1, "the next batch served")
    assert _results(client)["b"]["status"] == "finished"


# --------------------------------------------------------------------------- 3. capabilities and hand-back


async def test_the_heartbeat_announces_the_loras_and_pixel_limit(tiny_config, valkey, client: redis.Redis) -> None:
    async with _serving(tiny_config, valkey.connection_url, client, max_pixels=4096):
        reader = aioredis.Redis.from_url(valkey.connection_url)
        try:
            [record] = await read_workers(reader, Keys("t"))
        finally:
            await reader.aclose()
    assert record["loras"] == {"tiny": []} and record["max_pixels"] == 4096


async def test_a_batch_without_the_workers_lora_is_handed_back_then_fails_saying_so(tiny_config, valkey,
                                                                                     client: redis.Redis) -> None:
    worker = Worker(cluster_config(tiny_config, valkey.connection_url, max_attempts=2), name="w1")
    worker.models, worker.loras = ["tiny"], {"tiny": ["ink"]}
    worker._redis = aioredis.Redis.from_url(valkey.connection_url)
    try:
        first = _send(client, _job("a", loras=(("ink", 1.0), ("sepia", 0.8))))
        for hop in (1, 2):
            [[_, [(entry_id, fields)]]] = client.xreadgroup(WORKERS_GROUP, "w1", {STREAM: ">"})
            await worker._accept_safely(STREAM, entry_id, fields, 1)
            [(copy_id, copy)] = client.xrange(STREAM)
            assert copy_id != entry_id and copy_id != first
            assert copy[b"hops"] == str(hop).encode()
            assert decode_batch(copy)[0].job.loras == (("ink", 1.0), ("sepia", 0.8))
            assert client.xpending(STREAM, WORKERS_GROUP)["pending"] == 0 and client.xlen("t:results") == 0
        [[_, [(entry_id, fields)]]] = client.xreadgroup(WORKERS_GROUP, "w1", {STREAM: ">"})
        await worker._accept_safely(STREAM, entry_id, fields, 1)  # max_attempts hops: answered
        assert _trimmed(client)
        result = _results(client)["a"]
        assert result["status"] == "failed"
        assert result["message"].startswith("No GPU worker has the LoRA 'sepia' for model 'tiny'.")
    finally:
        await worker._redis.aclose()
        worker.executor.shutdown()


async def test_a_batch_above_the_workers_pixel_limit_fails_while_a_smaller_one_runs(tiny_config, valkey,
                                                                                    client: redis.Redis) -> None:
    _send(client, _job("big", size=128))
    client.xadd(STREAM, encode_batch([PreparedJob(_job("small", size=64))], 2**20))
    async with _serving(tiny_config, valkey.connection_url, client, max_pixels=64 * 64, max_attempts=1):
        await _until(lambda: client.xlen("t:results") == 2, "both answered")
        await _until(lambda: _trimmed(client), "the job stream trimmed")
    results = _results(client)
    assert results["small"]["status"] == "finished"
    assert results["big"]["status"] == "failed"
    assert "larger than any GPU worker allows" in results["big"]["message"]


@pytest.mark.parametrize("value", [-1, 100])
def test_a_wrong_max_pixels_is_refused(tmp_path: Path, value: int) -> None:
    toml = tmp_path / "easel.toml"
    toml.write_text(f"[cluster]\nmax_pixels = {value}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="cluster.max_pixels"):
        load_config(toml, environ={})
    toml.write_text("[cluster]\nmax_pixels = 1048576\n", encoding="utf-8")
    assert load_config(toml, environ={}).cluster.max_pixels == 1048576


# --------------------------------------------------------------------------- 4. uploads on the wire


def test_a_wide_upload_within_the_bots_pixel_limit_survives_the_wire() -> None:
    job = ImageToImageJob(job_id="v", owner=1, prompt="a shore", width=64, height=64, steps=2, model="tiny",
                          init_image="upload.png")
    image = Image.new("RGB", (10000, 1000), (10, 20, 30))
    [back] = decode_batch(encode_batch([PreparedJob(job, init_image=image)], 2**30))
    assert back.init_image is not None and back.init_image.size == (10000, 1000)
    assert back.init_image.getpixel((9999, 999)) == (10, 20, 30)


# --------------------------------------------------------------------------- 5. /easel status


def test_status_shows_a_workers_lora_count_and_pixel_limit_when_it_has_them() -> None:
    worker = {"name": "gpu-b", "models": ["sdxl"], "device": "cuda:0", "dtype": "float16", "slots": 2, "free": 2,
              "served": 3, "beat": 100.0, "loras": {"sdxl": ["ink", "sepia"], "sd15": ["ink"]},
              "max_pixels": 1048576}
    assert workers_text([worker], now=101.0) == (
        "Workers:\n- gpu-b: sdxl on `cuda:0` (float16), 3 served, 0/2 busy, 3 LoRAs, "
        "at most 1.05 Mpx an image, heartbeat 1 s ago")
    plain = {**worker, "loras": {"sdxl": []}, "max_pixels": 0}
    assert workers_text([plain], now=101.0) == (
        "Workers:\n- gpu-b: sdxl on `cuda:0` (float16), 3 served, 0/2 busy, heartbeat 1 s ago")


def test_a_request_whose_pictures_a_worker_would_refuse_is_refused_before_it_is_sent(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from inference.cluster import wire

    monkeypatch.setattr(wire, "MAX_ENTRY_PIXELS", 64 * 64 + 10)
    jobs = [PreparedJob(ImageToImageJob(job_id=f"v{i}", owner=1, prompt="a shore", width=64, height=64, steps=2,
                                        model="tiny", init_image="upload.png"), init_image=Image.new("RGB", (64, 64)))
            for i in range(2)]
    assert decode_batch(wire.encode_batch(jobs[:1], 2**20))[0].init_image is not None
    with pytest.raises(wire.TooLarge, match="too large to send"):
        wire.encode_batch(jobs, 2**20)


async def test_an_entry_refused_for_its_picture_is_answered_with_a_failure(tiny_config, valkey,
                                                                           client: redis.Redis) -> None:
    from inference.cluster.worker import UNREADABLE
    from tests.cluster.test_wire import _header_only_png

    fields = encode_batch([PreparedJob(_job("a"))], 2**20)
    fields["img:0:style_image"] = _header_only_png(65537, 8)  # past any side a worker reads
    _group(client)
    client.xadd(STREAM, fields)
    worker = Worker(cluster_config(tiny_config, valkey.connection_url), name="w1")
    worker._redis = aioredis.Redis.from_url(valkey.connection_url)
    try:
        [[_, [(entry_id, read)]]] = client.xreadgroup(WORKERS_GROUP, "w1", {STREAM: ">"})
        await worker._accept_safely(STREAM, entry_id, read, 1)
        assert _trimmed(client)
        assert _results(client)["a"] == {"job_id": "a", "worker": "w1", "status": "failed", "message": UNREADABLE}
    finally:
        await worker._redis.aclose()
        worker.executor.shutdown()


async def test_a_batch_the_bot_cancelled_before_it_was_read_never_starts(tiny_config, valkey,
                                                                         client: redis.Redis) -> None:
    """The cancel key is checked before the batch is handed to the executor: an idle GPU thread would
    otherwise start it (load its model, report it Started) before the answer from Redis came."""
    async with _serving(tiny_config, valkey.connection_url, client) as worker:
        assert worker._redis is not None
        real_exists = worker._redis.exists

        async def slow_exists(*keys: Any) -> Any:  # Redis answers the check late
            await asyncio.sleep(0.3)
            return await real_exists(*keys)

        worker._redis.exists = slow_exists  # type: ignore[method-assign]
        client.set("t:cancel:a", 1)
        _send(client, _job("a"), _job("b"))
        await _until(lambda: len(_results(client)) == 2, "both answers")
    assert {k: m["status"] for k, m in _results(client).items()} == {"a": "cancelled", "b": "finished"}
    started = {f[b"job_id"].decode() for _, f in client.xrange("t:progress") if f.get(b"event") == b"started"}
    assert started == {"b"}
