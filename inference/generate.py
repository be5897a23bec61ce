"""The torch work of one batch: one pipeline call for several compatible jobs.

Everything here runs on the single inference thread. Each image gets its own ``torch.Generator``
seeded with its seed, so an image is the same whether its job ran alone or in a batch (up to
1/255 of batched-matmul rounding).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from PIL import Image

from inference.jobs import DiffusionJob, ImageToImageJob, InpaintJob, JobKind, JobResult
from inference.loader import LoadedModel
from inference.prepare import PreparedJob

# Approximate SD latent -> RGB projection: a preview costs a matmul, not a VAE decode.
_LATENT_RGB = torch.tensor(
    [[0.298, 0.207, 0.208], [0.187, 0.286, 0.173], [-0.158, 0.189, 0.264], [-0.184, -0.271, -0.473]]
)

StepCallback = Callable[[int, int, Any], bool]
"""``(step, total_steps, latents) -> keep_going``; returning False interrupts the pipeline."""


def latent_preview(latents: torch.Tensor, index: int = 0) -> Image.Image:
    """A small RGB preview of one latent (1/8 of the final size)."""
    lat = latents[index].detach().float().cpu()
    if lat.shape[0] != 4:
        lat = lat[:4]
    rgb = torch.einsum("chw,cr->hwr", lat, _LATENT_RGB)
    rgb = ((rgb + 1.0) * 127.5).clamp(0, 255).to(torch.uint8).numpy()
    return Image.fromarray(rgb, "RGB")


def run_diffusion_batch(
    model: LoadedModel,
    batch: Sequence[PreparedJob],
    on_step: StepCallback,
) -> list[JobResult] | None:
    """Run compatible jobs in one call. Returns one result per job, or None if interrupted."""
    first = batch[0].job
    assert isinstance(first, DiffusionJob)
    pipe = model.pipes[first.kind]
    pipe.scheduler = model.scheduler(first.scheduler)
    _set_loras(pipe, model, first.loras)
    generator_device = "cpu" if model.device.type == "mps" else model.device
    prompts: list[str] = []
    negatives: list[str] = []
    generators: list[torch.Generator] = []
    images: list[Image.Image] = []
    masks: list[Image.Image] = []
    for prepared in batch:
        job = prepared.job
        assert isinstance(job, DiffusionJob)
        for seed in job.seeds:
            prompts.append(job.prompt)
            negatives.append(job.negative_prompt)
            generators.append(torch.Generator(device=generator_device).manual_seed(seed))
            if prepared.init_image is not None:
                images.append(prepared.init_image)
            if prepared.mask_image is not None:
                masks.append(prepared.mask_image)
    kwargs: dict[str, Any] = {
        "prompt": prompts,
        "num_inference_steps": first.steps,
        "guidance_scale": first.guidance,
        "generator": generators,
        "callback_on_step_end_tensor_inputs": ["latents"],
    }
    if any(negatives):
        kwargs["negative_prompt"] = negatives
    if first.kind is JobKind.IMAGINE:
        kwargs.update(width=first.width, height=first.height)
    else:
        kwargs["image"] = images
        assert isinstance(first, ImageToImageJob | InpaintJob)
        kwargs["strength"] = first.strength
        if isinstance(first, InpaintJob):
            kwargs.update(mask_image=masks, width=first.width, height=first.height)
    total = _effective_steps(first)
    interrupted = False

    def callback(pipeline: Any, step: int, _timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        nonlocal interrupted
        if not on_step(step + 1, total, tensors.get("latents")):
            pipeline._interrupt = True
            interrupted = True
        return tensors

    kwargs["callback_on_step_end"] = callback
    started = time.perf_counter()
    with torch.inference_mode():
        out = pipe(**kwargs)
    if interrupted:
        return None
    seconds = time.perf_counter() - started
    flags = getattr(out, "nsfw_content_detected", None) or [False] * len(out.images)
    results: list[JobResult] = []
    cursor = 0
    share = seconds / max(1, len(batch))
    for prepared in batch:
        job = prepared.job
        assert isinstance(job, DiffusionJob)
        n = job.count
        results.append(JobResult(
            job_id=job.job_id,
            images=tuple(out.images[cursor:cursor + n]),
            seeds=job.seeds,
            seconds=share,
            nsfw=tuple(bool(f) for f in flags[cursor:cursor + n]),
        ))
        cursor += n
    return results


def _effective_steps(job: DiffusionJob) -> int:
    """Image-to-image runs only ``strength`` of the schedule (as diffusers computes it)."""
    if job.kind is JobKind.IMAGINE:
        return job.steps
    strength = getattr(job, "strength", 1.0)
    return max(1, min(job.steps, int(job.steps * strength)))


def _set_loras(pipe: Any, model: LoadedModel, loras: tuple[tuple[str, float], ...]) -> None:
    if not model.loras:
        return
    if not loras:
        pipe.disable_lora()
        return
    pipe.enable_lora()
    pipe.set_adapters([model.loras[name] for name, _ in loras], [w for _, w in loras])
