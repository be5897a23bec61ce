"""The engine: the fair queue on the event loop feeding the one GPU thread.

The cogs talk to this class only: ``submit`` a job, ``cancel`` it, listen to its events. A
dispatcher task takes the next job in fair order, adds compatible jobs when batching pays
(see :class:`inference.batching.BatchPolicy`), waiting at most ``queue.batch_wait_ms`` for
companions, prepares inputs on a helper thread and hands the batch to :class:`GpuExecutor`.

Pipelining: two batches are in flight. While the GPU thread runs batch N, batch N+1 is already
prepared and queued on the thread, so it starts the moment N ends; N-1's outcome is handed to the
listeners (the studio encodes PNGs on a helper thread and writes the job log through SQLite's
thread) without the GPU thread waiting for any of it. ``executor.busy_stats()`` shows the result.
Until the thread starts N+1 its jobs are *next*, not running, and the choice is provisional: a job
that the fair order puts first arriving meanwhile replaces it (:mod:`inference.handover`).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from config import Config
from inference.affinity import DevicePreference
from inference.batching import BatchPolicy
from inference.eta import EtaEstimator
from inference.executor import GpuExecutor, Outcome, Withdrawn, internal_error_message
from inference.families import resolve_family
from inference.handover import Batch, Handover
from inference.jobs import Cancelled, Failed, Finished, Job, JobError, JobEvent, Started
from inference.positions import QueueView
from inference.positions import eta_key as eta_key  # where tests and benches import it from
from inference.prepare import PreparedJob, needs_preparing, prepare
from inference.presets import preset_for
from inference.scheduler import FairQueue
from inference.validation import ModelInfo, describe_model
from inference.warmup import warm_up_model

log = logging.getLogger(__name__)

Listener = Callable[[JobEvent], None]


@dataclass(frozen=True)
class EngineStatus:
    device: str
    dtype: str
    models: tuple[str, ...]
    queued: int
    running: int
    served: int
    failed: int
    uptime_s: float
    busy_fraction: float = 0.0  # of the GPU thread, since its first batch (see GpuExecutor.busy_stats)
    parked: tuple[str, ...] = ()  # of ``models``, those waiting in CPU RAM (device.resident_models)


# A batch that is not full keeps taking companions while the GPU is busy with the batches ahead of
# it, and is handed over this long before they are expected to end (the larger of the two).
HANDOVER_LEAD_S = 0.005
HANDOVER_LEAD_FRACTION = 0.1  # of the work ahead: room for an estimate that was too long


class Engine(QueueView):
    IN_FLIGHT = 2  # batches handed to the GPU thread at once: one running, one ready behind it

    def __init__(self, config: Config, executor: GpuExecutor, *, queue: FairQueue | None = None,
                 eta: EtaEstimator | None = None, policy: BatchPolicy | None = None) -> None:
        self.config = config
        self.executor = executor
        self._preference = DevicePreference(config, executor)
        self.queue = queue or FairQueue(per_user=config.queue.per_user, total=config.queue.total,
                                        affinity_skips=config.queue.affinity_skips, model_names=self._preference.names)
        self.eta = eta or EtaEstimator()
        self.policy = policy or BatchPolicy(max_batch=config.queue.max_batch, device=config.device.device)
        self._listeners: list[Listener] = []
        self._positions: dict[str, tuple[int, int]] = {}
        self._in_flight: dict[str, Job] = {}
        self._started_at: dict[str, float] = {}  # handed over at (monotonic)
        self._began: dict[str, float] = {}  # started on the GPU thread at (monotonic)
        self._handover = Handover(self.queue, executor, self._forget_in_flight)
        self._eta_keys: dict[str, str] = {}  # job id -> eta_key(job), while the job is known
        self._dispatcher: asyncio.Task[None] | None = None
        # An executor may ask for more batches at once (a remote one with several requests in the air).
        self._slots = asyncio.Semaphore(getattr(executor, "in_flight", self.IN_FLIGHT))
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.served = 0
        self.failed = 0
        self._stopped = False
        self._queue_changed = asyncio.Event()
        self._outbox: list[JobEvent] = []
        self._outbox_lock = threading.Lock()
        self._drain_pending = False
        self._positions_held = False
        self._positions_due = False  # a position update is scheduled
        self._positions_at = 0.0  # when positions were last published (monotonic)
        self.started_monotonic = time.monotonic()
        self.queue.add_listener(self._on_queue_change)

    # ------------------------------------------------------------------ lifecycle

    async def start(self, *, warm_up: bool = True) -> None:
        """Load the default model on the GPU thread (and warm it up), then start serving."""
        self._loop = asyncio.get_running_loop()
        # Events from the GPU thread run in the context the engine was started in, like the rest
        # of the engine's callbacks (a thread's own context is empty).
        self._context = contextvars.copy_context()
        model = await asyncio.wrap_future(self.executor.submit(self.executor.model, ""))
        self.policy.device = str(model.device)
        self._prefer()
        if warm_up and getattr(self.executor, "warms_up", True):  # a remote service has nothing of ours to warm
            measured = await asyncio.wrap_future(self.executor.submit(
                warm_up_model, self.executor, self.policy.max_batch, self.config.device.compile))
            for job, batch_len, per_image in measured:
                self.policy.record(job, batch_len, per_image)
            if measured:  # queue estimates (and filling batches, _busy_until) have a figure from the start
                job = measured[0][0]
                batches = self.policy.pays(job)
                self.eta.record(self._eta_key(job), next(s for _, n, s in measured if (n > 1) == batches))
        self._dispatcher = asyncio.create_task(self._dispatch(), name="easel-dispatcher")

    @property
    def serving(self) -> bool:
        """Whether the dispatcher that feeds the GPU thread is running (for /healthz)."""
        return self._dispatcher is not None and not self._dispatcher.done() and not self._stopped

    async def stop(self) -> None:
        """Stop serving. Running jobs are abandoned, not failed: the job log still has them as
        running, so the next start runs them again."""
        if self._stopped:
            return
        self._stopped = True
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._dispatcher
        if not getattr(self.executor, "keeps_work_on_stop", False):  # a cluster's workers carry on
            for jid in list(self._in_flight):
                self.executor.cancel(jid)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.to_thread(self.executor.shutdown)

    # ------------------------------------------------------------------ API for cogs

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def submit(self, job: Job) -> int:
        """Queue a job; returns its position. Raises QueueRefused (member-facing message)."""
        self.queue.put(job)
        self._handover.keep_fair()  # a batch taken early for the GPU thread may no longer be the fair one
        where = self.position(job.job_id)
        assert where is not None
        return where[0]

    def set_weight(self, owner: int, weight: int) -> None:
        """A member's jobs per turn in the fair queue (1-5), decided when they ask (their roles)."""
        self.queue.set_weight(owner, weight)
        self._handover.keep_fair()  # a heavier member's job may now be due before a batch taken early

    def restore(self, jobs: Iterable[Job]) -> None:
        """Re-queue jobs recovered from the job log at start-up, in their original order."""
        self.queue.restore(list(jobs))
        self._handover.keep_fair()

    def cancel(self, job_id: str) -> bool:
        """Cancel a queued job at once, or a running one between two steps. False if unknown.

        A job taken for the GPU thread that has not started is given back with its batch (the
        others are taken again) and cancelled at once too."""
        batch = self._handover.batch_of(job_id)
        if batch is not None:
            self._handover.withdraw_from(batch)
        if self.queue.cancel(job_id) is not None:
            self._eta_keys.pop(job_id, None)
            self.executor.cancel_queued(job_id)  # a cluster: it may wait in Redis from before a restart
            self._emit(Cancelled(job_id))
            return True
        if job_id in self._in_flight:
            self.executor.cancel(job_id)
            return True
        return False

    def is_known(self, job_id: str) -> bool:
        return job_id in self._in_flight or self.queue.position(job_id) is not None

    def model_info(self, name: str = "") -> ModelInfo:
        """Preset, tokenizer and LoRAs of a model, for validating a request on the event loop."""
        cfg = self.executor.model_config(name)
        facts = self.executor.facts(cfg.display_name)
        if facts is not None:  # loaded now or before: what its own configs said when it loaded
            preset, tokenizer, scheduler_class = facts
            return describe_model(cfg, preset, tokenizer, scheduler_class)
        family = resolve_family(cfg.family, cfg.source, self.config.base_dir)
        return describe_model(cfg, preset_for(cfg, family))

    def status(self) -> EngineStatus:
        models = self.executor.loaded_models()
        device = str(models[0].device) if models else self.config.device.device
        dtype = str(models[0].dtype).removeprefix("torch.") if models else self.config.device.dtype
        return EngineStatus(device=device, dtype=dtype, models=tuple(m.name for m in models),
                            queued=len(self.queue) + len(self.queue.next_up()), running=len(self.running()),
                            served=self.served,
                            failed=self.failed, uptime_s=time.monotonic() - self.started_monotonic,
                            busy_fraction=self.executor.busy_stats().fraction,
                            parked=tuple(self.executor.parked_models()))

    # ------------------------------------------------------------------ events

    def _emit(self, event: JobEvent) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:  # a broken listener must not stop the engine
                log.exception("engine listener failed on %s", type(event).__name__)

    def _emit_threadsafe(self, event: JobEvent) -> None:
        """Called off the loop (the executor's relay thread): queue the event for the loop.

        Events that arrive before the loop gets round to them (a step's progress for every job of
        a batch) share one wake-up of the loop; their order is kept.
        """
        assert self._loop is not None
        with self._outbox_lock:
            self._outbox.append(event)
            if self._drain_pending:
                return
            self._drain_pending = True
        self._loop.call_soon_threadsafe(self._drain_outbox, context=self._context)

    def _drain_outbox(self) -> None:
        with self._outbox_lock:
            events, self._outbox = self._outbox, []
            self._drain_pending = False
        for event in events:
            if isinstance(event, Started):
                self._began[event.job_id] = time.monotonic()
                self._handover.started(event.job_id)
            self._emit(event)

    # ------------------------------------------------------------------ dispatching

    async def _dispatch(self) -> None:
        while True:
            await self._slots.acquire()
            try:
                batch = await self._next_batch()
            except BaseException:
                self._slots.release()
                raise
            task = asyncio.create_task(self._run(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _next_batch(self) -> Batch:
        """The next job in fair order, plus compatible companions when the policy batches its shape.

        Companions already waiting join at once; otherwise the dispatcher waits for more, at most
        ``queue.batch_wait_ms`` on an idle GPU (what lets a burst of requests share one call), and
        goes as soon as the batch is full. While the GPU is still busy with the batches ahead, the
        batch could not start anyway: it keeps taking companions until just before they are
        expected to end (:meth:`_busy_until`), so a backlog that is still arriving runs in full
        batches. Shapes where batching does not pay never wait. A batch given back meanwhile (a job
        the fair order puts first arrived) is dropped, and the choice starts again.
        """
        while True:
            job = await self.queue.get()
            self._in_flight[job.job_id] = job
            batch = self._handover.take(job)
            key = job.batch_key()
            size = self.policy.batch_size(job)
            if key is not None and size > 1:
                batch.jobs += self._take_compatible(key, size - 1)
                deadline = time.monotonic() + self.config.queue.batch_wait_ms / 1000
                while len(batch.jobs) < size and not batch.withdrawn:
                    remaining = max(deadline, self._busy_until()) - time.monotonic()
                    if remaining <= 0:
                        break
                    self._queue_changed.clear()
                    await self._wait_for_queue_change(remaining)
                    if not batch.withdrawn:
                        batch.jobs += self._take_compatible(key, size - len(batch.jobs))
            if not batch.withdrawn:
                return batch

    def _busy_until(self) -> float:
        """When (``time.monotonic()``) the next batch must be on the GPU thread for it not to wait:
        the end of the work handed to it, from the jobs' measured durations, less a lead. 0 when
        nothing runs, or when a job's duration has not been measured yet (then only
        ``batch_wait_ms`` counts)."""
        started = [(self._started_at[job_id], job) for job_id, job in self._in_flight.items()
                   if job_id in self._started_at]
        if not started:
            return 0.0
        work = 0.0
        for _, job in started:
            seconds = self.eta.measured(self._eta_key(job))
            if seconds is None:
                return 0.0
            work += seconds
        # Handed over is not started: a batch queued behind another began later, so this errs early.
        first = min(at for at, _ in started)
        return first + work - max(HANDOVER_LEAD_S, HANDOVER_LEAD_FRACTION * work)

    def _take_compatible(self, key: Any, limit: int) -> list[Job]:
        """Take companions; members' positions are then updated once for the whole batch."""
        self._positions_held = True
        try:
            taken = self.queue.take_compatible(key, limit)
        finally:
            self._positions_held = False
        for job in taken:
            self._in_flight[job.job_id] = job
        if taken:
            self._on_queue_change()
        return taken

    async def _wait_for_queue_change(self, timeout: float) -> bool:
        """Wait until the queue changes or ``timeout`` seconds pass; True if it changed.

        ``asyncio.timeout``, not ``wait_for``: on Python 3.11 ``wait_for`` drops a cancellation
        that arrives just as the queue changed (stop() right after a give-back), and the
        dispatcher would never stop."""
        try:
            async with asyncio.timeout(timeout):
                await self._queue_changed.wait()
        except TimeoutError:
            return False
        return True

    async def _run(self, taken: Batch) -> None:
        batch = list(taken.jobs)
        try:
            prepared: list[PreparedJob] = []
            # Text-to-image jobs have no inputs to decode: no trip to a helper thread (each trip wakes
            # threads that take the GIL from the GPU thread).
            readied = (await asyncio.to_thread(_prepare_all, batch) if any(needs_preparing(j) for j in batch)
                       else [PreparedJob(j) for j in batch])
            if taken.withdrawn:  # given back while its inputs were read: they are dropped
                return
            for job, ready in zip(batch, readied, strict=True):
                if isinstance(ready, JobError):
                    self._finish(job, Failed(job.job_id, str(ready)))
                else:
                    prepared.append(ready)
            if not prepared:
                return
            submitted = time.monotonic()
            future = taken.handed = self.executor.run_batch(prepared, self._emit_threadsafe)
            for p in prepared:
                self._started_at[p.job.job_id] = submitted
            try:
                outcomes = await asyncio.wrap_future(future)
            except Withdrawn:  # given back before the GPU thread started it (the jobs are in the queue again)
                return
            except Exception:
                log.exception("batch %s crashed", [p.job.job_id for p in prepared])
                outcomes = [Failed(p.job.job_id, internal_error_message()) for p in prepared]
            finished = [o for o in outcomes if isinstance(o, Finished)]
            if finished:
                # a text result (/describe) counts as one image of work
                per_image = sum(o.result.seconds for o in finished) / sum(len(o.result.images) or 1 for o in finished)
                self.policy.record(prepared[0].job, len(prepared), per_image)
            for p, outcome in zip(prepared, outcomes, strict=True):
                self._finish(p.job, outcome)
        finally:
            if not taken.withdrawn:
                self._handover.ended(taken)
                for job in batch:
                    self._forget_in_flight(job)
            self._prefer()
            self._slots.release()
            self._queue_changed.set()  # a batch still taking companions goes now if it was waiting for this one

    def _prefer(self) -> None:
        """Jobs for the model the device will hold next go first, within a bound (inference/affinity.py)."""
        self.queue.set_preferred(self._preference.now(self.queue.next_up()))

    def _forget_in_flight(self, job: Job) -> None:
        self._in_flight.pop(job.job_id, None)
        self._started_at.pop(job.job_id, None)
        self._began.pop(job.job_id, None)

    def _finish(self, job: Job, outcome: Outcome) -> None:
        if isinstance(outcome, Finished):
            self.served += 1
            self.eta.record(self._eta_key(job), outcome.result.seconds)
        elif isinstance(outcome, Failed):
            self.failed += 1
        self.queue.done(job.job_id)
        self._eta_keys.pop(job.job_id, None)
        self._emit(outcome)


def _prepare_all(batch: list[Job]) -> list[PreparedJob | JobError]:
    """Prepare every job of a batch in one trip to a helper thread; a job that cannot be read fails alone."""
    out: list[PreparedJob | JobError] = []
    for job in batch:
        try:
            out.append(prepare(job))
        except JobError as exc:
            out.append(exc)
    return out
