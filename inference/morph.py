"""The torch work of one morph: the frames of an animation, made with ONE seed.

Two kinds (both a :class:`~inference.jobs.MorphJob`, run on the inference thread):

- **Strength sweep** (the job has an ``init_image``): image-to-image of the source at strengths
  rising evenly from ``strength_from`` to ``strength_to``. Each frame is the image-to-image call at
  its strength with the job's seed (up to 1/255), so frame ``i`` can be redone alone with /vary.
  Validation raised the steps so that no two frames start at the same timestep (which would make
  them identical). A diffusers call takes one strength, yet frames can share one: the call runs at
  the highest strength of its ``batch`` frames, and a frame of lower strength *joins* it at its own
  first timestep (``callback_on_step_end`` puts in the latents its own call would start from,
  made by the pipeline's ``prepare_latents`` with a generator seeded alike); until then its row of
  the batch is a placeholder. That is exact for schedulers whose step depends only on the current
  timestep and sample (:data:`JOINABLE`); with any other (a multistep history, per-step noise),
  and for other pipelines, each frame runs its own call. Frames are grouped by neighbouring
  strengths, so the placeholder work stays small.
- **Prompt morph** (no image, a ``to_prompt``): text-to-image from the same initial latents (one
  generator per frame, all seeded with the job's seed) with the text embeddings moving linearly from
  the prompt's to ``to_prompt``'s (``pipe.encode_prompt``, then ``prompt_embeds``). The first and
  last frames are the plain text-to-image images of the two prompts. Frames share a call,
  ``batch`` at a time (up to 1/255 of batched-matmul rounding).

Progress is counted in frames: after each call the frames it made, and while a call makes several,
its share of them as its steps go by (a call of 4 frames half done shows 2 more). Cancelling
stops between frames and between steps.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from inference import step_cache
from inference.embedding_tokens import spell_out
from inference.generate import ready_pipe
from inference.jobs import JobError, JobKind, JobResult, MorphJob
from inference.loader import LoadedModel
from inference.morph_plan import NO_KANDINSKY, mix_weights, steps_run, strengths
from inference.prepare import PreparedJob
from inference.presets import KANDINSKY
from inference.samplers import call_eta

FrameCallback = Callable[[int, int, Any], None]
"""``(frames_done, frames, last_frame_image or None)``: after each call, and within a call of several frames."""
KeepGoing = Callable[[], bool]
"""False once the job is cancelled (checked between frames and between steps)."""

NO_PROMPT_MORPH = "Morphing between two prompts is not available for this model; a morph of an image still works."


def run_morph(model: LoadedModel, prepared: PreparedJob, keep_going: KeepGoing, on_frame: FrameCallback,
              *, batch: int = 1) -> JobResult | None:
    """All frames of a morph; None when it was cancelled."""
    job = prepared.job
    assert isinstance(job, MorphJob)
    if model.family == KANDINSKY:
        raise JobError(NO_KANDINSKY)
    started = time.perf_counter()
    if job.init_image is not None:
        if prepared.init_image is None:
            raise JobError("The source image of this morph could not be read.")
        frames = _strength_sweep(model, job, prepared.init_image, keep_going, on_frame, max(1, batch))
    else:
        frames = _prompt_morph(model, job, keep_going, on_frame, max(1, batch))
    if frames is None:
        return None
    images = tuple(image for image, _ in frames)
    return JobResult(job.job_id, images, (job.seed,) * len(images), time.perf_counter() - started,
                     nsfw=tuple(flag for _, flag in frames), fast_path=step_cache.fast_path_label(model.quantized, 0))


def _generator(model: LoadedModel, seed: int) -> torch.Generator:
    device = "cpu" if model.device.type == "mps" else model.device
    return torch.Generator(device=device).manual_seed(seed)


StepHook = Callable[[Any, int, dict[str, Any]], dict[str, Any]]

# Schedulers whose step uses only the current timestep and sample: a frame joining a running batch
# at its own first timestep is denoised exactly as in its own call.
JOINABLE = frozenset({"EulerDiscreteScheduler", "DDIMScheduler"})
JOINABLE_PIPELINES = frozenset({"StableDiffusionImg2ImgPipeline"})


def _call(pipe: Any, job: MorphJob, kwargs: dict[str, Any], keep_going: KeepGoing,
          after_step: StepHook | None = None) -> Any | None:
    """One pipeline call (with the job's eta where its sampler takes one) that stops between steps
    once the job is cancelled (None then)."""
    interrupted = False

    def callback(pipeline: Any, step: int, _timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        nonlocal interrupted
        if after_step is not None:
            tensors = after_step(pipeline, step, tensors)
        if not keep_going():
            pipeline._interrupt = True
            interrupted = True
        return tensors

    eta = call_eta(job.scheduler, job.eta, type(pipe.scheduler).__name__)
    if eta is not None:  # as generate.py: only to a step that takes it
        kwargs = {**kwargs, "eta": eta}
    with torch.inference_mode():
        out = pipe(**kwargs, callback_on_step_end=callback)
    return None if interrupted else out


def _flags(out: Any) -> list[bool]:
    found = getattr(out, "nsfw_content_detected", None) or [False] * len(out.images)
    return [bool(f) for f in found]


def _counting(on_frame: FrameCallback, done: int, size: int, total: int, steps: int,
              then: StepHook | None = None) -> StepHook:
    """A step hook (after ``then``) that reports a call's share of its ``size`` frames as its
    ``steps`` go by; the call's end is reported by the caller, with the last frame."""
    shown = done

    def hook(pipeline: Any, step: int, tensors: dict[str, Any]) -> dict[str, Any]:
        nonlocal shown
        if then is not None:
            tensors = then(pipeline, step, tensors)
        now = done + size * (step + 1) // max(1, steps)
        if shown < now < done + size:
            shown = now
            on_frame(now, total, None)
        return tensors

    return hook


def sweep_batches(pipe: Any, frames: int, batch: int, eta: float | None = None) -> list[list[int]]:
    """The frames (indices, strengths rising) of each call: ``batch`` neighbours where frames can
    join a running call (:data:`JOINABLE`), else one each. Not with an ``eta`` above 0: DDIM then
    draws noise from each row's generator at every step, and a row that joins late would have
    drawn it for steps its own call never runs."""
    joinable = (type(pipe).__name__ in JOINABLE_PIPELINES and type(pipe.scheduler).__name__ in JOINABLE
                and not eta)
    size = batch if joinable and batch > 1 else 1
    return [list(range(first, min(first + size, frames))) for first in range(0, frames, size)]


def _strength_sweep(model: LoadedModel, job: MorphJob, image: Any, keep_going: KeepGoing,
                    on_frame: FrameCallback, batch: int) -> list[tuple[Any, bool]] | None:
    pipe = ready_pipe(model, JobKind.VARY, job)
    frames: list[tuple[Any, bool]] = []
    plan = strengths(job.strength_from, job.strength_to, job.frames)
    eta = call_eta(job.scheduler, job.eta, type(pipe.scheduler).__name__)
    for chunk in sweep_batches(pipe, len(plan), batch, eta):
        if not keep_going():
            return None
        levels = [plan[i] for i in chunk]
        prompt, negative = spell_out(getattr(pipe, "tokenizer", None), [job.prompt, job.negative_prompt])
        kwargs: dict[str, Any] = {"prompt": [prompt] * len(chunk), "image": [image] * len(chunk),
                                  "strength": max(levels), "num_inference_steps": job.steps,
                                  "guidance_scale": job.guidance,
                                  "generator": [_generator(model, job.seed) for _ in chunk]}
        if job.negative_prompt:
            kwargs["negative_prompt"] = [negative] * len(chunk)
        join = _joiner(pipe, model, job, image, levels) if len(chunk) > 1 else None
        steps = steps_run(job.steps, max(levels))
        out = _call(pipe, job, kwargs, keep_going, _counting(on_frame, len(frames), len(chunk), len(plan), steps, join))
        if out is None:
            return None
        frames.extend(zip(out.images, _flags(out), strict=True))
        on_frame(len(frames), len(plan), out.images[-1])
    return frames


def _joiner(pipe: Any, model: LoadedModel, job: MorphJob, image: Any, levels: list[float]) -> StepHook:
    """The step hook that lets frames of lower strength join a call run at ``max(levels)``: after
    the step before a frame's first timestep, its row of latents becomes what its own call would
    start from (``prepare_latents`` at that timestep; the scheduler's position is that timestep's)."""
    runs = [steps_run(job.steps, s) for s in levels]
    top = max(runs)
    joining: dict[int, list[int]] = {}  # the step after which they join -> rows
    for row, run in enumerate(runs):
        if run < top:
            joining.setdefault(top - run - 1, []).append(row)
    source = pipe.image_processor.preprocess(image)
    start = job.steps - top  # the call's first index into the schedule (order-1 schedulers)

    def join(pipeline: Any, step: int, tensors: dict[str, Any]) -> dict[str, Any]:
        rows = joining.get(step)
        if not rows:
            return tensors
        latents = tensors["latents"].clone()
        timestep = pipeline.scheduler.timesteps[start + step + 1: start + step + 2]
        fresh = pipeline.prepare_latents(source, timestep, 1, 1, latents.dtype, latents.device,
                                         [_generator(model, job.seed)])
        for row in rows:
            latents[row] = fresh[0]
        tensors["latents"] = latents
        return tensors

    return join


# The keyword under which each item of ``encode_prompt``'s answer goes back into the pipeline:
# SD 1.x/2.x answer (embeds, negative embeds); SDXL adds the pooled pair.
_EMBED_NAMES = ("prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds", "negative_pooled_prompt_embeds")


def encode(pipe: Any, model: LoadedModel, prompt: str, negative: str, guidance: float) -> tuple[Any, ...]:
    """``pipe.encode_prompt`` as the pipeline itself calls it for one image of ``prompt``."""
    encode_prompt = getattr(pipe, "encode_prompt", None)
    if encode_prompt is None:
        raise JobError(NO_PROMPT_MORPH)
    prompt, negative = spell_out(getattr(pipe, "tokenizer", None), [prompt, negative])  # type: ignore[misc]
    with torch.inference_mode():
        out = encode_prompt(prompt=prompt, device=model.device, num_images_per_prompt=1,
                            do_classifier_free_guidance=guidance > 1.0, negative_prompt=negative or None)
    return tuple(out)


def mix(a: Sequence[Any], b: Sequence[Any], weight: float) -> list[Any]:
    """Linear interpolation of each embedding; ``(1 - w) * a + w * b`` keeps the ends exact."""
    return [None if x is None or y is None else (1.0 - weight) * x + weight * y for x, y in zip(a, b, strict=True)]


def _prompt_morph(model: LoadedModel, job: MorphJob, keep_going: KeepGoing, on_frame: FrameCallback,
                  batch: int) -> list[tuple[Any, bool]] | None:
    pipe = ready_pipe(model, JobKind.IMAGINE, job)
    start = encode(pipe, model, job.prompt, job.negative_prompt, job.guidance)
    end = encode(pipe, model, job.to_prompt, job.negative_prompt, job.guidance)
    weights = mix_weights(job.frames)
    frames: list[tuple[Any, bool]] = []
    for first in range(0, len(weights), batch):
        if not keep_going():
            return None
        chunk = [mix(start, end, w) for w in weights[first:first + batch]]
        kwargs: dict[str, Any] = {"num_inference_steps": job.steps, "guidance_scale": job.guidance,
                                  "width": job.width, "height": job.height,
                                  "generator": [_generator(model, job.seed) for _ in chunk]}
        for index, name in enumerate(_EMBED_NAMES[:len(start)]):
            if chunk[0][index] is not None:
                kwargs[name] = torch.cat([frame[index] for frame in chunk])
        out = _call(pipe, job, kwargs, keep_going, _counting(on_frame, len(frames), len(chunk), len(weights), job.steps))
        if out is None:
            return None
        frames.extend(zip(out.images, _flags(out), strict=True))
        on_frame(len(frames), len(weights), out.images[-1])
    return frames
