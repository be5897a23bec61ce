"""Kandinsky 2.2: loading its two repos and running a batch through the same executor as SD.

A Kandinsky 2.2 model is two diffusers repos: the *prior* (CLIP text/vision encoders and a
``PriorTransformer``) turns the prompt into a CLIP image embedding, and the *decoder* (a UNet
conditioned on that embedding plus the MoVQ) turns the embedding into pixels. ``model.source``
names the decoder, ``model.prior_source`` the prior (for a hub decoder it defaults to
``kandinsky-community/kandinsky-2-2-prior``). Both load with ``from_pretrained`` and are joined in
diffusers' ``KandinskyV22CombinedPipeline``; image-to-image is derived from it with ``from_pipe``
(the very same modules). Inpainting needs the separate inpainting decoder (``inpaint_source``,
e.g. ``kandinsky-community/kandinsky-2-2-decoder-inpaint``), whose UNet reads 9 channels; it
shares the prior.

A batch runs the way the combined pipelines do (prior, then decoder with the prior's image
embedding and, as negative, the embedding of the negative prompt or of an empty image), but split
so that every image is the one its seed gives alone:

* the prior runs once per image, with that image's generator: with a negative prompt it encodes
  prompt and negative in one batch of two, drawing both from the one generator, which a list of
  generators for several images cannot reproduce;
* the decoder then runs once for the whole batch with the list of generators, which continue
  where each image's prior left them, exactly as in a lone combined call.
  Inpainting is one decoder call per job: diffusers' Kandinsky inpainting applies the first
  image's mask to the whole batch (so in a batch of several paint jobs the step count restarts
  for each job).

Kandinsky's pipelines do not read ``pipe._interrupt``, so cancelling raises out of the step
callback. There are no previews for this family (its latents are MoVQ latents, not the SD latents
the preview projection is made for; decoding them costs a MoVQ pass): progress is steps only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from config import DeviceConfig, ModelConfig, is_local_source, missing_path, source_path
from inference import step_cache
from inference.devices import resolve_device, resolve_dtype
from inference.families import detect_family, pipeline_class_of
from inference.fast_path import quantized_label
from inference.jobs import DiffusionJob, ImageToImageJob, InpaintJob, JobError, JobKind, JobResult
from inference.kandinsky_samplers import INPAINT_STRENGTH, NO_INPAINT, kandinsky_sampler_error
from inference.loader import (
    LoadedModel,
    ModelLoadError,
    apply_device_options,
    check_tokenizer,
    configured_scheduler,
    first_line,
    model_hub_failure,
    quiet_loading,
)
from inference.prepare import PreparedJob
from inference.presets import KANDINSKY, preset_for

log = logging.getLogger(__name__)

COMMUNITY_PRIOR = "kandinsky-community/kandinsky-2-2-prior"
# The prior's own settings, as diffusers' combined pipelines default them (the model card's values).
PRIOR_STEPS = 25
PRIOR_GUIDANCE = 4.0

_CLASSES = {"prior": "KandinskyV22PriorPipeline", "decoder": "KandinskyV22Pipeline",
            "inpaint": "KandinskyV22InpaintPipeline"}


class _Stop(Exception):
    """Raised from a step callback to end the call: the member cancelled."""


def is_kandinsky(model: ModelConfig, base_dir: Path) -> bool:
    """Whether ``model`` is a Kandinsky 2.2 model: named so, or detected from its folder's
    ``model_index.json`` (or a hub id's name) when ``family = "auto"``."""
    if model.family != "auto":
        return model.family == KANDINSKY
    path = source_path(model.source, base_dir)
    pipeline_class = pipeline_class_of(path) if path.is_dir() else ""
    return detect_family(model.source, pipeline_class) == KANDINSKY


def prior_source(model: ModelConfig, base_dir: Path) -> str:
    """The prior to load: ``prior_source``, or the community prior for a hub decoder."""
    if model.prior_source:
        return model.prior_source
    if is_local_source(model.source, base_dir):
        raise ModelLoadError(
            f"model {model.display_name!r}: prior_source is not set; a Kandinsky 2.2 model is a decoder plus its prior, "
            f"so set prior_source to the prior's folder (e.g. \"./models/kandinsky-2-2-prior\") or hub id "
            f"({COMMUNITY_PRIOR})")
    return COMMUNITY_PRIOR


def _load_part(model: ModelConfig, key: str, value: str, part: str, dtype: torch.dtype, base_dir: Path) -> Any:
    """One of the repos (``part`` in :data:`_CLASSES`) from a folder or a hub id, errors as one line."""
    import diffusers

    name = model.display_name
    local = is_local_source(value, base_dir) or source_path(value, base_dir).exists()
    kwargs: dict[str, Any] = {"dtype": dtype}
    if local:
        path = source_path(value, base_dir)
        if not path.is_dir():
            raise ModelLoadError(f"model {name!r}: {key}: {missing_path(value, base_dir)}")
        found = pipeline_class_of(path)
        if not found:
            raise ModelLoadError(f"model {name!r}: {key}: {path} is not a diffusers model folder (no model_index.json)")
        if found != _CLASSES[part]:
            hint = (" (that is the prior: set source to the decoder folder and prior_source to this one)"
                    if found == _CLASSES["prior"] else "")
            raise ModelLoadError(f"model {name!r}: {key}: {path} holds a {found}, not the Kandinsky 2.2 {part} "
                                 f"({_CLASSES[part]}){hint}")
        value, kwargs["local_files_only"] = str(path), True
    try:
        return getattr(diffusers, _CLASSES[part]).from_pretrained(value, **kwargs)
    except (OSError, ValueError, KeyError, RuntimeError, TypeError) as exc:
        if not local and isinstance(exc, OSError):
            raise model_hub_failure(ModelConfig(source=value, name=name), base_dir, exc) from None
        raise ModelLoadError(f"model {name!r}: {key} {value} could not be loaded as the Kandinsky 2.2 {part}: "
                             f"{first_line(exc)}") from None


def load_kandinsky(model: ModelConfig, device_cfg: DeviceConfig, base_dir: Path = Path(".")) -> LoadedModel:
    """Load prior and decoder(s) into the combined pipelines, one per job kind, sharing modules."""
    from diffusers import (
        AutoPipelineForImage2Image,
        KandinskyV22CombinedPipeline,
        KandinskyV22InpaintCombinedPipeline,
    )

    quiet_loading()
    name = model.display_name
    if model.loras:
        raise ModelLoadError(f"model {name!r}: LoRAs are not supported for Kandinsky 2.2 models; remove its loras")
    if model.single_file_config or model.source.endswith((".safetensors", ".ckpt")):
        raise ModelLoadError(f"model {name!r}: Kandinsky 2.2 loads from diffusers folders or hub ids, not single files")
    if model.safety_checker:
        raise ModelLoadError(f"model {name!r}: Kandinsky 2.2 has no safety checker; set safety_checker = false "
                             "(discord.nsfw_words still applies)")
    try:
        device = resolve_device(device_cfg.device)
    except RuntimeError as exc:
        raise ModelLoadError(str(exc)) from None
    dtype = resolve_dtype(device_cfg.dtype, device)
    prior = _load_part(model, "prior_source", prior_source(model, base_dir), "prior", dtype, base_dir)
    decoder = _load_part(model, "source", model.source, "decoder", dtype, base_dir)
    check_tokenizer(prior, name)
    shared = {f"prior_{key}": value for key, value in prior.components.items()}
    base = KandinskyV22CombinedPipeline(**decoder.components, **shared)
    apply_device_options(base, device, device_cfg)
    base.decoder_pipe.unet = base.unet  # the decoder runs the compiled UNet too (device.compile)
    pipes: dict[JobKind, Any] = {JobKind.IMAGINE: base, JobKind.VARY: AutoPipelineForImage2Image.from_pipe(base)}
    if model.inpaint_source:
        inpaint = _load_part(model, "inpaint_source", model.inpaint_source, "inpaint", dtype, base_dir)
        apply_device_options(inpaint, device, device_cfg)  # the decoder only: the prior is placed already
        pipes[JobKind.PAINT] = KandinskyV22InpaintCombinedPipeline(**inpaint.components, **shared)
    for pipe in pipes.values():
        pipe.set_progress_bar_config(disable=True)
    log.info("loaded model %s (Kandinsky 2.2%s) on %s as %s", name, ", with inpainting" if model.inpaint_source else "",
             device, str(dtype).removeprefix("torch."))
    return LoadedModel(name=name, source=model.source, family=KANDINSKY, preset=preset_for(model, KANDINSKY),
                       device=device, dtype=dtype, pipes=pipes, default_scheduler=_decoder_scheduler(model, decoder),
                       quantized=quantized_label(device_cfg))  # no step caching (inference/step_cache.py)


def _decoder_scheduler(model: ModelConfig, decoder: Any) -> Any:
    """The decoder's own scheduler, or the one ``model.scheduler`` names when Kandinsky can use it."""
    if refusal := kandinsky_sampler_error(model.scheduler):
        raise ModelLoadError(f"model {model.display_name!r}: scheduler {model.scheduler!r}: {refusal}")
    return configured_scheduler(model, decoder)


# --------------------------------------------------------------------------- running a batch


def run_size(pipe: Any, width: int, height: int) -> tuple[int, int]:
    """The size the decoder makes for ``width x height``: diffusers rounds each side up to a
    multiple of the MoVQ factor squared (64 for the real model; validation allows multiples of 8)."""
    step = (2 ** (len(pipe.movq.config.block_out_channels) - 1)) ** 2
    return -(-width // step) * step, -(-height // step) * step


def _fit(image: Image.Image, size: tuple[int, int], kind: JobKind) -> Image.Image:
    """A decoder image brought to the job's size: text-to-image crops the centre (no stretching);
    image-to-image and inpainting were stretched to the run size and are stretched back."""
    if image.size == size:
        return image
    if kind is JobKind.IMAGINE:
        left, top = (image.width - size[0]) // 2, (image.height - size[1]) // 2
        return image.crop((left, top, left + size[0], top + size[1]))
    return image.resize(size, Image.Resampling.LANCZOS)


def run_kandinsky_batch(model: LoadedModel, batch: Sequence[PreparedJob], on_step: Any) -> list[JobResult] | None:
    """Run compatible Kandinsky jobs; one result per job, or None if cancelled.

    ``on_step`` is :data:`inference.generate.StepCallback`; it is called with step 0 during the
    prior (so a cancel stops it too) and without latents (no previews for this family).
    """
    from inference.generate import effective_steps, keep_unmasked

    first = batch[0].job
    assert isinstance(first, DiffusionJob)
    pipe = model.pipes.get(first.kind)
    if pipe is None:
        raise JobError(NO_INPAINT)
    if isinstance(first, InpaintJob) and first.strength < 1.0:
        raise JobError(INPAINT_STRENGTH)
    if refusal := kandinsky_sampler_error(first.scheduler):  # validation refuses it; a redone or restored job may not
        raise JobError(refusal)
    decoder = pipe.decoder_pipe
    decoder.scheduler = model.scheduler(first.scheduler, first.spacing)
    total = effective_steps(first)
    size = (first.width, first.height)
    width, height = run_size(pipe, *size)

    def prior_step(_pipe: Any, _step: int, _t: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        if not on_step(0, total, None):
            raise _Stop
        return tensors

    def decoder_step(_pipe: Any, step: int, _t: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        if not on_step(step + 1, total, None):
            raise _Stop
        return tensors

    generator_device = "cpu" if model.device.type == "mps" else model.device
    started = time.perf_counter()
    try:
        with torch.inference_mode():
            calls = _decoder_calls(pipe, batch, generator_device, prior_step)
            images: list[Image.Image] = []
            for prepared_jobs, embeds, negatives, generators in calls:
                kwargs: dict[str, Any] = {
                    "image_embeds": torch.cat(embeds), "negative_image_embeds": torch.cat(negatives),
                    "width": width, "height": height, "num_inference_steps": first.steps,
                    "guidance_scale": first.guidance, "generator": generators,
                    "callback_on_step_end": decoder_step, "callback_on_step_end_tensor_inputs": ["latents"],
                }
                if first.kind is not JobKind.IMAGINE:
                    kwargs["image"] = [_fit(p.init_image, (width, height), first.kind)
                                       for p in prepared_jobs for _ in p.job.seeds]  # type: ignore[union-attr,arg-type]
                if isinstance(first, ImageToImageJob):
                    kwargs["strength"] = first.strength
                    # diffusers 0.42's Kandinsky image-to-image hands (width, height) to a resize that takes
                    # (height, width): swapped here, a portrait source stays portrait (tests check it).
                    kwargs["width"], kwargs["height"] = height, width
                if isinstance(first, InpaintJob):
                    kwargs["mask_image"] = [_fit(p.mask_image, (width, height), first.kind)  # type: ignore[arg-type]
                                            for p in prepared_jobs for _ in p.job.seeds]  # type: ignore[union-attr]
                images.extend(decoder(**kwargs).images)
    except _Stop:
        return None
    share = (time.perf_counter() - started) / max(1, len(batch))
    results: list[JobResult] = []
    cursor = 0
    for prepared in batch:
        job = prepared.job
        assert isinstance(job, DiffusionJob)
        mine = [_fit(image, size, job.kind) for image in images[cursor:cursor + job.count]]
        if isinstance(job, InpaintJob):
            mine = keep_unmasked(prepared, mine)
        results.append(JobResult(job_id=job.job_id, images=tuple(mine), seeds=job.seeds, seconds=share,
                                 nsfw=(False,) * job.count, fast_path=step_cache.fast_path_label(model.quantized, 0)))
        cursor += job.count
    return results


def _decoder_calls(pipe: Any, batch: Sequence[PreparedJob], generator_device: Any,
                   prior_step: Any) -> list[tuple[list[PreparedJob], list[Any], list[Any], list[torch.Generator]]]:
    """Run the prior once per image; group the embeddings by decoder call (all jobs in one call,
    or one call per job for inpainting)."""
    per_job = isinstance(batch[0].job, InpaintJob)
    calls: list[tuple[list[PreparedJob], list[Any], list[Any], list[torch.Generator]]] = []
    for prepared in batch:
        job = prepared.job
        assert isinstance(job, DiffusionJob)
        if per_job or not calls:
            calls.append(([], [], [], []))
        jobs, embeds, negatives, generators = calls[-1]
        jobs.append(prepared)
        for seed in job.seeds:
            generator = torch.Generator(device=generator_device).manual_seed(seed)
            embed, negative = pipe.prior_pipe(
                prompt=job.prompt, negative_prompt=job.negative_prompt or None,
                num_inference_steps=PRIOR_STEPS, guidance_scale=PRIOR_GUIDANCE, generator=generator,
                output_type="pt", return_dict=False,
                callback_on_step_end=prior_step, callback_on_step_end_tensor_inputs=["latents"],
            )
            embeds.append(embed)
            negatives.append(negative)
            generators.append(generator)
    return calls
