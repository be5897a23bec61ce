"""The GPU thread's runners for the job kinds that are not one diffusion call: AnimeGAN2, morphs
(frames batched inside one job) and upscales (tiles). A mixin of :class:`inference.executor.GpuExecutor`:
each runner takes the live jobs of a batch and returns their outcomes, on the GPU thread."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from config import Config
from inference.jobs import AnimeJob, Cancelled, Finished, JobError, JobResult, Progress
from inference.morph import run_morph
from inference.prepare import PreparedJob

if TYPE_CHECKING:
    from inference.executor import Emit, Outcome


class KindRunners:
    """Needs from the executor: ``config``, ``model(name)``, ``_is_cancelled``, ``_take_cancelled``,
    ``_anime``/``_anime_factory`` and ``_upscaler``/``_upscale_factory``."""

    config: Config
    _anime: Any
    _anime_factory: Callable[[], Any] | None
    _upscaler: Any
    _upscale_factory: Callable[[], Any] | None

    def _run_morphs(self, live: list[PreparedJob], emit: Emit) -> list[Outcome]:
        """Morphs never share a call with other jobs (inference/morph.py batches their frames)."""
        outcomes: list[Outcome] = []
        previews = self.config.device.previews
        for prepared in live:
            jid = prepared.job.job_id

            def on_frame(done: int, total: int, image: Any, jid: str = jid) -> None:
                emit(Progress(jid, done, total, image if previews and done < total else None))

            result = run_morph(self.model(getattr(prepared.job, "model", "")), prepared,
                               lambda jid=jid: not self._is_cancelled(jid), on_frame,
                               batch=self.config.queue.max_batch)
            cancelled = self._take_cancelled(jid)
            outcomes.append(Cancelled(jid) if cancelled or result is None else Finished(jid, result))
        return outcomes

    def _run_upscales(self, live: list[PreparedJob], emit: Emit) -> list[Outcome]:
        """Upscales run one at a time (inference/upscale/runner.py), each cancellable between tiles."""
        if self._upscaler is None:
            if self._upscale_factory is None:
                raise JobError("Upscaling is not set up on this bot.")
            self._upscaler = self._upscale_factory()
        outcomes: list[Outcome] = []
        for prepared in live:
            jid = prepared.job.job_id
            outcome = self._upscaler.run(prepared, emit, lambda jid=jid: not self._is_cancelled(jid), self.model)
            outcomes.append(Cancelled(jid) if self._take_cancelled(jid) else outcome)
        return outcomes

    def _run_anime_jobs(self, live: list[PreparedJob], emit: Emit) -> list[Outcome]:
        return [self._run_anime(p, emit) for p in live]

    def _run_anime(self, prepared: PreparedJob, emit: Emit) -> Outcome:
        job = prepared.job
        assert isinstance(job, AnimeJob) and prepared.init_image is not None
        if self._anime is None:
            if self._anime_factory is None:
                raise JobError("The anime filter is not set up on this bot.")
            self._anime = self._anime_factory()
        started = time.perf_counter()
        emit(Progress(job.job_id, 0, 1, None))
        out = self._anime.stylize(prepared.init_image, job.style, whole_image=job.whole_image)
        emit(Progress(job.job_id, 1, 1, None))
        return Finished(job.job_id, JobResult(job.job_id, (out.image,), (0,), time.perf_counter() - started,
                                              note=out.note))


def default_anime_factory(config: Config, store: Any = None) -> Callable[[], Any]:
    """Build the AnimeGAN2 stylizer on first use (it reads weights from disk; downloads happen
    elsewhere), with ``store`` (a WeightStore shared with the studio) or one of its own."""

    def build() -> Any:
        from inference.anime import AnimeStylizer, WeightStore
        from inference.devices import resolve_device

        own = store if store is not None else WeightStore.from_config(config)
        return AnimeStylizer(own, device=str(resolve_device(config.anime.device)))

    return build
