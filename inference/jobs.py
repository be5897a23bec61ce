"""Jobs, results and engine events: plain frozen dataclasses passed between cogs, engine and storage.

Nothing here imports torch or discord. Images that a job needs (the init image of a variation,
a mask) are referred to by file path: the job log keeps them on disk, so a queued job survives a
restart and is rerun exactly.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from inference.prompt_syntax import needs_weighting


class JobKind(StrEnum):
    IMAGINE = "imagine"
    VARY = "vary"
    PAINT = "paint"
    ANIME = "anime"
    MORPH = "morph"
    DESCRIBE = "describe"
    UPSCALE = "upscale"


class JobError(ValueError):
    """A request cannot be served as asked. ``str(err)`` is written for the member who asked."""


class QueueRefused(JobError):
    """The queue will not take the job (per-user cap, global cap, unknown job)."""


@dataclass(frozen=True)
class Job:
    """Fields every job has. ``owner`` is the member the fair queue shares time between.

    ``nsfw`` and ``nsfw_word`` are the NSFW flags its images get besides the safety checker's own
    verdict, decided when the job is accepted: ``nsfw`` when the image it is made from was flagged
    by the checker, ``nsfw_word`` when its prompt (or its source's) has an NSFW word. They travel
    with the job's parameters, so a redo or a restart keeps them."""

    job_id: str
    owner: int
    kind: JobKind = field(init=False)
    nsfw: bool = False
    nsfw_word: bool = False

    def batch_key(self) -> tuple[Any, ...] | None:
        """Jobs with equal keys may run in one pipeline call; ``None`` never batches."""
        return None

    def to_params(self) -> dict[str, Any]:
        """The parameters as a JSON-friendly dict (what the job log stores and /history redoes).

        Every field is a str, number, enum or tuple of those, so a shallow copy is a safe one (and
        several times cheaper than ``dataclasses.asdict``'s deep copy, on the event loop per job)."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("job_id", "owner")}
        data["kind"] = str(self.kind)
        return data

    @property
    def image_count(self) -> int:
        return 1


@dataclass(frozen=True)
class DiffusionJob(Job):
    prompt: str = ""
    negative_prompt: str = ""
    width: int = 512
    height: int = 512
    steps: int = 4
    guidance: float = 0.0
    seed: int = 0
    count: int = 1
    model: str = ""
    scheduler: str = ""
    loras: tuple[tuple[str, float], ...] = ()
    # Timestep spacing ("" = the scheduler config's own; "trailing", "leading", "linspace") and the
    # DDIM/TCD noise factor (below 0 = unset: the sampler's default), inference/samplers.py.
    spacing: str = ""
    eta: float = -1.0
    # The style preset applied (config [[styles]]); ``prompt``/``negative_prompt`` already hold its words.
    style: str = ""

    def batch_key(self) -> tuple[Any, ...] | None:
        # Whether there is a negative prompt is part of it: in a batch where one job has one, the
        # others' empty ones are encoded as "", which SDXL (zeros for an absent negative) draws differently.
        # Weighting syntax too: a batch with such a prompt is encoded by compel (inference/prompting.py),
        # so a plain job in it would no longer get exactly the pixels it gets alone.
        return (self.kind, self.model, self.width, self.height, self.steps, self.guidance,
                self.scheduler, self.spacing, self.eta, self.loras, getattr(self, "strength", None),
                bool(self.negative_prompt), needs_weighting(self.prompt) or needs_weighting(self.negative_prompt))

    @property
    def image_count(self) -> int:
        return self.count

    @property
    def seeds(self) -> tuple[int, ...]:
        """One seed per image: ``seed, seed+1, ...`` so each grid cell can be redone alone."""
        return tuple((self.seed + i) % 2**32 for i in range(self.count))


@dataclass(frozen=True)
class TextToImageJob(DiffusionJob):
    # ControlNet: the uploaded picture (an input file; None = no control, "" = its owner deleted it
    # with /forget, as for init_image), the mode whose ControlNet and preprocessor follow it, and how
    # strongly (diffusers' controlnet_conditioning_scale).
    control_image: str | None = None
    control_mode: str = ""
    control_strength: float = 1.0
    # Style reference (IP-Adapter): the picture whose look to follow (None = none) and how strongly.
    style_image: str | None = None
    style_strength: float = 0.6
    # Seamless tile: circular padding in the UNet and VAE for this job, so the image repeats.
    tile: bool = False
    kind: JobKind = field(init=False, default=JobKind.IMAGINE)

    def batch_key(self) -> tuple[Any, ...] | None:
        # Different control or style pictures batch together (one per image); modes, strengths and
        # whether there is a picture at all must agree, as must the padding of every convolution.
        return (*super().batch_key(), self.control_mode, self.control_strength if self.control_mode else None,
                self.style_image is not None, self.style_strength if self.style_image is not None else None,
                self.tile)


@dataclass(frozen=True)
class ImageToImageJob(DiffusionJob):
    init_image: str = ""
    strength: float = 0.6
    kind: JobKind = field(init=False, default=JobKind.VARY)


@dataclass(frozen=True)
class InpaintJob(DiffusionJob):
    init_image: str = ""
    mask_image: str = ""
    strength: float = 1.0
    # A line shown with the result, e.g. how a zoom-out canvas was made (inference/outpaint_options.py).
    note: str = ""
    kind: JobKind = field(init=False, default=JobKind.PAINT)


@dataclass(frozen=True)
class AnimeJob(Job):
    init_image: str = ""
    style: str = "face_paint_512_v2"
    whole_image: bool = False
    kind: JobKind = field(init=False, default=JobKind.ANIME)


@dataclass(frozen=True)
class DescribeJob(Job):
    """Prompt suggestions for an image (inference/describe/). Its result is text: ``count``
    suggestions at most, stored in the job log with the job (``JobResult.texts``), no image."""

    init_image: str = ""
    count: int = 4
    max_chars: int = 1000
    kind: JobKind = field(init=False, default=JobKind.DESCRIBE)


@dataclass(frozen=True)
class MorphJob(DiffusionJob):
    """An animation: ``frames`` images made with ONE seed (inference/morph.py).

    With ``init_image``: image-to-image of that image at strengths rising evenly from
    ``strength_from`` to ``strength_to``. Without: text-to-image from the same initial latents with
    the text embeddings moving linearly from ``prompt`` to ``to_prompt``. One job in the queue
    (one place of its member's fair share); its frames are batched inside it, never with other jobs."""

    init_image: str | None = None  # None: a prompt morph ("" is a source its owner deleted with /forget)
    to_prompt: str = ""
    strength_from: float = 0.1
    strength_to: float = 0.9
    frames: int = 8
    kind: JobKind = field(init=False, default=JobKind.MORPH)

    def batch_key(self) -> tuple[Any, ...] | None:
        return None

    @property
    def image_count(self) -> int:
        return self.frames

    @property
    def seeds(self) -> tuple[int, ...]:
        return (self.seed,) * self.frames


@dataclass(frozen=True)
class UpscaleJob(Job):
    """Enlarge ``init_image`` ``factor`` times with the ``upscaler`` model (inference/upscale/).

    ``mode`` "subtle": the upscaler alone. "creative" (hires fix): the upscaled image is then
    refined by image-to-image at ``strength`` with the source's ``prompt``, ``seed`` and ``model``
    (and its sampler settings), at a size the model can take."""

    init_image: str = ""
    upscaler: str = ""
    factor: int = 2
    mode: str = "subtle"
    prompt: str = ""
    negative_prompt: str = ""
    seed: int = 0
    model: str = ""
    steps: int = 4
    guidance: float = 0.0
    scheduler: str = ""
    spacing: str = ""
    eta: float = -1.0
    strength: float = 0.3
    kind: JobKind = field(init=False, default=JobKind.UPSCALE)


JOB_TYPES: dict[JobKind, type[Job]] = {
    JobKind.IMAGINE: TextToImageJob,
    JobKind.VARY: ImageToImageJob,
    JobKind.PAINT: InpaintJob,
    JobKind.ANIME: AnimeJob,
    JobKind.MORPH: MorphJob,
    JobKind.DESCRIBE: DescribeJob,
    JobKind.UPSCALE: UpscaleJob,
}


def job_from_params(job_id: str, owner: int, params: dict[str, Any]) -> Job:
    """Rebuild a job from :meth:`Job.to_params` output (restart, redo)."""
    params = dict(params)
    cls = JOB_TYPES[JobKind(params.pop("kind"))]
    if "loras" in params:
        params["loras"] = tuple((str(n), float(w)) for n, w in params["loras"])
    known = {f.name for f in dataclasses.fields(cls) if f.init}
    return cls(job_id=job_id, owner=owner, **{k: v for k, v in params.items() if k in known})


# --------------------------------------------------------------------------- results and events


@dataclass(frozen=True)
class JobResult:
    """What a finished job produced. ``images`` are PIL images; ``seeds[i]`` made ``images[i]``."""

    job_id: str
    images: tuple[Any, ...]
    seeds: tuple[int, ...]
    seconds: float
    note: str = ""
    nsfw: tuple[bool, ...] = ()
    texts: tuple[str, ...] = ()  # a text result (/describe's suggestions) instead of images
    # Pictures shown WITH the result but not part of it (no buttons, not pickable): ``(label, PIL
    # image)``, e.g. ("control", the ControlNet map a job followed), ("tile", a 2x2 preview of a
    # seamless tile). They get the job's NSFW verdict, as everything the job made.
    extras: tuple[tuple[str, Any], ...] = ()
    # The speed-ups that changed its pixels (device.quantize, device.fast_draft; inference/step_cache.py),
    # written into each PNG's parameters; "" for a plain run.
    fast_path: str = ""


@dataclass(frozen=True)
class JobEvent:
    job_id: str


@dataclass(frozen=True)
class Queued(JobEvent):
    position: int
    total: int
    eta_s: float


@dataclass(frozen=True)
class Started(JobEvent):
    pass


@dataclass(frozen=True)
class Progress(JobEvent):
    step: int
    total_steps: int
    preview: Any = None  # a small PIL image, or None


@dataclass(frozen=True)
class Finished(JobEvent):
    result: JobResult


@dataclass(frozen=True)
class Failed(JobEvent):
    message: str


@dataclass(frozen=True)
class Cancelled(JobEvent):
    pass
