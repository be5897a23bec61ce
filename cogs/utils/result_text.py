"""What a result message says and shows beside its buttons: the caption of each kind of job, the
text of a failure or of a result whose images are gone, and the grid posted for several images."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from cogs.utils.text import duration, prompt_heading, quote
from inference.imaging import encode_png, make_grid, read_parameters
from inference.jobs import AnimeJob, DiffusionJob, InpaintJob, Job, MorphJob, UpscaleJob


def caption(job: Job, seeds: list[int], seconds: float | None, note: str = "") -> str:
    by = f"<@{job.owner}>"
    took = f"{duration(seconds)} \u00b7 " if seconds is not None else ""
    if isinstance(job, AnimeJob):
        head = f"\U0001f338 AnimeGAN2 `{job.style}` for {by}"
        tail = f"{took}job `{job.job_id}`"
    elif isinstance(job, MorphJob):
        return morph_caption(job, took, note)
    elif isinstance(job, UpscaleJob):
        head = f"\U0001f5bc\ufe0f Upscaled {job.factor}x ({job.mode}) for {by}"
        if job.prompt:
            head += f": {prompt_heading(job.prompt)}"
        tail = f"upscaler `{job.upscaler}` \u00b7 {took}job `{job.job_id}`"
    else:
        assert isinstance(job, DiffusionJob)
        head = f"{prompt_heading(job.prompt)} for {by}"
        tail = (f"seed `{', '.join(map(str, seeds)) or job.seed}` \u00b7 {job.steps} steps \u00b7 "
                f"{job.width}x{job.height} \u00b7 {took}job `{job.job_id}`")
    lines = [head, tail]
    if isinstance(job, InpaintJob) and job.note:  # how a zoom-out or pan canvas was made
        lines.append(f"\u2139\ufe0f {quote(job.note, 300)}")
    if note:
        lines.append(f"\u2139\ufe0f {quote(note, 300)}")
    return "\n".join(lines)


def morph_caption(job: MorphJob, took: str, note: str = "") -> str:
    """A morph's message carries its parameters (an animation has no PNG ``parameters`` chunk)."""
    if job.to_prompt:
        head = f"\U0001f39e\ufe0f {prompt_heading(job.prompt)} \u2192 {prompt_heading(job.to_prompt)} for <@{job.owner}>"
        sweep = "prompt morph"
    else:
        head = f"\U0001f39e\ufe0f Morph of {prompt_heading(job.prompt)} for <@{job.owner}>"
        sweep = f"strength {job.strength_from:g}\u2192{job.strength_to:g}"
    lines = [head, f"seed `{job.seed}` \u00b7 {job.frames} frames \u00b7 {sweep} \u00b7 {job.steps} steps \u00b7 "
                   f"guidance {job.guidance:g} \u00b7 {job.width}x{job.height} \u00b7 {took}job `{job.job_id}`"]
    if job.negative_prompt:
        lines.append(f"Negative: {quote(job.negative_prompt, 300)}")
    if note:
        lines.append(f"\u2139\ufe0f {quote(note, 300)}")
    return "\n".join(lines)


def failure_text(error: str, job_id: str) -> str:
    """A failed job's message: the reason (our words, maybe quoting the member: shown as plain text,
    so without its code marks) and the job id once."""
    return f"\u26a0\ufe0f {quote(error.replace('`', ''), 1500)} \u00b7 job `{job_id}`"


def gone_text(job_id: str) -> str:
    """A result whose images are not stored (any more)."""
    return f"\u26a0\ufe0f The images of job `{job_id}` are no longer stored."


def grid_png(paths: list[Path]) -> bytes:
    """The grid posted for count > 1, carrying the first image's parameters."""
    images = []
    for path in paths:
        with Image.open(path) as im:
            images.append(im.convert("RGB"))
    return encode_png(make_grid(images), read_parameters(paths[0].read_bytes()))
