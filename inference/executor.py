"""The one thread that owns the GPU.

Every torch call in easel happens here: loading models, diffusion batches, the anime GAN. The
event loop hands over prepared batches and gets events back through ``emit`` (which the engine
wires to ``loop.call_soon_threadsafe``). One failing job never stops the thread: failures become
:class:`Failed` outcomes with a message fit for the member.

Events and results leave the thread through a relay thread: waking the event loop writes to a
socket, which gives up the GIL, and the loop then holds it while it reacts to the finished batch.
Done on the GPU thread, that made the next batch wait for the loop; handing them to the relay is a
queue append that never gives the GIL up, so the next batch starts at once.

Where the machine has a core to spare, the thread runs on core(s) of its own and the rest of the
bot on the others (``device.pin_threads``, inference/placement.py), so it never waits for a core.

The thread keeps a cheap account of its own use (:meth:`GpuExecutor.busy_stats`): seconds spent
running batches against the wall time since the first batch began. With a backlog the engine keeps
the next batch queued on the thread, so that fraction should stay close to 1.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import torch

from config import Config, ModelConfig
from inference.affinity import device_model_of, held_preference
from inference.busy import BusyStats
from inference.call_overhead import trim_call_overhead
from inference.describe.runner import DescribeRunner
from inference.devices import cpu_threads, free_memory, is_out_of_memory
from inference.generate import effective_steps, ensure_sdpa, latent_preview, run_diffusion_batch
from inference.jobs import (
    Cancelled,
    DiffusionJob,
    Failed,
    Finished,
    JobError,
    JobEvent,
    JobKind,
    MorphJob,
    Progress,
    Started,
)
from inference.kind_runners import KindRunners, default_anime_factory  # noqa: F401 - callers import it from here
from inference.loader import LoadedModel, load_model
from inference.placement import thread_placement
from inference.prepare import PreparedJob
from inference.relay import Relay
from inference.residency import Residency

log = logging.getLogger(__name__)

Emit = Callable[[JobEvent], None]
Outcome = Finished | Failed | Cancelled

OOM_MESSAGE = ("The GPU ran out of memory on this request, even when run on its own. "
               "Try a smaller size or fewer images.")


def configured_model(config: Config, name: str) -> ModelConfig:
    """The configured model called ``name`` ("" = the default one); JobError when there is none.
    Every executor kind answers ``model_config`` with this."""
    for m in config.all_models:
        if m.display_name == name or (not name and m is config.model):
            return m
    raise JobError(f"There is no model called {name!r} here.")


class Withdrawn(Exception):
    """Set on a batch's future when the engine took the batch back before it started (:meth:`GpuExecutor.withdraw`)."""


def internal_error_message() -> str:
    """What the member reads when a job failed on our side; the poster adds the job id (the log has it)."""
    return "Something went wrong while making this image. The admins can find the details in the log."


# Progress leaves the GPU thread at most this often per batch. Members see an edit every ~1.5 s
# (Discord's edit limits); a step-by-step stream of a fast model's 20+ steps per second would only
# wake the event loop and the relay, and every wake-up takes the GIL from this thread.
PROGRESS_EVERY_S = 0.25


@dataclass
class _Running:
    job_ids: tuple[str, ...]
    last_progress: float  # monotonic; the batch's start until a step is reported
    last_preview: float = 0.0


