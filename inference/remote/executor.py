"""The executor for hosts without a GPU: /imagine and /vary through the Hugging Face Inference API.

It offers the engine what :class:`inference.executor.GpuExecutor` offers (``run_batch``,
``submit``, ``cancel``, ``shutdown``, ``model``/``loaded``/``loaded_models``/``model_config``,
``busy_stats``), so the fair queue, batching, the job log and the Discord side work unchanged.

- Each image is one request. Requests run on ``remote.concurrency`` worker threads, so the images
  of a batch (and of a four-image job) are made side by side; the batch's outcomes are handed
  back together when its last image is in, like a GPU batch. ``JobResult.seconds`` is the batch's
  wall time shared among its jobs, as on the GPU, so the batching policy sees what batching gains.
- Progress is counted in images (0/4 ... 4/4): a remote service reports no steps.
- Cancelling a job stops it before its next request or retry wait; a request already in the air
  is let finish and its image thrown away (as a GPU job is interrupted between two steps).
- /anime runs here on this machine, through a :class:`GpuExecutor` that never loads a diffusion
  model: the same thread, the same anime factory, the same events as with the local backend.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from huggingface_hub import constants as hf_constants
from PIL import Image

from config import Config, ModelConfig
from inference.busy import BusyStats
from inference.executor import Emit, GpuExecutor, Outcome, internal_error_message
from inference.jobs import (
    AnimeJob,
    Cancelled,
    DiffusionJob,
    Failed,
    Finished,
    Job,
    JobError,
    JobEvent,
    JobKind,
    JobResult,
    Progress,
    Started,
)
from inference.loader import ModelLoadError
from inference.prepare import PreparedJob
from inference.remote.busy import BusyClock
from inference.remote.client import RemoteClient, provider_tasks, read_token
from inference.remote.model import RemoteModel, remote_model
from inference.remote.pool import DaemonPool
from inference.remote.retry import Stopped

log = logging.getLogger(__name__)


MORPH_UNSUPPORTED = ("Morph animations (/morph, 🎞️) are not available on this bot: it makes its images through the "
                     "Hugging Face Inference API, which cannot keep one seed's noise across frames. /imagine and /vary "
                     "still work.")
UPSCALE_UNSUPPORTED = ("Upscaling (/upscale and the Upscale buttons) is not available on this bot: it makes its "
                       "images through the Hugging Face Inference API, which runs no upscaler models.")

DESCRIBE_UNSUPPORTED = ("/describe is not available on this bot: it makes its images through the Hugging Face "
                        "Inference API and runs no captioning model of its own. /imagine still works.")


@dataclass
class _Run:
    """One job of a batch while its images are being made. Guarded by the executor's lock."""

    prepared: PreparedJob
    halt: threading.Event  # set on cancel, on a failed image, on shutdown
    images: list[Image.Image | None]
    left: int  # image requests not finished yet
    made: int = 0
    started: bool = False
    cancelled: bool = False
    error: str | None = None

    @property
    def job(self) -> DiffusionJob:
        job = self.prepared.job
        assert isinstance(job, DiffusionJob)
        return job

    def outcome(self, seconds: float) -> Outcome:
        jid = self.job.job_id
        if self.cancelled:
            return Cancelled(jid)
        if self.error is not None:
            return Failed(jid, self.error)
        images = tuple(im for im in self.images if im is not None)
        assert len(images) == len(self.images)
        return Finished(jid, JobResult(jid, images, self.job.seeds, seconds))


@dataclass
class _Batch:
    runs: list[_Run]
    emit: Emit
    done: Future[list[Outcome]]
    submitted: float = field(default_factory=time.monotonic)
    left: int = 0  # runs not finished yet


