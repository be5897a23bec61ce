"""Getting a job's inputs ready before the GPU thread sees it.

Decoding init images and masks is CPU work that would otherwise sit between two pipeline calls;
the engine runs it on a helper thread while the GPU is busy with the previous batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps

from inference.jobs import (
    AnimeJob,
    DescribeJob,
    ImageToImageJob,
    InpaintJob,
    Job,
    JobError,
    MorphJob,
    TextToImageJob,
    UpscaleJob,
)


@dataclass(frozen=True)
class PreparedJob:
    job: Job
    init_image: Image.Image | None = None
    mask_image: Image.Image | None = None
    control_image: Image.Image | None = None  # the member's picture as uploaded (preprocessed on the GPU thread)
    style_image: Image.Image | None = None


def _open(path: str, what: str) -> Image.Image:
    try:
        with Image.open(Path(path)) as im:
            im.load()
            return ImageOps.exif_transpose(im)
    except (OSError, ValueError) as exc:
        raise JobError(f"The {what} of this job could not be read any more ({type(exc).__name__}).") from None


def needs_preparing(job: Job) -> bool:
    """Whether :func:`prepare` has files to read for this job (plain text-to-image jobs have none)."""
    return (isinstance(job, AnimeJob | DescribeJob | ImageToImageJob | InpaintJob | UpscaleJob)
            or (isinstance(job, MorphJob) and job.init_image is not None)
            or (isinstance(job, TextToImageJob) and (job.control_image is not None or job.style_image is not None)))


def prepare(job: Job) -> PreparedJob:
    """Decode and size a job's input images (files stored by the job log)."""
    if isinstance(job, AnimeJob | DescribeJob | UpscaleJob):
        return PreparedJob(job, init_image=_open(job.init_image, "source image").convert("RGB"))
    if isinstance(job, ImageToImageJob | InpaintJob) or (isinstance(job, MorphJob) and job.init_image is not None):
        size = (job.width, job.height)
        assert job.init_image is not None
        init = _open(job.init_image, "source image").convert("RGB")
        if init.size != size:
            init = init.resize(size, Image.Resampling.LANCZOS)
        mask = None
        if isinstance(job, InpaintJob):
            mask = _open(job.mask_image, "mask").convert("L")
            if mask.size != size:
                mask = mask.resize(size, Image.Resampling.BILINEAR)
        return PreparedJob(job, init_image=init, mask_image=mask)
    if isinstance(job, TextToImageJob) and (job.control_image is not None or job.style_image is not None):
        control = _open(job.control_image, "control image").convert("RGB") if job.control_image is not None else None
        style = _open(job.style_image, "style reference").convert("RGB") if job.style_image is not None else None
        return PreparedJob(job, control_image=control, style_image=style)
    return PreparedJob(job)
