"""Running an upscale job on the inference thread (the executor's dispatch by kind points here).

Subtle: the upscaler alone, tiled (inference/upscale/tiling.py), then resized to the asked factor
when the model's own scale differs. Creative (hires fix): that image refined by image-to-image at
the job's low strength with the source's prompt, seed and model, through the same img2img path as
/vary (inference/generate.py), at no more than the model's largest size (and the member is told),
with the VAE tiled for that call when the image is larger than the model's native size.
Progress counts tiles, then (creative) the denoising steps; cancelling stops between tiles or steps.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from PIL import Image

from inference.generate import effective_steps, run_diffusion_batch
from inference.jobs import (
    Cancelled,
    Finished,
    ImageToImageJob,
    JobKind,
    JobResult,
    Progress,
    UpscaleJob,
)
from inference.loader import LoadedModel
from inference.prepare import PreparedJob
from inference.upscale.loading import UpscalerModels
from inference.upscale.tiling import OVERLAP, TILE, tile_starts, upscale_tiled

if TYPE_CHECKING:
    from inference.executor import Emit

log = logging.getLogger(__name__)


def fit_to_model(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """``size`` scaled down (aspect kept) so neither side exceeds ``max_side``; multiples of 8."""
    w, h = size
    factor = min(1.0, max_side / max(w, h))
    return max(8, int(w * factor) // 8 * 8), max(8, int(h * factor) // 8 * 8)


class UpscaleRunner:
    """Owns the resident upscaler models; :meth:`run` makes one job's image."""

    def __init__(self, models: UpscalerModels, *, tile: int = TILE, overlap: int = OVERLAP) -> None:
        self.models = models
        self.tile = tile
        self.overlap = overlap

    def run(self, prepared: PreparedJob, emit: Emit, keep_going: Callable[[], bool],
            diffusion_model: Callable[[str], LoadedModel]) -> Finished | Cancelled:
        job = prepared.job
        assert isinstance(job, UpscaleJob) and prepared.init_image is not None
        started = time.perf_counter()
        upscaler = self.models.get(job.upscaler)
        source = prepared.init_image
        tiles = len(tile_starts(source.height, self.tile, self.overlap)) * len(tile_starts(source.width, self.tile,
                                                                                            self.overlap))
        creative = job.mode == "creative"
        steps = 0
        if creative:
            steps = effective_steps(self._img2img_job(job, 8, 8))
        total = tiles + steps
        emit(Progress(job.job_id, 0, total, None))
        image = upscale_tiled(upscaler.descriptor, source, upscaler.scale, device=upscaler.device,
                              dtype=upscaler.dtype, tile=self.tile, overlap=self.overlap, keep_going=keep_going,
                              on_tile=lambda done, _n: emit(Progress(job.job_id, done, total, None)))
        if image is None:
            return Cancelled(job.job_id)
        wanted = (source.width * job.factor, source.height * job.factor)
        if image.size != wanted:
            image = image.resize(wanted, Image.Resampling.LANCZOS)
        notes: list[str] = []
        nsfw, fast_path = (False,), ""
        if creative:
            refined = self._refine(job, image, diffusion_model(job.model), tiles, total, emit, keep_going, notes)
            if refined is None:
                return Cancelled(job.job_id)
            image, nsfw, fast_path = refined
        seconds = time.perf_counter() - started
        return Finished(job.job_id, JobResult(job.job_id, (image,), (job.seed,), seconds, note=" ".join(notes),
                                              nsfw=nsfw, fast_path=fast_path))

    @staticmethod
    def _img2img_job(job: UpscaleJob, width: int, height: int) -> ImageToImageJob:
        return ImageToImageJob(job_id=job.job_id, owner=job.owner, prompt=job.prompt,
                               negative_prompt=job.negative_prompt, width=width, height=height, steps=job.steps,
                               guidance=job.guidance, seed=job.seed, model=job.model, scheduler=job.scheduler,
                               spacing=job.spacing, eta=job.eta, strength=job.strength)

    def _refine(self, job: UpscaleJob, image: Image.Image, model: LoadedModel, offset: int, total: int, emit: Emit,
                keep_going: Callable[[], bool], notes: list[str]) -> tuple[Image.Image, tuple[bool, ...], str] | None:
        width, height = fit_to_model(image.size, model.preset.max_size)
        if (width, height) != image.size:
            if max(width, height) < max(image.size):
                notes.append(f"The creative pass ran at {width}x{height}, the largest size {model.name} takes.")
            image = image.resize((width, height), Image.Resampling.LANCZOS)
        pipe = model.pipes[JobKind.VARY]
        vae = getattr(pipe, "vae", None)
        tiled = vae is not None and hasattr(vae, "enable_tiling") and max(width, height) > model.preset.size
        if tiled:
            vae.enable_tiling()

        def on_step(step: int, steps: int, _latents: Any) -> bool:
            if not keep_going():
                return False
            emit(Progress(job.job_id, offset + step, total, None))
            return True

        try:
            results = run_diffusion_batch(model, [PreparedJob(self._img2img_job(job, width, height), init_image=image)],
                                          on_step)
        finally:
            if tiled:
                vae.disable_tiling()
        if results is None:
            return None
        return results[0].images[0], results[0].nsfw or (False,), results[0].fast_path


def default_upscale_factory(config: Any, weights: Any = None) -> Callable[[], UpscaleRunner]:
    """Build the runner on first use, on the inference thread, with ``weights`` (the studio's
    :class:`UpscalerWeights`) or a store of its own; upscalers run on the diffusion model's device."""

    def build() -> UpscaleRunner:
        from inference.devices import resolve_device
        from inference.upscale.weights import UpscalerWeights

        store = weights if weights is not None else UpscalerWeights.from_config(config)
        return UpscaleRunner(UpscalerModels(store, resolve_device(config.device.device)))

    return build
