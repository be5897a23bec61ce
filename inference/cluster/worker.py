"""A GPU worker: ``python bot.py --worker``. Reads batches from Redis, runs them, writes results back.

Its life: load every configured model through :class:`GpuExecutor` (a model that fails to load is
not announced, so no job for it is read); heartbeat its capabilities into ``<prefix>:worker:<name>``
(expiring after three missed beats); read its models' job streams through the consumer group
``workers`` when it has a free slot, first taking over entries that a silent worker left unacknowledged
for ``cluster.lease_s`` (XAUTOCLAIM); run each batch with :meth:`GpuExecutor.run_batch`, the very code
of the single-process mode; send Started/Progress events to the progress stream and each job's
outcome to the results stream, acknowledging and deleting the batch's entry in the same transaction
(MULTI/EXEC), so a batch is either answered and trimmed or neither. Its heartbeat also announces the
LoRAs members may pick on each model and ``cluster.max_pixels``; a batch needing more is handed back
for another worker (inference/cluster/handback.py). A Redis outage never fails a batch or ends the
worker: each write is retried until Redis answers. While a batch runs its entry's idle time is
reset every heartbeat, so only a dead worker's work is taken over. An entry delivered more than
``cluster.max_attempts`` times is answered with a failure instead of being run again.
SIGTERM: stop reading, let running batches end, leave.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from config import Config
from inference.cluster.handback import another_can_run, drop, hand_back, handed_back, lacking, model_of
from inference.cluster.keys import ANY_MODEL, PROGRESS_MAXLEN, WORKERS_GROUP, Keys, connect, ensure_group
from inference.cluster.progress import progress_fields
from inference.cluster.reading import Entry, ReadOrder, claim, read
from inference.cluster.wire import WireError, decode_batch, encode_result, entry_hops, job_ids
from inference.executor import GpuExecutor, Outcome, internal_error_message
from inference.jobs import Failed, JobEvent, Progress
from inference.kind_runners import default_anime_factory
from inference.prepare import PreparedJob
from inference.upscale.runner import default_upscale_factory

log = logging.getLogger(__name__)

GAVE_UP = ("This request stopped {n} GPU workers in a row (they crashed or lost their connection while making "
           "it), so it was not tried again. Try a smaller size or fewer images.")

UNREADABLE = ("A GPU worker could not read this request (its pictures or settings are beyond what workers "
              "take), so it was not made. Try smaller pictures or other settings.")


@dataclass
class _Running:
    stream: str
    entry_id: bytes
    job_ids: list[str]
    task: asyncio.Task[None] | None = None
    started: float = field(default_factory=time.monotonic)


class Worker:
    def __init__(self, config: Config, *, executor: GpuExecutor | None = None, name: str = "") -> None:
        self.config = config
        self.cluster = config.cluster
        self.keys = Keys(config.cluster.prefix)
        self.name = name or config.cluster.worker_name or f"{socket.gethostname()}-{os.getpid()}"
        # The same executor as the single-process mode's, /anime and /upscale runners included.
        self.executor = executor or GpuExecutor(config, anime_factory=default_anime_factory(config),
                                                upscale_factory=default_upscale_factory(config))
        self.cap_bytes = int(config.cluster.max_entry_mb * 2**20)
        self.models: list[str] = []
        self.loras: dict[str, list[str]] = {}  # model -> the LoRAs members may pick on it (fused ones are not)
        self._running: dict[bytes, _Running] = {}
        self._stop = asyncio.Event()
        self._redis: aioredis.Redis | None = None
        self._offline = False  # Redis unreachable: logged once until it is back
        self._order = ReadOrder(config.queue.affinity_skips)  # the stream of the model on the GPU first

    # ------------------------------------------------------------------ life

    def stop(self) -> None:
        """Stop reading new work; running batches end and are answered (SIGTERM calls this)."""
        self._stop.set()

    async def run(self) -> None:
        self._redis = connect(self.cluster)
        try:
            await self._load_models()
            streams = [self.keys.jobs(m) for m in self.models] + [self.keys.jobs(ANY_MODEL)]
            await self._retrying(lambda: self._groups(streams))
            await self._beat()
            beat = asyncio.create_task(self._heartbeat(), name="easel-worker-heartbeat")
            cancels = asyncio.create_task(self._listen_for_cancels(), name="easel-worker-cancels")
            log.info("worker %s serving %s (%d slot(s)) from %s", self.name, ", ".join(self.models) or "no model",
                     self.cluster.slots, self.cluster.redis_url)
            try:
                await self._serve(streams)
                running = [r.task for r in self._running.values() if r.task is not None]
                if running:
                    log.info("worker %s: letting %d running batch(es) end", self.name, len(running))
                    await asyncio.gather(*running, return_exceptions=True)
            finally:
                for task in (beat, cancels):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                with contextlib.suppress(RedisConnectionError, RedisTimeoutError, OSError):
                    await self._redis.delete(self.keys.worker(self.name))
        finally:
            await self._redis.aclose()
            await asyncio.to_thread(self.executor.shutdown)
            log.info("worker %s stopped", self.name)

    async def _load_models(self) -> None:
        for cfg in self.config.all_models:
            try:
                loaded = await asyncio.wrap_future(self.executor.submit(self.executor.model, cfg.display_name))
            except Exception as exc:  # one broken model must not keep the others from serving
                log.error("worker %s: model %s could not load, no jobs for it will be taken: %s",
                          self.name, cfg.display_name, exc)
                continue
            self.models.append(cfg.display_name)
            self.loras[cfg.display_name] = sorted(loaded.loras)

    async def _groups(self, streams: list[str]) -> None:
        assert self._redis is not None
        for stream in streams:
            await ensure_group(self._redis, stream, WORKERS_GROUP)

    async def _retrying(self, call):  # type: ignore[no-untyped-def]
        """Run ``call`` until Redis answers, waiting longer each time (one log line per outage). Redis
        out of memory (results waiting for a stopped bot fill it) is waited out the same way."""
        wait = 0.2
        while True:
            try:
                result = await call()
            except (RedisConnectionError, RedisTimeoutError, OSError, OutOfMemoryError) as exc:
                if not self._offline:
                    log.warning("worker %s: Redis unreachable or full (%s); retrying", self.name, exc)
                    self._offline = True
                if self._stop.is_set():
                    raise
                await asyncio.sleep(wait)
                wait = min(wait * 2, 5.0)
                continue
            if self._offline:
                log.info("worker %s: Redis reachable again", self.name)
                self._offline = False
            return result

    # ------------------------------------------------------------------ heartbeat and leases

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.cluster.heartbeat_s)
            try:
                await self._retrying(self._beat)
            except Exception:  # the heartbeat must outlive any one failure
                log.exception("worker %s: heartbeat failed", self.name)

    async def _beat(self) -> None:
        assert self._redis is not None
        models = self.executor.loaded_models()
        info = {"name": self.name, "models": json.dumps(self.models), "loras": json.dumps(self.loras),
                "max_pixels": self.cluster.max_pixels, "slots": self.cluster.slots,
                "free": max(0, self.cluster.slots - len(self._running)),
                "device": str(models[0].device) if models else self.config.device.device,
                "dtype": str(models[0].dtype).removeprefix("torch.") if models else self.config.device.dtype,
                "max_batch": self.config.queue.max_batch, "beat": time.time()}
        key = self.keys.worker(self.name)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping=info)
            pipe.hsetnx(key, "served", 0)  # counted by _answer, in the transaction that sends the results
            pipe.pexpire(key, int(self.cluster.heartbeat_s * 3000))
            for r in self._running.values():  # still working on it: its lease starts again
                pipe.xclaim(r.stream, WORKERS_GROUP, self.name, 0, [r.entry_id], justid=True)
            cancels = [jid for r in self._running.values() for jid in r.job_ids]
            for jid in cancels:
                pipe.exists(self.keys.cancel(jid))
            # Not raising at once: after Redis came back empty the lease renewals find no group
            # (NOGROUP) for the batches still running, and the heartbeat itself must go through.
            replies = await pipe.execute(raise_on_error=False)
        failed = [r for r in replies if isinstance(r, Exception) and "NOGROUP" not in str(r)]
        if failed:
            raise failed[0]
        for jid, flagged in zip(cancels, replies[-len(cancels):] if cancels else [], strict=True):
            if flagged and not isinstance(flagged, Exception):
                self.executor.cancel(jid)

    def record(self) -> dict[str, Any]:
        """What this worker can run, as :func:`roster.read_workers` reads it from the heartbeat."""
        return {"name": self.name, "models": self.models, "loras": self.loras,
                "max_pixels": self.cluster.max_pixels}

    async def _listen_for_cancels(self) -> None:
        """Stop a running job at its next step as soon as the bot publishes its cancellation (the
        heartbeat's check of the cancel keys covers a message lost while Redis was away)."""
        assert self._redis is not None
        while True:
            try:
                async with self._redis.pubsub() as pubsub:
                    await pubsub.subscribe(self.keys.cancels)
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            job_id = message["data"].decode(errors="replace")
                            if any(job_id in r.job_ids for r in self._running.values()):
                                self.executor.cancel(job_id)
            except (RedisConnectionError, RedisTimeoutError, OSError):
                await asyncio.sleep(1.0)  # the heartbeat logs the outage

    # ------------------------------------------------------------------ reading work

    async def _serve(self, streams: list[str]) -> None:
        block_ms = max(100, int(self.cluster.heartbeat_s * 500))
        while not self._stop.is_set():
            free = self.cluster.slots - len(self._running)
            if free <= 0:
                await asyncio.sleep(0.05)
                continue
            try:
                entries = await self._retrying(lambda n=free: self._claim(streams, n))
                if not entries:
                    entries = await self._retrying(lambda n=free: self._read(streams, n, block_ms))
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                log.warning("worker %s: Redis lost the job streams (restarted without persistence?); "
                            "creating them again", self.name)
                await self._retrying(lambda: self._groups(streams))
                continue
            for stream, entry_id, fields, delivered in entries:
                await self._accept_safely(stream, entry_id, fields, delivered)

    async def _claim(self, streams: list[str], count: int) -> list[Entry]:
        assert self._redis is not None
        return await claim(self._redis, self.name, streams, count, int(self.cluster.lease_s * 1000))

    async def _read(self, streams: list[str], count: int, block_ms: int) -> list[Entry]:
        assert self._redis is not None
        mine = {m: self.keys.jobs(m) for m in self.models}
        first = self._order.first(mine, self.executor.preferred_models(), self.keys.jobs(ANY_MODEL))
        return await read(self._redis, self.name, streams, first, self._order, count, block_ms)

    async def _accept_safely(self, stream: str, entry_id: bytes, fields: dict, delivered: int) -> None:
        """One bad entry must not stop the worker (it would crash-loop on it): log it, answer or ack it."""
        assert self._redis is not None
        ids: list[str] = []
        try:
            await self._accept(stream, entry_id, fields, delivered, ids)
        except (RedisConnectionError, RedisTimeoutError, OSError, ResponseError):
            raise
        except Exception:
            log.exception("worker %s: could not take entry %s of %s", self.name, entry_id, stream)
            if ids:  # the jobs are known: their members get a failure rather than silence
                await self._retrying(lambda: self._answer(stream, entry_id,
                                                          [Failed(j, internal_error_message()) for j in ids]))
            else:
                await self._retrying(lambda: drop(self._redis, stream, entry_id))  # type: ignore[arg-type]

    async def _accept(self, stream: str, entry_id: bytes, fields: dict, delivered: int, ids: list[str]) -> None:
        assert self._redis is not None
        try:
            batch = decode_batch(fields)
            hops = entry_hops(fields)
        except WireError as exc:
            known = job_ids(fields)
            log.error("worker %s: refused entry %s of %s (jobs %s): %s", self.name, entry_id, stream, known, exc)
            if known:  # its members get a failure rather than silence
                refused = [Failed(j, UNREADABLE) for j in known]
                await self._retrying(lambda: self._answer(stream, entry_id, refused))
            else:
                await self._retrying(lambda: drop(self._redis, stream, entry_id))  # type: ignore[arg-type]
            return
        ids.extend(p.job.job_id for p in batch)
        if delivered > self.cluster.max_attempts:
            log.error("worker %s: jobs %s gave up after %d deliveries", self.name, ids, delivered - 1)
            failed = [Failed(j, GAVE_UP.format(n=delivered - 1)) for j in ids]
            await self._retrying(lambda: self._answer(stream, entry_id, failed))
            return
        model = model_of(self.keys, stream)
        jobs = [p.job for p in batch]
        reason = lacking(self.record(), model, jobs)
        if reason is not None:
            client = self._redis  # taken over from a worker that stopped (delivered > 1): a hop, which
            # bounds a batch that kills every worker able to run it, as the delivery count otherwise does
            if delivered == 1 and await self._retrying(
                    lambda: another_can_run(client, self.keys, self.name, model, jobs)):
                copy = handed_back(fields, hops)  # not a hop: the worker that can run it is busy
                await self._retrying(lambda: hand_back(self._redis, stream, entry_id, copy))  # type: ignore[arg-type]
                await asyncio.sleep(self.cluster.heartbeat_s)  # let that worker read it first
            elif hops >= self.cluster.max_attempts:
                log.error("worker %s: jobs %s failed after %d hand-backs: %s", self.name, ids, hops, reason)
                await self._retrying(lambda: self._answer(stream, entry_id, [Failed(j, reason) for j in ids]))
            else:
                log.info("worker %s: handed back jobs %s of %s (%s)", self.name, ids, model or "-", reason)
                copy = handed_back(fields, hops + 1)
                await self._retrying(lambda: hand_back(self._redis, stream, entry_id, copy))  # type: ignore[arg-type]
            return
        running = _Running(stream, entry_id, ids)
        self._running[entry_id] = running
        await self._retrying(lambda: self._redis.hset(  # type: ignore[union-attr]
            self.keys.running, mapping=dict.fromkeys(ids, self.name)))
        # Before the batch is handed to the executor (an idle GPU thread starts it at once), and here,
        # entry by entry, so that batches still start in the order they were read (reading.py).
        await self._check_cancels(ids)
        running.task = asyncio.create_task(self._run(running, batch))
        running.task.add_done_callback(lambda t: t.cancelled() or t.exception() is None or log.error(
            "worker %s: batch %s ended on an error", self.name, ids, exc_info=t.exception()))

    # ------------------------------------------------------------------ running

    async def _run(self, running: _Running, batch: list[PreparedJob]) -> None:
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[JobEvent | None] = asyncio.Queue()

        def emit(event: JobEvent) -> None:  # on the executor's relay thread
            loop.call_soon_threadsafe(events.put_nowait, event)

        sender = asyncio.create_task(self._send_events(events))
        try:  # handed to the executor before any await: batches start in the order they were accepted
            outcomes: list[Outcome] = await asyncio.wrap_future(self.executor.run_batch(batch, emit))
        except Exception:
            log.exception("worker %s: batch %s crashed", self.name, running.job_ids)
            outcomes = [Failed(jid, internal_error_message()) for jid in running.job_ids]
        finally:
            events.put_nowait(None)
            await sender
        try:
            await self._retrying(lambda: self._answer(running.stream, running.entry_id, outcomes))
        finally:
            self._running.pop(running.entry_id, None)

    async def _check_cancels(self, job_ids: list[str]) -> None:
        """Cancel the jobs the bot flagged before this batch began. Redis away: skipped, never a failed
        batch (the heartbeat checks the same keys every beat, and the pub/sub listener hears new ones)."""
        assert self._redis is not None
        try:
            for jid in job_ids:
                if await self._redis.exists(self.keys.cancel(jid)):
                    self.executor.cancel(jid)
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            log.warning("worker %s: could not check cancellations of %s (%s); the heartbeat will",
                        self.name, job_ids, exc)

    async def _send_events(self, events: asyncio.Queue[JobEvent | None]) -> None:
        assert self._redis is not None
        while (event := await events.get()) is not None:
            fields = await asyncio.to_thread(progress_fields, event) if isinstance(event, Progress) else \
                progress_fields(event)
            if fields is None:
                continue
            with contextlib.suppress(RedisConnectionError, RedisTimeoutError, OSError):  # progress may be lost
                await self._redis.xadd(self.keys.progress, fields, maxlen=PROGRESS_MAXLEN, approximate=True)

    async def _answer(self, stream: str, entry_id: bytes, outcomes: list[Outcome]) -> None:
        """Each job's result and the batch's acknowledgement, in one transaction."""
        assert self._redis is not None
        entries = await asyncio.to_thread(lambda: [encode_result(o, self.name, self.cap_bytes) for o in outcomes])
        async with self._redis.pipeline(transaction=True) as pipe:
            for fields in entries:
                pipe.xadd(self.keys.results, fields)
            pipe.xack(stream, WORKERS_GROUP, entry_id)
            pipe.xdel(stream, entry_id)  # answered: nothing keeps it (the stream would only grow)
            pipe.hdel(self.keys.running, *[o.job_id for o in outcomes])
            served = sum(1 for o in outcomes if not isinstance(o, Failed))
            pipe.hincrby(self.keys.worker(self.name), "served", served)
            # Not raising: after a Redis restart without persistence the ack finds no group (NOGROUP),
            # and the results must go through all the same.
            await pipe.execute(raise_on_error=False)

def run_worker(config: Config) -> int:
    """``python bot.py --worker``: serve until SIGTERM or Ctrl-C."""
    if not config.cluster.redis_url:
        log.error("--worker needs [cluster] redis_url in the configuration (see README, 'More than one GPU')")
        return 2

    async def main() -> None:
        worker = Worker(config)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.stop)
        await worker.run()

    asyncio.run(main())
    return 0
