"""The torch work of one batch: one pipeline call for several compatible jobs.

Everything here runs on the single inference thread. Each image gets its own ``torch.Generator``
seeded with its seed, so an image is the same whether its job ran alone or in a batch (up to
1/255 of batched-matmul rounding). Inpainting results get the original pasted back wherever the
mask keeps it (the VAE round trip would otherwise shift every pixel slightly).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from typing import Any

import torch
from PIL import Image

from inference.control.run import control_call
from inference.imaging import composite_unmasked
from inference.jobs import DiffusionJob, ImageToImageJob, InpaintJob, JobError, JobKind, JobResult
from inference.kandinsky_samplers import TILE_KANDINSKY
from inference.loader import LoadedModel
from inference.prepare import PreparedJob
from inference.presets import KANDINSKY
from inference.samplers import call_eta, label_for
from inference.seamless import seamless, tile_extras
from inference.step_cache import caches, fast_path_label, step_cache
from inference.style_ref import style_reference

# Approximate latent -> RGB projections (a preview costs a matmul, not a VAE decode): a weight per
# latent channel and colour, then a bias. SDXL's VAE has its own latent space, so its own factors
# (ComfyUI's published SDXL latent-to-RGB factors, fitted the same way as SD's).
_LATENT_RGB = {
    "sd": (torch.tensor([[0.298, 0.207, 0.208], [0.187, 0.286, 0.173], [-0.158, 0.189, 0.264],
                         [-0.184, -0.271, -0.473]]), torch.zeros(3)),
    "sdxl": (torch.tensor([[0.3651, 0.4232, 0.4341], [-0.2533, -0.0042, 0.1068], [0.1076, 0.1111, -0.0362],
                           [-0.3165, -0.2492, -0.2188]]), torch.tensor([0.1084, -0.0175, -0.0011])),
}

StepCallback = Callable[[int, int, Any], bool]
"""``(step, total_steps, latents) -> keep_going``; returning False interrupts the pipeline."""


def latent_preview(latents: torch.Tensor, index: int = 0, family: str = "sd15") -> Image.Image:
    """A small RGB preview of one latent (1/8 of the final size) of a model of ``family``."""
    weights, bias = _LATENT_RGB["sdxl" if family.startswith("sdxl") else "sd"]
    lat = latents[index].detach().float().cpu()
    if lat.shape[0] != 4:
        lat = lat[:4]
    rgb = torch.einsum("chw,cr->hwr", lat, weights) + bias
    rgb = ((rgb + 1.0) * 127.5).clamp(0, 255).to(torch.uint8).numpy()
    return Image.fromarray(rgb, "RGB")


def run_diffusion_batch(
    model: LoadedModel,
    batch: Sequence[PreparedJob],
    on_step: StepCallback,
) -> list[JobResult] | None:
    """Run compatible jobs in one call. Returns one result per job, or None if interrupted."""
    if model.family == KANDINSKY:  # validation refuses these; a Redo after a model change may not
        if getattr(batch[0].job, "tile", False):
            raise JobError(TILE_KANDINSKY)
        if getattr(batch[0].job, "control_mode", "") or getattr(batch[0].job, "style_image", None) is not None:
            raise JobError(f"Model {model.name} is a Kandinsky 2.2 model now: it takes no control picture or "
                           "style reference. Make the image again without them, or on another model.")
        from inference.kandinsky import run_kandinsky_batch  # it imports this module

        return run_kandinsky_batch(model, batch, on_step)
    first = batch[0].job
    assert isinstance(first, DiffusionJob)
    pipe = ready_pipe(model, first.kind, first)
    control = control_call(model, batch, pipe)  # a ControlNet batch: its pipeline and maps (inference/control/)
    if control is not None:
        pipe = control.pipe
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
        "num_inference_steps": first.steps,
        "guidance_scale": first.guidance,
        "generator": generators,
        "callback_on_step_end_tensor_inputs": ["latents"],
    }
    kwargs.update(_prompt_kwargs(model, pipe, prompts, negatives if any(negatives) else None))
    eta = call_eta(first.scheduler, first.eta, type(pipe.scheduler).__name__)
    if eta is not None:  # as diffusers' prepare_extra_step_kwargs: only to a step that takes it
        kwargs["eta"] = eta
    elif first.eta >= 0:  # validation checks this; it cannot for a model it has not seen loaded yet
        label = label_for(first.scheduler, type(pipe.scheduler).__name__)
        raise JobError(f"The {label} sampler takes no eta: leave it out, or pick `ddim` or `tcd`.")
    if first.kind is JobKind.IMAGINE:
        kwargs.update(width=first.width, height=first.height, **(control.kwargs if control else {}))
    else:
        kwargs["image"] = images
        assert isinstance(first, ImageToImageJob | InpaintJob)
        kwargs["strength"] = first.strength
        if isinstance(first, InpaintJob):
            kwargs.update(mask_image=masks, width=first.width, height=first.height)
    total = effective_steps(first)
    interrupted = False

    def callback(pipeline: Any, step: int, _timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        nonlocal interrupted
        if not on_step(step + 1, total, tensors.get("latents")):
            pipeline._interrupt = True
            interrupted = True
        return tensors

    kwargs["callback_on_step_end"] = callback
    cached = caches(model.family, model.fast_draft, total, getattr(pipe.scheduler, "order", 1))  # step_cache.py
    fast_path = fast_path_label(model.quantized, model.fast_draft if cached else 0)
    started = time.perf_counter()
    with style_reference(model.style_adapter, pipe, batch, first.guidance, model.device) as style_kwargs, \
            torch.inference_mode(), seamless(pipe, getattr(first, "tile", False)), \
            step_cache(pipe, model.fast_draft) if cached else nullcontext():
        out = pipe(**kwargs, **style_kwargs)
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
        images = out.images[cursor:cursor + n]
        if isinstance(job, InpaintJob):
            images = keep_unmasked(prepared, images)
        results.append(JobResult(
            job_id=job.job_id,
            images=tuple(images),
            seeds=job.seeds,
            seconds=share,
            nsfw=tuple(bool(f) or (control is not None and control.flagged.get(job.job_id, False))
                       for f in flags[cursor:cursor + n]),
            extras=(control.extras.get(job.job_id, ()) if control else ())
            + (tile_extras(images) if getattr(job, "tile", False) else ()),
            fast_path=fast_path,
        ))
        cursor += n
    return results


def _prompt_kwargs(model: LoadedModel, pipe: Any, prompts: list[str], negatives: list[str] | None) -> dict[str, Any]:
    """The prompts as text, as always; as compel embeddings only where one has weighting syntax,
    ``BREAK`` or more than CLIP's 77 tokens (inference/prompting.py)."""
    from inference.embedding_tokens import spell_out
    from inference.prompting import needs_embeddings, prompt_embeddings

    prompts, negatives = spell_out(pipe.tokenizer, prompts), spell_out(pipe.tokenizer, negatives)
    if needs_embeddings(pipe.tokenizer, prompts + (negatives or [])):
        with torch.inference_mode():
            return prompt_embeddings(pipe, prompts, negatives, sdxl=getattr(pipe, "text_encoder_2", None) is not None)
    return {"prompt": prompts} | ({"negative_prompt": negatives} if negatives is not None else {})


