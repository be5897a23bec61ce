"""The bot's executor in cluster mode: batches go to GPU workers through Redis Streams.

It offers the engine what :class:`inference.executor.GpuExecutor` offers (``run_batch`` returning a
future of outcomes, ``cancel``, ``withdraw``, ``submit``, ``model``/``loaded``/``model_config``...),
so the fair queue, batching, the job log and delivery are unchanged. Its Redis work runs on a thread
of its own with its own event loop ("easel-cluster"); futures and events are completed from there,
as the GPU thread's are.

- Fairness: a batch is sent (XADD) only when there is room both for it and in all: fewer batches of
  its model are out than the live workers able to run it (model, LoRAs, pixels) have slots plus one
  prefetched batch each, and a place is left in all (inference/cluster/room.py). Until
  then it waits here and can be withdrawn, like a batch queued on the GPU thread, so the fair
  queue's order holds. Redis refusing the XADD (out of memory) leaves it waiting, tried again.
- No live worker holds the model: the batch waits, and fails with a clear message after
  ``cluster.no_worker_timeout_s``.
- Exactly once: each result is matched to a job this bot waits for, acknowledged and deleted; a
  second result of a job settled lately (it ran twice after a takeover) is dropped the same way. At
  start the results left in Redis (the bot stopped while workers ran) are read before anything is
  sent, and a job re-queued from the job log whose result is there (kept until it is handed over),
  or which a live worker is still running, is not sent again.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import itertools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError
from redis.exceptions import TimeoutError as RedisTimeoutError

from config import Config, ModelConfig
from inference.busy import BusyStats
from inference.cluster.cancelling import Cancelling
from inference.cluster.collect import ClusterBatch, Collecting
from inference.cluster.keys import Keys, connect
from inference.cluster.room import has_room, model_room
from inference.cluster.roster import ClusterModel, cluster_model, read_workers
from inference.cluster.wire import TooLarge, encode_batch
from inference.executor import Emit, Outcome, Withdrawn, configured_model, internal_error_message
from inference.jobs import Cancelled, Failed, Job, JobError
from inference.prepare import PreparedJob

log = logging.getLogger(__name__)

NO_WORKER = ("No GPU worker of this bot can run model {model!r} right now (none is connected with it), and "
             "none came within {minutes:g} minutes. Try again later or pick another model.")


class ClusterExecutor(Cancelling, Collecting):
    warms_up = False  # nothing of ours runs here to warm up (read by Engine.start)
    # Engine.stop must not cancel the jobs in flight: the workers finish them and the next start
    # collects their results (a cancel would end them as Cancelled for the member).
    keeps_work_on_stop = True

    def __init__(self, config: Config) -> None:
        self.config = config
        self.cluster = config.cluster
        self.keys = Keys(config.cluster.prefix)
        self.cap_bytes = int(config.cluster.max_entry_mb * 2**20)
        self._models: dict[str, ClusterModel] = {}
        self._batches: dict[str, ClusterBatch] = {}  # job id -> its batch, until its outcome is in
        self._out: dict[str, int] = {}  # model -> batches sent and not answered
        self._stash: dict[str, bytes] = {}  # job id -> its result's entry id, for jobs not handed over yet
        self._settled: dict[str, None] = {}  # ids of jobs settled lately, oldest first
        self._queued: set[str] = set()  # jobs whose batch waited in a job stream when the bot started
        self._cancelled: set[str] = set()
        # Guards _by_future, each batch's sent/withdrawn and the completion of its future (withdraw()
        # runs on the engine's thread). Reentrant: completing a future runs _drop_future, which takes it.
        self._lock = threading.RLock()
        self._by_future: dict[Future[list[Outcome]], ClusterBatch] = {}
        self._seq = itertools.count()
        self._served = 0
        self._calls = ThreadPoolExecutor(max_workers=1, thread_name_prefix="easel-cluster-call")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="easel-cluster", daemon=True)
        self._thread.start()
        self._caught_up = asyncio.Event()
        self._changed = asyncio.Event()  # a result came in or a worker's room may have changed
        self._closing = False
        self._outage = False  # Redis unreachable: logged once until it answers again
        self._backoff = 0.2
        self._refusing = False  # Redis refused an XADD (out of memory): logged once until one goes through
        self._redis = connect(self.cluster)
        self._tasks: set[asyncio.Task[None]] = set()
        self._roster: list[dict[str, Any]] | None = None  # the live workers at the last look (None: not yet)
        self._on_loop(self._spawn()).result(timeout=10)

    @property
    def in_flight(self) -> int:
        """Batches the engine may hand over at once (``cluster.in_flight``); only as many as workers
        take are sent, the rest wait here, withdrawable, so the fair order holds. Read once by the engine."""
        return self.cluster.in_flight

    # ------------------------------------------------------------------ the engine's interface

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        return self._calls.submit(fn, *args)

    def run_batch(self, batch: Sequence[PreparedJob], emit: Emit) -> Future[list[Outcome]]:
        done: Future[list[Outcome]] = Future()
        done.set_running_or_notify_cancel()
        jobs = list(batch)
        try:
            model = self._model_of(jobs[0].job) if jobs else ""
        except JobError as exc:  # a model taken out of the configuration since the job was queued
            done.set_result([Failed(p.job.job_id, str(exc)) for p in jobs])
            return done
        state = ClusterBatch(jobs, emit, done, model)
        if not jobs:
            done.set_result([])
            return done
        with self._lock:
            self._by_future[done] = state
        done.add_done_callback(self._drop_future)
        self._soon(self._start, state)
        return done

    def _drop_future(self, done: Future[list[Outcome]]) -> None:
        with self._lock:
            self._by_future.pop(done, None)

    def withdraw(self, done: Future[list[Outcome]]) -> bool:
        """Take back a batch not sent to a worker yet (its future fails with :class:`Withdrawn`)."""
        with self._lock:
            state = self._by_future.get(done)
            if state is None or state.sent or done.done():  # out, or its outcome is in already
                return False
            state.withdrawn = True
            self._by_future.pop(done, None)
            done.set_exception(Withdrawn())
        self._soon(self._forget, state)
        return True

    def shutdown(self) -> None:
        """Stop reading; batches still out are abandoned (the job log runs them again at the next start)."""
        if self._closing:
            return
        self._closing = True
        self._on_loop(self._close()).result(timeout=10)
        self._soon(self._loop.stop)
        self._thread.join(timeout=10)
        self._calls.shutdown(wait=False)

    def model_config(self, name: str) -> ModelConfig:
        return configured_model(self.config, name)

    def model(self, name: str = "") -> ClusterModel:
        cfg = self.model_config(name)
        model = self._models.get(cfg.display_name)
        if model is None:
            model = cluster_model(cfg, self.config.base_dir)
            self._models[cfg.display_name] = model
        return model

    def loaded(self, name: str) -> ClusterModel | None:
        return self._models.get(name)

    def facts(self, name: str) -> tuple[Any, Any, str] | None:
        """``(preset, tokenizer, scheduler class)`` of a model asked for already: the configuration's
        preset; no tokenizer or sampler here (they are the workers')."""
        model = self.loaded(name)
        return None if model is None else (model.preset, model.tokenizer, "")

    def loaded_models(self) -> list[ClusterModel]:
        return list(self._models.values())

    def parked_models(self) -> list[str]:
        return []

    def queued_batches(self) -> int:
        return len({id(b) for b in self._batches.values() if not b.sent})

    def busy_stats(self) -> BusyStats:
        return BusyStats(0.0, 0.0, self._served)

    def workers(self) -> Future[list[dict[str, Any]]]:
        """The live workers (name, models, device, dtype, slots, free, served, last heartbeat in epoch
        seconds), found on the cluster thread: ``await asyncio.wrap_future(executor.workers())``."""
        async def bounded() -> list[dict[str, Any]]:
            async with asyncio.timeout(2.5):  # an interaction must be answered within 3 s
                return await self._workers()

        return self._on_loop(bounded())

    # ------------------------------------------------------------------ on the cluster thread

    # Work is handed to the cluster's loop in an empty context: the caller's context variables (a
    # test's simulated clock, which patches time.monotonic per context) must not follow it there.
    def _soon(self, fn: Callable[..., Any], *args: Any) -> None:
        self._loop.call_soon_threadsafe(fn, *args, context=contextvars.Context())

    def _on_loop(self, coro: Any) -> Future[Any]:
        return contextvars.Context().run(asyncio.run_coroutine_threadsafe, coro, self._loop)

    def _model_of(self, job: Job) -> str:
        name = getattr(job, "model", None)
        return "" if name is None else self.model_config(name).display_name

    def _start(self, state: ClusterBatch) -> None:
        state.seq = next(self._seq)
        for jid in state.ids:
            self._batches[jid] = state
        self._launch(state)

    def _launch(self, state: ClusterBatch) -> None:
        """Start sending ``state`` (again, after Redis lost it: in the place its ``seq`` gives it)."""
        task = self._loop.create_task(self._send(state))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(lambda t: t.cancelled() or t.exception() is None
                               or log.error("sending batch %s failed", state.ids, exc_info=t.exception()))

    async def _send(self, state: ClusterBatch) -> None:
        """Send ``state`` once a worker has room; across a Redis outage, or while Redis is out of
        memory, keep trying (it stays withdrawable and cancellable meanwhile). Anything else ends its
        jobs as failed: a batch must never wait forever."""
        backoff = 0.2
        while True:
            try:
                return await self._send_once(state)
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                self._unsend(state)  # the XADD itself failed: not sent after all
                await self._offline(exc)
            except OutOfMemoryError as exc:
                self._unsend(state)
                if not self._refusing:
                    log.warning("cluster: Redis refused a batch (%s); retrying. Give Redis more memory "
                                "(maxmemory) or let fewer results wait in it", exc)
                    self._refusing = True
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            except Exception:
                log.exception("cluster: sending batch %s failed", state.ids)
                self._unsend(state)
                for jid in state.ids:
                    if jid not in state.outcomes:
                        await self._settle(Failed(jid, internal_error_message()), None)
                return

    async def _send_once(self, state: ClusterBatch) -> None:
        await self._caught_up.wait()
        for jid in state.ids:
            if state.withdrawn:  # taken back meanwhile: what the stash holds stays there
                return
            if jid in state.outcomes:  # tried before (Redis refused it, or lost it)
                continue
            kept = await self._kept_outcome(jid)  # answered while the bot was away
            if kept is not None:
                await self._settle(*kept)
            elif jid in self._cancelled:
                self._cancelled.discard(jid)
                await self._settle(Cancelled(jid), None)
        if state.done.done() or state.withdrawn:
            return
        left = [p for p in state.jobs if p.job.job_id not in state.outcomes]
        left_ids = [p.job.job_id for p in left]
        if all(jid in self._queued for jid in left_ids) or await self._held_by_live_worker(left_ids):
            with self._lock:  # its results may have come in while Redis was asked: then it is not out
                if state.withdrawn or state.done.done():
                    return
                state.sent = True  # sent before the restart, still queued or running: wait for its result
            self._out[state.model] = self._out.get(state.model, 0) + 1  # it takes one of that worker's places
            return
        try:
            fields = await asyncio.to_thread(encode_batch, left, self.cap_bytes)
        except TooLarge as exc:
            for p in left:
                await self._settle(Failed(p.job.job_id, str(exc)), None)
            return
        # _room_for first: it also restarts the no-worker clock while some worker holds the model.
        while not (await self._room_for(state) and self._is_next(state)):
            if state.withdrawn or state.done.done():
                return
            if time.monotonic() - state.since > self.cluster.no_worker_timeout_s:
                message = NO_WORKER.format(model=state.model or "-", minutes=self.cluster.no_worker_timeout_s / 60)
                for p in left:
                    await self._settle(Failed(p.job.job_id, message), None)
                return
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.cluster.heartbeat_s):
                    await self._changed.wait()
        with self._lock:
            if state.withdrawn or state.done.done():
                return
            again = any(p.job.job_id in state.outcomes for p in left)  # one was cancelled meanwhile
            state.sent = not again
        if again:
            return await self._send_once(state)
        self._out[state.model] = self._out.get(state.model, 0) + 1
        await self._redis.xadd(self.keys.jobs(state.model), fields)
        self._refusing = False
        self._changed.set()  # the batch behind it may go now

    async def _workers(self) -> list[dict[str, Any]]:
        self._roster = await read_workers(self._redis, self.keys)
        return self._roster

    def unserved(self, model: str) -> bool:
        """Whether, at the last look, no live worker held ``model`` (a batch of it waits for one).
        Cheap and safe from any thread: reads the roster the cluster thread last saw."""
        roster = self._roster
        return roster is not None and not any(not model or model in w["models"] for w in roster)

    def _is_next(self, state: ClusterBatch) -> bool:
        """Whether no batch of the same model that came earlier still waits to be sent (fair order)."""
        return not any(b.seq < state.seq and b.model == state.model and not b.sent and not b.withdrawn
                       and not b.done.done() for b in self._batches.values())

    async def _room_for(self, state: ClusterBatch) -> bool:
        """Room counted per worker, in fair order across models (inference/cluster/room.py)."""
        roster = await self._workers()
        if model_room(state, roster):
            state.since = time.monotonic()  # the no-worker clock runs only while some worker can run it
        return has_room(state, self._batches.values(), self._out, roster)

    async def _held_by_live_worker(self, job_ids: list[str]) -> bool:
        holders = await self._redis.hmget(self.keys.running, job_ids)
        names = {h.decode() for h in holders if h is not None}
        if len(names) != 1 or any(h is None for h in holders):
            return False
        return bool(await self._redis.exists(self.keys.worker(names.pop())))

    def _forget(self, state: ClusterBatch) -> None:
        for jid in state.ids:
            if self._batches.get(jid) is state:
                del self._batches[jid]
        self._restash(state)  # results taken for it wait for the jobs' next handover
        self._changed.set()

    def _track(self, coro: Any) -> None:
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_log_failure)

    async def _spawn(self) -> None:
        # Progress is read from the stream's end as it is now, not from wherever it ends when the
        # reader first runs: a worker may already be reporting on a batch sent in between.
        # Bounded: the constructor waits for this, and a Redis that is down (its client retrying with
        # backoff) must not keep the bot from starting; the readers wait for it.
        start = "$"
        with contextlib.suppress(RedisConnectionError, RedisTimeoutError, OSError, TimeoutError):
            async with asyncio.timeout(2.0):
                newest = await self._redis.xrevrange(self.keys.progress, count=1)
            start = newest[0][0] if newest else "0-0"
        for coro in (self._read_results(), self._read_progress(start)):
            task = asyncio.get_running_loop().create_task(coro)
            task.add_done_callback(self._reader_died)
            self._tasks.add(task)

    def _reader_died(self, task: asyncio.Task[None]) -> None:
        """A reader that ends while the executor still serves would stall every job: say so loudly."""
        if not task.cancelled() and not self._closing:
            log.error("cluster: background reader %s stopped unexpectedly", task.get_coro().__name__,
                      exc_info=task.exception())

    async def _close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for state in {id(s): s for s in self._batches.values()}.values():
            self._complete(state, RuntimeError("the cluster executor was shut down before this batch ended"))
        self._batches.clear()
        await self._redis.aclose()

    def preferred_models(self) -> frozenset[str]:
        """No model is preferred in the bot's queue: each worker holds its own (inference/affinity.py)."""
        return frozenset()


def _log_failure(task: asyncio.Task[Any]) -> None:
    """A background task's exception is logged when it happens, not when the task is collected."""
    if not task.cancelled() and task.exception() is not None:
        log.error("cluster: %s failed", task.get_coro().__qualname__, exc_info=task.exception())