class GpuExecutor(KindRunners):
    """Runs batches on a single worker thread; models load lazily on that thread and stay resident."""

    def __init__(self, config: Config, *, anime_factory: Callable[[], Any] | None = None,
                 upscale_factory: Callable[[], Any] | None = None, preview_interval_s: float = 1.5, progress_interval_s: float = PROGRESS_EVERY_S) -> None:
        self.config = config
        self.placement = thread_placement(config)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="easel-gpu", initializer=self._enter_thread)
        self._models = Residency(config.device.resident_models, accelerator=config.device.device != "cpu",
                                 offload=config.device.cpu_offload)
        self._facts: dict[str, tuple[Any, Any, str]] = {}  # model name -> facts found loading it (kept after unloading)
        self._anime_factory = anime_factory
        self._anime: Any = None
        self._describe = DescribeRunner(config)  # loads its captioning model on first use
        self._upscale_factory = upscale_factory
        self._upscaler: Any = None  # inference/upscale/runner.py's UpscaleRunner, built on first use
        self._cancelled: set[str] = set()
        self._lock = threading.Lock()
        self.preview_interval_s = preview_interval_s
        self.progress_interval_s = progress_interval_s
        self.thread_ident: int | None = None
        self._clock = time.perf_counter
        self._cpu_clock = time.thread_time  # this thread's CPU seconds, read on the GPU thread
        self._busy_s = 0.0
        self._cpu_s = 0.0
        self._batches = 0
        self._first_start: float | None = None
        self._last_end: float | None = None
        self._running_since: float | None = None
        self._queued = 0  # batches handed over and not started yet
        self._heading: str | None = None  # the model of the last diffusion batch started (as its jobs name it)
        self._relay = Relay()
        self._pending: set[Future[list[Outcome]]] = set()
        threads = cpu_threads(config)
        if threads:
            torch.set_num_threads(threads)

    # ------------------------------------------------------------------ API for the event loop

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        """Run any callable on the inference thread (model loading, warm-up, --check)."""
        return self._pool.submit(self._on_thread, fn, *args)

    def place_threads(self) -> None:
        """Move this thread (the event loop's) and the process's other threads off the GPU
        thread's cores (inference/placement.py); call before starting threads and processes that
        should inherit that. No-op when placement is off or there is no core to spare."""
        if self.placement is not None:
            self.placement.move_others()

    def run_batch(self, batch: Sequence[PreparedJob], emit: Emit) -> Future[list[Outcome]]:
        """Queue a prepared batch on the thread; it starts as soon as the batch before it ends.

        ``emit`` and the returned future are called from the relay thread, in order: every event of
        the batch is emitted before the future completes.
        """
        done: Future[list[Outcome]] = Future()
        done.set_running_or_notify_cancel()  # once handed over, a batch stops through cancel(), job by job
        jobs = list(batch)

        def relayed(event: JobEvent) -> None:
            self._relay.call(emit, event)

        def work() -> None:
            with self._lock:
                if done not in self._pending:  # dropped by shutdown() just before it could start
                    return
                self._pending.discard(done)
                if jobs and device_model_of(jobs[0].job) is not None:
                    self._heading = device_model_of(jobs[0].job)
            try:
                outcomes = self._timed_batch(jobs, relayed)
            except BaseException as exc:  # jobs' own failures are outcomes already; this is the executor's
                self._relay.call(self._settle, done, None, exc)
            else:
                self._relay.call(self._settle, done, outcomes, None)

        with self._lock:
            self._queued += 1
            self._pending.add(done)  # until it starts
        try:
            self._pool.submit(self._on_thread, work)
        except RuntimeError:  # shut down
            with self._lock:
                self._queued -= 1
                self._pending.discard(done)
            raise
        return done

    def withdraw(self, done: Future[list[Outcome]]) -> bool:
        """Take back a batch handed over by :meth:`run_batch` if it has not started: its future
        fails with :class:`Withdrawn` and the thread skips it. False once it has started (or ended)."""
        with self._lock:
            if done not in self._pending:
                return False
            self._pending.discard(done)
            self._queued -= 1
        done.set_exception(Withdrawn())
        return True

    @staticmethod
    def _settle(done: Future[list[Outcome]], outcomes: list[Outcome] | None, error: BaseException | None) -> None:
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(outcomes or [])

    def queued_batches(self) -> int:
        """Batches handed to the thread that have not started yet (the engine keeps one ready)."""
        with self._lock:
            return self._queued

    def busy_stats(self) -> BusyStats:
        """The thread's busy seconds and the wall time since the first batch (see :class:`BusyStats`)."""
        with self._lock:
            now = self._clock()
            busy = self._busy_s
            if self._running_since is not None:
                busy += now - self._running_since
            if self._first_start is None:
                return BusyStats(0.0, 0.0, self._batches)
            idle = self._running_since is None and self._queued == 0
            end = self._last_end if idle and self._last_end is not None else now
            return BusyStats(busy, end - self._first_start, self._batches, self._cpu_s, self._busy_s)

    def reset_busy_stats(self) -> None:
        """Start a new measuring window (a bench calls this after the warm-up)."""
        with self._lock:
            self._busy_s = 0.0
            self._cpu_s = 0.0
            self._batches = 0
            self._first_start = self._running_since
            self._last_end = None

    def cancel(self, job_id: str) -> None:
        """Ask a submitted or running job to stop (checked before it starts and between steps)."""
        with self._lock:
            self._cancelled.add(job_id)

    def cancel_queued(self, job_id: str) -> None:
        """A job cancelled in the fair queue, never handed over: nothing of it is here."""

    def shutdown(self) -> None:
        """Drop queued batches (their futures fail at once), let the running one end, stop both threads."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            dropped, self._pending = list(self._pending), set()
            self._queued -= len(dropped)
        for done in dropped:
            done.set_exception(RuntimeError("the GPU thread was shut down before this batch ran"))
        self._pool.shutdown(wait=True)
        self._relay.close()
        if self.placement is not None:
            self.placement.restore()

    def model_config(self, name: str) -> ModelConfig:
        return configured_model(self.config, name)

    def model(self, name: str = "") -> LoadedModel:
        """The model on its device: loaded if needed, moved back from RAM if parked there
        (inference/residency.py). Call on the inference thread only."""
        cfg = self.model_config(name)
        return self._models.use(cfg.display_name, lambda: self._load(cfg))

    def _load(self, cfg: ModelConfig) -> LoadedModel:
        loaded = load_model(cfg, self.config.device, self.config.base_dir)
        pipes = loaded.all_pipes()
        if not self.config.device.attention_slicing:
            attention: dict[str, int] = {}
            for pipe in pipes:
                attention = ensure_sdpa(pipe)
            log.info("model %s attention processors: %s", loaded.name, attention)
        for pipe in pipes:
            trim_call_overhead(pipe)
        own = type(loaded.default_scheduler).__name__ if loaded.default_scheduler is not None else ""
        self._facts[cfg.display_name] = (loaded.preset, loaded.tokenizer, own)
        return loaded

    def facts(self, name: str) -> tuple[Any, Any, str] | None:
        """``(preset, tokenizer, scheduler class)`` of a model as detected when it was last loaded: what
        validation needs once only one model stays resident (its name alone may not tell its family)."""
        return self._facts.get(name)

    def loaded_models(self) -> list[LoadedModel]:
        """Models held: the one on the device first, then those parked in RAM."""
        return list(self._models)

    def parked_models(self) -> list[str]:
        """Names of the loaded models waiting in CPU RAM (``device.resident_models``)."""
        return [m.name for m in self._models if self._models.is_parked(m.name)]

    def model_switches(self) -> list[tuple[str, str, float]]:
        """Recent model switches, newest last: (model, "ram" or "disk", seconds)."""
        return list(self._models.switches)

    def preferred_models(self) -> frozenset[str]:
        """The model on the device (or being switched to), by every name a job may give it, when
        running another one costs a switch; empty when it costs nothing (inference/affinity.py). Read
        from the event loop."""
        with self._lock:
            heading = self._heading
        return held_preference(self.config, self._models, heading)

    def loaded(self, name: str) -> LoadedModel | None:
        return self._models.get(name)

    # ------------------------------------------------------------------ on the thread

    def _enter_thread(self) -> None:
        if self.placement is not None:
            self.placement.pin_gpu_thread()

    def _on_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        self.thread_ident = threading.get_ident()
        return fn(*args)

    def _timed_batch(self, batch: list[PreparedJob], emit: Emit) -> list[Outcome]:
        with self._lock:
            self._queued -= 1
            self._running_since = self._clock()
            if self._first_start is None:
                self._first_start = self._running_since
        cpu_start = self._cpu_clock()
        try:
            return self._run_batch(batch, emit)
        finally:
            with self._lock:
                end = self._clock()
                assert self._running_since is not None
                self._busy_s += end - self._running_since
                self._cpu_s += self._cpu_clock() - cpu_start
                self._batches += 1
                self._running_since = None
                self._last_end = end

    def _take_cancelled(self, job_id: str) -> bool:
        with self._lock:
            if job_id in self._cancelled:
                self._cancelled.discard(job_id)
                return True
            return False

    def _is_cancelled(self, job_id: str) -> bool:
        with self._lock:
            return job_id in self._cancelled

    def _run_batch(self, batch: list[PreparedJob], emit: Emit) -> list[Outcome]:
        outcomes: dict[str, Outcome] = {}
        live: list[PreparedJob] = []
        for prepared in batch:
            if self._take_cancelled(prepared.job.job_id):
                outcomes[prepared.job.job_id] = Cancelled(prepared.job.job_id)
            else:
                live.append(prepared)
        if live:
            for prepared in live:
                emit(Started(prepared.job.job_id))
                job = prepared.job
                if isinstance(job, DiffusionJob):  # the bar starts empty, at the job's own length (a morph's: frames)
                    emit(Progress(job.job_id, 0, job.frames if isinstance(job, MorphJob) else effective_steps(job), None))
            for result in self._run_live(live, emit):
                outcomes[result.job_id] = result
        return [outcomes[p.job.job_id] for p in batch]

    def _run_live(self, live: list[PreparedJob], emit: Emit) -> list[Outcome]:
        runners = {JobKind.ANIME: self._run_anime_jobs, JobKind.MORPH: self._run_morphs,
                   JobKind.DESCRIBE: self._describe.run,
                   JobKind.UPSCALE: self._run_upscales}
        try:
            return runners.get(live[0].job.kind, self._run_diffusion)(live, emit)
        except JobError as exc:
            return [Failed(p.job.job_id, str(exc)) for p in live]
        except Exception as exc:  # one failing batch never stops the executor
            if not is_out_of_memory(exc):
                log.exception("job(s) %s failed", ", ".join(p.job.job_id for p in live))
                return [Failed(p.job.job_id, internal_error_message()) for p in live]
        # Out of memory. Retried only here, outside the except block: inside it, the exception and
        # its traceback keep the failed call's frames, and with them its tensors, alive.
        return self._after_oom(live, emit)

    def _run_diffusion(self, live: list[PreparedJob], emit: Emit) -> list[Outcome]:
        first = live[0].job
        assert isinstance(first, DiffusionJob)
        model = self.model(first.model)
        state = _Running(tuple(p.job.job_id for p in live), last_progress=time.monotonic())
        previews = self.config.device.previews

        def on_step(step: int, total: int, latents: Any) -> bool:
            active = [jid for jid in state.job_ids if not self._is_cancelled(jid)]
            if not active:
                return False
            now = time.monotonic()
            if now - state.last_progress < self.progress_interval_s:
                return True
            state.last_progress = now
            want_preview = previews and latents is not None and now - state.last_preview >= self.preview_interval_s
            if want_preview:
                state.last_preview = now
            offset = 0
            for prepared in live:
                job = prepared.job
                assert isinstance(job, DiffusionJob)
                if job.job_id in active:
                    preview = latent_preview(latents, offset, model.family) if want_preview and step < total else None
                    emit(Progress(job.job_id, step, total, preview))
                offset += job.count
            return True

        results = run_diffusion_batch(model, live, on_step)
        outcomes: list[Outcome] = []
        for i, prepared in enumerate(live):
            jid = prepared.job.job_id
            if self._take_cancelled(jid) or results is None:
                outcomes.append(Cancelled(jid))
            else:
                outcomes.append(Finished(jid, results[i]))
        return outcomes

    def _after_oom(self, live: list[PreparedJob], emit: Emit) -> list[Outcome]:
        """Out of memory: free, retry one job at a time, then fail only the job that still does not fit.

        Called once the exception is gone; what the failed call built is garbage now, and collected
        (frames and tensors can hold each other in cycles) before the cache goes back to the device."""
        gc.collect()
        device = self._models.active.device if self._models.active is not None else None
        if device is not None:
            free_memory(device)
        if len(live) == 1:
            log.warning("job %s ran out of GPU memory on its own", live[0].job.job_id)
            return [Failed(live[0].job.job_id, OOM_MESSAGE)]
        log.warning("batch of %d ran out of GPU memory; retrying one by one", len(live))
        outcomes: list[Outcome] = []
        for prepared in live:
            outcomes.extend(self._run_live([prepared], emit))
        return outcomes