def keep_unmasked(prepared: PreparedJob, images: Sequence[Image.Image]) -> list[Image.Image]:
    """Paste the prepared init image back over everything the (feathered) mask keeps.

    Where the mask is 0 the result equals the init image exactly; where it is 255 it is the
    generated image; the feathered band in between blends the two.
    """
    if prepared.init_image is None or prepared.mask_image is None:
        return list(images)
    return [composite_unmasked(prepared.init_image, image, prepared.mask_image) for image in images]


def ensure_sdpa(pipe: Any) -> dict[str, int]:
    """Make every attention layer of the UNet and VAE use PyTorch's fused ``scaled_dot_product_attention``.

    diffusers picks the SDPA processor by default on torch 2; this switches any layer still on the
    plain pre-2.0 processor, and leaves other choices alone (sliced attention asked for in config,
    xformers, adapters). Returns ``{processor class: layers}`` after the switch, for the log.
    """
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    counts: dict[str, int] = {}
    for name in ("unet", "vae"):
        module = getattr(pipe, name, None)
        processors = getattr(module, "attn_processors", None)
        if not processors:
            continue
        if any(type(proc) is AttnProcessor for proc in processors.values()):
            module.set_attn_processor({key: AttnProcessor2_0() if type(proc) is AttnProcessor else proc
                                       for key, proc in processors.items()})
            processors = module.attn_processors
        for proc in processors.values():
            counts[type(proc).__name__] = counts.get(type(proc).__name__, 0) + 1
    return counts


def warm_up_sizes(preset: Any, *, compiled: bool) -> list[tuple[int, int]]:
    """The sizes to run once at start-up: the default square size, and with ``torch.compile`` every
    aspect preset (a compiled UNet is specialised per shape, so each would otherwise make the
    first member at that size wait for a compilation)."""
    from inference.presets import ASPECTS

    sizes = [(preset.size, preset.size)]
    if compiled:
        for aspect in ASPECTS:
            size = preset.aspect_size(aspect)
            if size not in sizes:
                sizes.append(size)
    return sizes


def effective_steps(job: DiffusionJob) -> int:
    """Image-to-image runs only ``strength`` of the schedule (as diffusers computes it)."""
    if job.kind is JobKind.IMAGINE:
        return job.steps
    strength = getattr(job, "strength", 1.0)
    return max(1, min(job.steps, int(job.steps * strength)))


def ready_pipe(model: LoadedModel, kind: JobKind, job: DiffusionJob) -> Any:
    """The model's pipeline for ``kind`` with ``job``'s sampler and LoRAs set (inference/morph.py
    runs its frames through the text- and image-to-image pipelines with this too)."""
    pipe = model.pipes[kind]
    pipe.scheduler = model.scheduler(job.scheduler, job.spacing)
    _set_loras(pipe, model, job.loras)
    return pipe


def _set_loras(pipe: Any, model: LoadedModel, loras: tuple[tuple[str, float], ...]) -> None:
    if not model.loras:
        return
    if not loras:
        pipe.disable_lora()
        return
    pipe.enable_lora()
    pipe.set_adapters([model.loras[name] for name, _ in loras], [w for _, w in loras])