class RemoteExecutor:
    # The engine's warm-up and batching calibration run the local pipelines; a remote service has
    # nothing of ours to warm, and measuring it would cost requests (read by Engine.start).
    warms_up = False

    def __init__(self, config: Config, *, anime_factory: Callable[[], Any] | None = None,
                 client: RemoteClient | None = None, environ: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.remote = config.remote
        # environ=None: the process environment and .env; a mapping (tests): that mapping only.
        self.client = client or RemoteClient(config.remote, read_token(config.remote, environ))
        self._local = GpuExecutor(config, anime_factory=anime_factory)
        self._pool = DaemonPool(self.remote.concurrency, "easel-remote")
        self._models: dict[str, RemoteModel] = {}
        self._lock = threading.Lock()
        self._runs: dict[str, _Run] = {}
        self._cancelled: set[str] = set()  # cancelled before their batch arrived
        self._local_jobs: set[str] = set()  # anime jobs handed to the local executor
        self._busy = BusyClock()
        self._closing = False

    @property
    def in_flight(self) -> int:
        """Batches worth handing over at once: enough to keep every request slot busy, plus one ready."""
        return self.remote.concurrency + 1

    # ------------------------------------------------------------------ the engine's interface

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        """Run a callable on the local inference thread (start-up, the anime model)."""
        return self._local.submit(fn, *args)

    def run_batch(self, batch: Sequence[PreparedJob], emit: Emit) -> Future[list[Outcome]]:
        batch = list(batch)
        if batch and isinstance(batch[0].job, AnimeJob):
            return self._run_local(batch, emit)
        done: Future[list[Outcome]] = Future()
        done.set_running_or_notify_cancel()  # an awaiting task being cancelled must not cancel the outcomes
        refused = {JobKind.MORPH: MORPH_UNSUPPORTED, JobKind.DESCRIBE: DESCRIBE_UNSUPPORTED,
                   JobKind.UPSCALE: UPSCALE_UNSUPPORTED}
        if batch and batch[0].job.kind in refused:  # queued before the switch to this backend: never sent
            done.set_result([Failed(p.job.job_id, refused[batch[0].job.kind]) for p in batch])
            return done
        state = _Batch([], self._guarded(emit), done)
        with self._lock:
            for prepared in batch:
                job = prepared.job
                assert isinstance(job, DiffusionJob)
                run = _Run(prepared, threading.Event(), [None] * job.count, job.count)
                if job.job_id in self._cancelled or self._closing:
                    self._cancelled.discard(job.job_id)
                    run.cancelled = True
                    run.halt.set()
                self._runs[job.job_id] = run
                state.runs.append(run)
            state.left = len(state.runs)
        if not state.runs:
            done.set_result([])
        for run in state.runs:
            if run.halt.is_set():
                self._finish_run(state, run)
                continue
            for index, seed in enumerate(run.job.seeds):
                self._queue_image(state, run, index, seed)
        return done

    def cancel_queued(self, job_id: str) -> None:
        """A job cancelled in the fair queue, never handed over: nothing of it is here."""

    def cancel(self, job_id: str) -> None:
        with self._lock:
            if job_id in self._local_jobs:
                self._local.cancel(job_id)
                return
            run = self._runs.get(job_id)
            if run is None:
                self._cancelled.add(job_id)
                return
            run.cancelled = True
            run.halt.set()

    def shutdown(self) -> None:
        """Stop taking work; requests in the air are abandoned (see :mod:`inference.remote.pool`)."""
        with self._lock:
            self._closing = True
            for run in self._runs.values():
                run.halt.set()
        self._pool.shutdown()
        self._local.shutdown()

    def model_config(self, name: str) -> ModelConfig:
        return self._local.model_config(name)

    def model(self, name: str = "") -> RemoteModel:
        """The remote model's description. The first call checks what can be checked without sending a
        request (token, offline mode, provider name) and raises ModelLoadError with one clear line."""
        cfg = self.model_config(name)
        model = self._models.get(cfg.display_name)
        if model is None:
            self._check_ready()
            model = remote_model(cfg, self.remote)
            self._models[cfg.display_name] = model
            log.info("model %s served by %s (%s)", model.name, model.device, self.remote.base_url or model.source)
        return model

    def loaded(self, name: str) -> RemoteModel | None:
        return self._models.get(name)

    def facts(self, name: str) -> tuple[Any, Any, str] | None:
        """``(preset, tokenizer, scheduler class)`` of a model described already (none is unloaded
        here); the provider's sampler is unknown ("")."""
        model = self.loaded(name)
        return None if model is None else (model.preset, model.tokenizer, "")

    def loaded_models(self) -> list[RemoteModel]:
        return list(self._models.values())

    def parked_models(self) -> list[str]:
        """Nothing is parked in RAM here: the service holds the weights."""
        return []

    def preferred_models(self) -> frozenset[str]:
        """No model switch costs easel anything here: the fair queue prefers none (inference/affinity.py)."""
        return frozenset()

    def busy_stats(self) -> BusyStats:
        return self._busy.stats()

    def unsupported(self, kind: JobKind) -> str | None:
        """Why this backend cannot run ``kind`` (for the member, before queueing), or None."""
        if kind is JobKind.ANIME:
            return None
        if kind is JobKind.MORPH:
            return MORPH_UNSUPPORTED
        if kind is JobKind.DESCRIBE:
            return DESCRIBE_UNSUPPORTED
        if kind is JobKind.UPSCALE:
            return UPSCALE_UNSUPPORTED
        return self.client.unsupported(kind)

    def unsupported_options(self, job: Job) -> str | None:
        """Why this backend cannot honour one of ``job``'s options (spacing, eta, a sampler for
        image-to-image), for the member before queueing; or None."""
        return self.client.unsupported_options(job)

    # ------------------------------------------------------------------ internals

    def _check_ready(self) -> None:
        if hf_constants.is_offline_mode():
            raise ModelLoadError("HF_HUB_OFFLINE is set: the remote backend must reach the Hugging Face "
                                 "Inference API (unset it, or use backend = \"local\")")
        if not self.client.has_token and not self.remote.base_url:
            raise ModelLoadError(f"{self.remote.token_env} is not set: the remote backend needs a Hugging Face "
                                 "access token with the 'Make calls to Inference Providers' permission "
                                 "(see README, 'Remote backend')")
        known = provider_tasks()
        if self.remote.provider != "auto" and known is not None and self.remote.provider not in known:
            raise ModelLoadError(f"remote.provider: {self.remote.provider!r} is not a provider this huggingface_hub "
                                 f"knows ({', '.join(sorted(known))}, or auto)")

    def _run_local(self, batch: list[PreparedJob], emit: Emit) -> Future[list[Outcome]]:
        ids = [p.job.job_id for p in batch]
        with self._lock:
            self._local_jobs.update(ids)
            early = [jid for jid in ids if jid in self._cancelled]
            self._cancelled.difference_update(early)
        for jid in early:
            self._local.cancel(jid)
        future = self._local.run_batch(batch, emit)

        def forget(_: Future[list[Outcome]]) -> None:
            with self._lock:
                self._local_jobs.difference_update(ids)

        future.add_done_callback(forget)
        return future

    def _guarded(self, emit: Emit) -> Emit:
        """Events after shutdown are dropped: the loop they would go to may be closed."""

        def send(event: JobEvent) -> None:
            if self._closing:
                return
            try:
                emit(event)
            except RuntimeError:  # the event loop closed under a request still in the air
                log.debug("dropped %s for job %s: event loop closed", type(event).__name__, event.job_id)

        return send

    def _queue_image(self, state: _Batch, run: _Run, index: int, seed: int) -> None:
        try:
            self._pool.submit(lambda: self._make_image(state, run, index, seed))
        except RuntimeError:  # shut down between run_batch and here
            with self._lock:
                run.cancelled = True
                run.halt.set()
            self._image_done(state, run)

    def _make_image(self, state: _Batch, run: _Run, index: int, seed: int) -> None:
        job = run.job
        try:
            if run.halt.is_set():
                return
            self._announce(state, run)
            model = self.model(job.model)
            model_id = None if self.remote.base_url else model.source
            self._busy.begin()
            try:
                image = self.client.generate(run.prepared, seed, model_id, model.name, run.halt)
            finally:
                self._busy.end()
            with self._lock:
                run.images[index] = image
                run.made += 1
                made = run.made
            if not run.halt.is_set():
                state.emit(Progress(job.job_id, made, job.count))
        except Stopped:
            pass
        except JobError as exc:
            self._fail(run, str(exc))
        except Exception:  # one broken request never stops the others
            log.exception("remote job %s (image %d) failed", job.job_id, index)
            self._fail(run, internal_error_message())
        finally:
            self._image_done(state, run)

    def _announce(self, state: _Batch, run: _Run) -> None:
        """Started and an empty progress bar, once per job, when its first request goes out."""
        with self._lock:
            first = not run.started
            run.started = True
        if first:
            state.emit(Started(run.job.job_id))
            state.emit(Progress(run.job.job_id, 0, run.job.count))

    def _fail(self, run: _Run, message: str) -> None:
        with self._lock:
            if run.error is None:
                run.error = message
            run.halt.set()  # the job's other images are not worth making any more

    def _image_done(self, state: _Batch, run: _Run) -> None:
        with self._lock:
            run.left -= 1
            finished = run.left == 0
        if finished:
            self._finish_run(state, run)

    def _finish_run(self, state: _Batch, run: _Run) -> None:
        with self._lock:
            self._runs.pop(run.job.job_id, None)
            state.left -= 1
            if state.left:
                return
        share = (time.monotonic() - state.submitted) / len(state.runs)
        state.done.set_result([r.outcome(share) for r in state.runs])
