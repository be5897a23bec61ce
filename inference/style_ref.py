"""Style references: /imagine's ``style_ref`` through an IP-Adapter (``[model.ip_adapter]``).

The adapter is loaded with diffusers' own ``load_ip_adapter`` when the model loads. Loaded and left
in place, it would change every job: the UNet then demands image embeddings on every call and its
cross-attention layers run IP-Adapter processors. So right after loading, :func:`load_style_adapter`
takes the adapter's pieces (its attention processors and image projection) back out of the UNet and
keeps them in a :class:`StyleAdapter`; :func:`style_reference` puts them in for the one pipeline call
of a style batch and restores the UNet after it, whatever happens. Every other job, the
image-to-image and inpainting pipelines (which share the UNet) included, runs the very UNet it ran
without an adapter configured: the same pixels (tests/inference/test_style_ref.py checks it), at no
cost. A style batch pays for the swap once per call: SD 1.5's 32 attention layers in and out took
~18 ms of Python on a 2-core CPU host (the traversal of the UNet's modules, no tensor work), about
one denoising step of a GPU. A compiled UNet (``device.compile``) compiles once more for each state
the first time it meets it.

Each image of a batch gets its own reference: the embeddings are computed here with the pipeline's
own ``encode_image``, one row per image, and used as they are (diffusers' ``ip_adapter_image`` would
read several pictures as several references for every image, and its handling of given
``ip_adapter_image_embeds`` repeats them per prompt: diffusers issue #9813).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from config import IpAdapterConfig, ModelConfig, is_local_source, source_path
from inference.jobs import JobError, TextToImageJob
from inference.prepare import PreparedJob
from inference.style_options import NO_STYLE_REF

log = logging.getLogger(__name__)

@dataclass
class StyleAdapter:
    """An IP-Adapter taken out of its UNet: its cross-attention processors (by layer name) and the
    UNet's ``encoder_hid_proj`` that turns image embeddings into extra tokens."""

    processors: dict[str, Any]
    projection: Any
    hid_dim_type: str


def _unet(pipe: Any) -> Any:
    """The UNet module itself (under ``torch.compile``'s wrapper, whose attributes would not reach it)."""
    unet = pipe.unet
    return getattr(unet, "_orig_mod", unet)


def load_style_adapter(pipe: Any, model: ModelConfig, base_dir: Path) -> StyleAdapter | None:
    """Load ``model.ip_adapter`` into ``pipe`` and take it out of the UNet again (see the module's
    docstring); None when none is configured. The image encoder stays registered on the pipeline.
    Raises ModelLoadError with one line an admin can act on."""
    ip = model.ip_adapter
    if not ip.source:
        return None
    from inference.loader import ModelLoadError

    where = f"model {model.display_name!r}: ip_adapter {ip.source}"
    unet = _unet(pipe)
    plain = dict(unet.attn_processors)
    before = (unet.encoder_hid_proj, unet.config.encoder_hid_dim_type)
    try:
        if ip.image_encoder:
            pipe.register_modules(image_encoder=_image_encoder(ip, pipe.dtype, base_dir))
        source, subfolder, weight_name = _weights(ip, base_dir)
        local = {"local_files_only": True} if Path(source).is_dir() else {}
        pipe.load_ip_adapter(source, subfolder=subfolder, weight_name=weight_name, **local)
    except (OSError, ValueError, KeyError, RuntimeError, TypeError) as exc:
        _restore(unet, plain, *before)
        text = str(exc)
        if "size mismatch" in text or "shape" in text:
            raise ModelLoadError(f"{where} does not fit this model (is it made for another model family?)") from None
        raise ModelLoadError(f"{where} could not be loaded: {(text.strip().splitlines() or [type(exc).__name__])[0][:300]}") from None
    adapter = StyleAdapter(
        processors={name: proc for name, proc in unet.attn_processors.items()
                    if type(proc).__name__.startswith("IPAdapter")},  # cross-attention layers only
        projection=unet.encoder_hid_proj, hid_dim_type=unet.config.encoder_hid_dim_type)
    _restore(unet, plain, *before)
    log.info("model %s: IP-Adapter %s ready for style references", model.display_name, weight_name)
    return adapter


def _local(value: str, base_dir: Path) -> Path | None:
    """``value`` as a local path (relative to the config's folder), or None for a hub id."""
    return source_path(value, base_dir) if is_local_source(value, base_dir) else None


