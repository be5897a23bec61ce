"""An upscale request's options turned into an :class:`UpscaleJob`, or one clear JobError."""

from __future__ import annotations

import math
from collections.abc import Sequence

from config import UpscalerConfig
from inference.jobs import DiffusionJob, JobError, MorphJob, UpscaleJob
from inference.upscale.weights import NOT_SET_UP
from inference.validation import Draft, ModelInfo, clean_text

MODES = ("subtle", "creative")
FACTORS = (2, 4)
DEFAULT_FACTOR = 2
MAX_OUTPUT_SIDE = 4096  # a 4x of a 1024 px image
CREATIVE_STRENGTH = 0.3


def pick_upscaler(upscalers: Sequence[UpscalerConfig], factor: int) -> UpscalerConfig:
    """The configured upscaler for ``factor``: one of exactly that scale, else the smallest larger
    one (its output is resized down), else a clear refusal."""
    if not upscalers:
        raise JobError(NOT_SET_UP)
    exact = [u for u in upscalers if u.scale == factor]
    larger = sorted((u for u in upscalers if u.scale > factor), key=lambda u: u.scale)
    if exact or larger:
        return (exact or larger)[0]
    most = max(u.scale for u in upscalers)
    raise JobError(f"This server's upscalers go up to {most}x. Try factor {most}.")


def build_upscale(job_id: str, owner: int, upscalers: Sequence[UpscalerConfig], *, init_image: str,
                  source_size: tuple[int, int], factor: int | None = None, mode: str | None = None,
                  source: DiffusionJob | None = None, seed: int | None = None,
                  model: ModelInfo | None = None, prompt: str | None = None, max_prompt_chars: int = 1000) -> Draft:
    """``source``: the job that made the image (creative mode takes its prompt, seed, model and
    sampler; ``seed`` is the picked cell's own). Without one, creative mode refines on ``model`` (the
    server's default) toward the member's ``prompt`` (what the picture shows), or with an empty
    prompt, and says so. A ``prompt`` given for a subtle upscale is not used, and the member is told."""
    factor = DEFAULT_FACTOR if factor is None else factor
    mode = mode or "subtle"
    if factor not in FACTORS:
        raise JobError(f"The upscale factor must be one of {', '.join(map(str, FACTORS))}.")
    if mode not in MODES:
        raise JobError(f"The upscale mode must be one of: {', '.join(MODES)}.")
    text = clean_text(prompt, limit=max_prompt_chars, required=False)
    upscaler = pick_upscaler(upscalers, factor)
    width, height = source_size
    if max(width, height) * factor > MAX_OUTPUT_SIDE:
        raise JobError(f"That image is too large to upscale {factor}x here: the result may be at most "
                       f"{MAX_OUTPUT_SIDE} px a side, and it is {width}x{height}.")
    job = UpscaleJob(job_id=job_id, owner=owner, init_image=init_image, upscaler=upscaler.name, factor=factor,
                     mode=mode)
    notes: tuple[str, ...] = ()
    if text and mode != "creative":
        notes = ("The prompt only steers a creative upscale (mode:creative); this one enlarged the picture as it is.",)
    if mode == "creative":
        if isinstance(source, DiffusionJob) and not isinstance(source, MorphJob):
            strength = CREATIVE_STRENGTH
            steps = max(source.steps, math.ceil(1 / strength))
            job = UpscaleJob(job_id=job_id, owner=owner, init_image=init_image, upscaler=upscaler.name,
                             factor=factor, mode=mode, prompt=text or source.prompt, negative_prompt=source.negative_prompt,
                             seed=source.seed if seed is None else seed, model=source.model, steps=steps,
                             guidance=source.guidance, scheduler=source.scheduler, spacing=source.spacing,
                             eta=source.eta, strength=strength)
        else:
            if model is None:
                raise JobError("A creative upscale needs a model, and none is loaded here.")
            steps = max(model.preset.steps, math.ceil(1 / CREATIVE_STRENGTH))
            job = UpscaleJob(job_id=job_id, owner=owner, init_image=init_image, upscaler=upscaler.name,
                             factor=factor, mode=mode, model=model.name, steps=steps, prompt=text,
                             guidance=model.preset.guidance, seed=seed or 0, strength=CREATIVE_STRENGTH)
            if not text:
                notes = ("That image was not made here, so the creative pass refines it without a prompt "
                         "(say what it shows with prompt: to steer it).",)
    return Draft(job, notes)
