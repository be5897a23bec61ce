"""The engine: the fair queue on the event loop feeding the one GPU thread.

The cogs talk to this class only: ``submit`` a job, ``cancel`` it, listen to its events. A
dispatcher task takes the next job in fair order, adds compatible jobs when batching pays
(see :class:`inference.batching.BatchPolicy`), prepares inputs on a helper thread and hands the
batch to :class:`GpuExecutor`. Two batches may be in flight: while the GPU works on one, the next
is already prepared and queued on the thread, so the GPU never waits for the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from config import Config
from inference.batching import BatchPolicy
from inference.eta import EtaEstimator
from inference.executor import GpuExecutor, Outcome, internal_error_message
from inference.jobs import Cancelled, Failed, Finished, Job, JobError, JobEvent, Queued
from inference.prepare import PreparedJob, prepare
from inference.presets import detect_family, preset_for
from inference.scheduler import FairQueue
from inference.validation import ModelInfo

log = logging.getLogger(__name__)

Listener = Callable[[JobEvent], None]


def eta_key(job: Job) -> str:
    """Jobs with the same key take about the same time."""
    p = job.to_params()
    return ":".join(str(p.get(k, "")) for k in ("kind", "model", "width", "height", "steps", "count", "strength"))


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


class Engine:
    IN_FLIGHT = 2  # batches handed to the GPU thread at once: one running, one ready behind it

    def __init__(self, config: Config, executor: GpuExecutor, *, queue: FairQueue | None = None,
                 eta: EtaEstimator | None = None, policy: BatchPolicy | None = None) -> None:
        self.config = config
        self.executor = executor
        self.queue = queue or FairQueue(per_user=config.queue.per_user, total=config.queue.total)
        self.eta = eta or EtaEstimator()
        self.policy = policy or BatchPolicy(max_batch=config.queue.max_batch)
        self._listeners: list[Listener] = []
        self._positions: dict[str, tuple[int, int]] = {}
        self._in_flight: dict[str, Job] = {}
        self._started_at: dict[str, float] = {}
        self._dispatcher: asyncio.Task[None] | None = None
        self._slots = asyncio.Semaphore(self.IN_FLIGHT)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.served = 0
        self.failed = 0
        self._stopped = False
        self.started_monotonic = time.monotonic()
        self.queue.add_listener(self._on_queue_change)

    # ------------------------------------------------------------------ lifecycle

    async def start(self, *, warm_up: bool = True) -> None:
        """Load the default model on the GPU thread (and warm it up), then start serving."""
        self._loop = asyncio.get_running_loop()
        # Events from the GPU thread run in the context the engine was started in, like the rest
        # of the engine's callbacks (a thread's own context is empty).
        self._context = contextvars.copy_context()
        await asyncio.wrap_future(self.executor.submit(self.executor.model, ""))
        if warm_up:
            await asyncio.wrap_future(self.executor.submit(self._warm_up))
        self._dispatcher = asyncio.create_task(self._dispatch(), name="easel-dispatcher")

    def _warm_up(self) -> None:
        """One tiny generation so the first member does not pay for lazy initialisation."""
        from inference.generate import run_diffusion_batch
        from inference.jobs import TextToImageJob

        model = self.executor.model("")
        side = model.preset.min_size
        job = TextToImageJob(job_id="warmup", owner=0, prompt="warm up", width=side, height=side, steps=1,
                             guidance=model.preset.guidance, model=model.name)
        run_diffusion_batch(model, [PreparedJob(job)], lambda *_: True)

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
        return self.queue.put(job)

    def restore(self, jobs: Iterable[Job]) -> None:
        """Re-queue jobs recovered from the job log at start-up, in their original order."""
        self.queue.restore(list(jobs))

    def cancel(self, job_id: str) -> bool:
        """Cancel a queued job at once, or a running one between two steps. False if unknown."""
        if self.queue.cancel(job_id) is not None:
            self._emit(Cancelled(job_id))
            return True
        if job_id in self._in_flight:
            self.executor.cancel(job_id)
            return True
        return False

    def is_known(self, job_id: str) -> bool:
        return job_id in self._in_flight or self.queue.position(job_id) is not None

    def position(self, job_id: str) -> tuple[int, int, float] | None:
        """``(position, queue length, eta seconds)`` of a queued job, or None."""
        pos = self.queue.position(job_id)
        if pos is None:
            return None
        return pos, len(self.queue), self._eta(pos)

    def model_info(self, name: str = "") -> ModelInfo:
        """Preset, tokenizer and LoRAs of a model, for validating a request on the event loop."""
        cfg = self.executor.model_config(name)
        loaded = self.executor.loaded(cfg.display_name)
        if loaded is not None:
            return ModelInfo(loaded.name, loaded.preset, loaded.tokenizer, tuple(loaded.loras))
        family = cfg.family if cfg.family != "auto" else detect_family(cfg.source)
        return ModelInfo(cfg.display_name, preset_for(cfg, family), None, tuple(lora.name for lora in cfg.loras))

    def status(self) -> EngineStatus:
        models = self.executor.loaded_models()
        device = str(models[0].device) if models else self.config.device.device
        dtype = str(models[0].dtype).removeprefix("torch.") if models else self.config.device.dtype
        return EngineStatus(device=device, dtype=dtype, models=tuple(m.name for m in models),
                            queued=len(self.queue), running=len(self._in_flight), served=self.served,
                            failed=self.failed, uptime_s=time.monotonic() - self.started_monotonic)

    # ------------------------------------------------------------------ events

    def _emit(self, event: JobEvent) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:  # a broken listener must not stop the engine
                log.exception("engine listener failed on %s", type(event).__name__)

    def _emit_threadsafe(self, event: JobEvent) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._emit, event, context=self._context)

    def _eta(self, position: int) -> float:
        ahead = self.queue.order()[: max(0, position - 1)]
        running = [self._remaining(j) for j in self._in_flight.values()]
        return sum(self.eta.estimate(eta_key(j)) for j in ahead) + sum(running)

    def _remaining(self, job: Job) -> float:
        started = self._started_at.get(job.job_id)
        expected = self.eta.estimate(eta_key(job))
        return expected if started is None else max(0.0, expected - (time.monotonic() - started))

    def _on_queue_change(self) -> None:
        order = self.queue.order()
        total = len(order)
        fresh: dict[str, tuple[int, int]] = {}
        eta = sum(self._remaining(j) for j in self._in_flight.values())
        for pos, job in enumerate(order, start=1):
            fresh[job.job_id] = (pos, total)
            if self._positions.get(job.job_id) != (pos, total):
                self._emit(Queued(job.job_id, pos, total, eta))
            eta += self.eta.estimate(eta_key(job))
        self._positions = fresh

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

    async def _next_batch(self) -> list[Job]:
        job = await self.queue.get()
        batch = [job]
        key = job.batch_key()
        size = self.policy.batch_size(job)
        if key is not None and size > 1:
            batch += self.queue.take_compatible(key, size - 1)
            wait = self.config.queue.batch_wait_ms / 1000
            if len(batch) < size and wait > 0:
                await asyncio.sleep(wait)
                batch += self.queue.take_compatible(key, size - len(batch))
        for j in batch:
            self._in_flight[j.job_id] = j
        return batch

    async def _run(self, batch: list[Job]) -> None:
        try:
            prepared: list[PreparedJob] = []
            for job in batch:
                try:
                    prepared.append(await asyncio.to_thread(prepare, job))
                except JobError as exc:
                    self._finish(job, Failed(job.job_id, str(exc)))
            if not prepared:
                return
            submitted = time.monotonic()
            future = self.executor.run_batch(prepared, self._emit_threadsafe)
            for p in prepared:
                self._started_at[p.job.job_id] = submitted
            try:
                outcomes = await asyncio.wrap_future(future)
            except Exception:
                log.exception("batch %s crashed", [p.job.job_id for p in prepared])
                outcomes = [Failed(p.job.job_id, internal_error_message(p.job.job_id)) for p in prepared]
            finished = [o for o in outcomes if isinstance(o, Finished)]
            if finished:
                per_image = sum(o.result.seconds for o in finished) / sum(len(o.result.images) for o in finished)
                self.policy.record(prepared[0].job, len(prepared), per_image)
            for p, outcome in zip(prepared, outcomes, strict=True):
                self._finish(p.job, outcome)
        finally:
            for job in batch:
                self._in_flight.pop(job.job_id, None)
                self._started_at.pop(job.job_id, None)
            self._slots.release()

    def _finish(self, job: Job, outcome: Outcome) -> None:
        if isinstance(outcome, Finished):
            self.served += 1
            self.eta.record(eta_key(job), outcome.result.seconds)
        elif isinstance(outcome, Failed):
            self.failed += 1
        self.queue.done(job.job_id)
        self._emit(outcome)