def _weights(ip: IpAdapterConfig, base_dir: Path) -> tuple[str, str, str]:
    """``(source, subfolder, weight_name)`` for ``load_ip_adapter``: a file is its folder and name."""
    path = _local(ip.source, base_dir)
    if path is None:
        return ip.source, ip.subfolder, ip.weight_name
    if path.is_file():
        return str(path.parent), "", path.name
    return str(path), ip.subfolder, ip.weight_name


def _image_encoder(ip: IpAdapterConfig, dtype: torch.dtype, base_dir: Path) -> Any:
    from transformers import CLIPVisionModelWithProjection

    path = _local(ip.image_encoder, base_dir)
    if path is None:
        return CLIPVisionModelWithProjection.from_pretrained(ip.image_encoder, dtype=dtype)
    return CLIPVisionModelWithProjection.from_pretrained(path, dtype=dtype, local_files_only=True)


def _restore(unet: Any, processors: dict[str, Any], projection: Any, hid_dim_type: str | None) -> None:
    unet.set_attn_processor(dict(processors))
    unet.encoder_hid_proj = projection
    unet.config.encoder_hid_dim_type = hid_dim_type


@contextlib.contextmanager
def _adapter_in(unet: Any, adapter: StyleAdapter) -> Iterator[None]:
    """The adapter's processors and projection in ``unet`` for the ``with`` block; the UNet as it
    was (other processors included: sliced or SDPA ones chosen since) after it."""
    current = dict(unet.attn_processors)
    before = (unet.encoder_hid_proj, unet.config.encoder_hid_dim_type)
    for module in (adapter.projection, *adapter.processors.values()):  # where the UNet is now (a no-op
        module.to(device=unet.device, dtype=unet.dtype)               # unless it was moved since)
    unet.set_attn_processor({name: adapter.processors.get(name, proc) for name, proc in current.items()})
    unet.encoder_hid_proj = adapter.projection
    unet.config.encoder_hid_dim_type = adapter.hid_dim_type
    try:
        yield
    finally:
        _restore(unet, current, *before)


def _embeddings(pipe: Any, images: list[Any], guided: bool, device: torch.device) -> list[torch.Tensor]:
    """``ip_adapter_image_embeds`` with one reference per image: rows ``(negatives, positives)`` when
    the call is guided (as the prompt embeddings are), as diffusers' ``prepare_ip_adapter_image_embeds``
    builds them for one image."""
    from diffusers.models.embeddings import ImageProjection

    layer = _unet(pipe).encoder_hid_proj.image_projection_layers[0]
    positive, negative = pipe.encode_image(images, device, 1, not isinstance(layer, ImageProjection))
    positive, negative = positive.unsqueeze(1), negative.unsqueeze(1)  # one reference picture per image
    return [torch.cat([negative, positive]) if guided else positive]


@contextlib.contextmanager
def style_reference(adapter: StyleAdapter | None, pipe: Any, batch: Sequence[PreparedJob], guidance: float,
                    device: torch.device) -> Iterator[dict[str, Any]]:
    """The pipeline kwargs of a batch's style references, with the adapter in the UNet for the
    ``with`` block; ``{}`` and nothing touched for a batch without one (its first job decides:
    batch keys keep style and plain jobs apart). Runs on the inference thread."""
    first = batch[0].job
    if not (isinstance(first, TextToImageJob) and first.style_image is not None):
        yield {}
        return
    if adapter is None:  # validation refuses this first; a model reconfigured since may still meet it
        raise JobError(NO_STYLE_REF)
    images = [p.style_image for p in batch for _ in p.job.seeds]  # type: ignore[attr-defined]
    unet = _unet(pipe)
    guided = guidance > 1 and unet.config.time_cond_proj_dim is None  # as the pipelines decide it
    with _adapter_in(unet, adapter):
        pipe.set_ip_adapter_scale(first.style_strength)
        with torch.inference_mode():
            embeds = _embeddings(pipe, images, guided, device)
        # The pipeline would repeat given embeddings once per prompt, mixing every reference of a
        # batch into every image (diffusers issue #9813): for this call they are used as built here.
        pipe.prepare_ip_adapter_image_embeds = lambda *_args, **_kwargs: embeds
        try:
            yield {"ip_adapter_image_embeds": embeds}
        finally:
            del pipe.prepare_ip_adapter_image_embeds  # the pipeline's own method again
