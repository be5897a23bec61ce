"""Seamless tiles: circular padding in every convolution of a pipeline, for one call only.

A convolution with ``padding_mode="circular"`` reads past the left edge from the right edge (and
top from bottom), so the UNet denoises, and the VAE decodes, an image that wraps around: the picture
repeats without a seam. PyTorch's ``Conv2d`` reads ``padding_mode`` on every forward call (its
``_reversed_padding_repeated_twice`` is computed at construction for every mode), so switching the
attribute is all it takes, and putting the old value back restores the layer exactly.

Every ``nn.Conv2d`` below the UNet, the VAE (encoder and decoder: the decoder makes the pixels) and
a ControlNet when the pipeline has one is switched: also diffusers' ``LoRACompatibleConv`` (a
subclass) and peft's LoRA wrappers, whose ``base_layer`` and ``lora_A``/``lora_B`` are plain
``Conv2d`` children found by the same walk. The modules are shared by every pipeline of a model
(``from_pipe``), which is why the switch never outlives the call: :func:`circular_padding` restores
each layer's own previous mode on the way out, whether the call returned, raised or was interrupted.
Only the inference thread runs pipelines, so nothing else sees the switched layers meanwhile.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from torch import nn

from inference.imaging.tile_preview import tile_preview

TILED_COMPONENTS = ("unet", "vae", "controlnet")


def _convolutions(modules: Iterable[Any]) -> list[nn.Conv2d]:
    """Every ``Conv2d`` below ``modules``, once each."""
    seen: dict[int, nn.Conv2d] = {}
    for module in modules:
        if not isinstance(module, nn.Module):
            continue
        for layer in module.modules():
            if isinstance(layer, nn.Conv2d):
                seen.setdefault(id(layer), layer)
    return list(seen.values())


def pipeline_modules(pipe: Any) -> list[nn.Module]:
    """The pipeline's components whose convolutions a tile needs circular (absent ones skipped)."""
    modules = []
    for name in TILED_COMPONENTS:
        module = getattr(pipe, name, None)
        if isinstance(module, nn.Module):  # a MultiControlNet too: its nets are its children
            modules.append(module)
    return modules


@contextmanager
def circular_padding(modules: Iterable[Any], enabled: bool = True) -> Iterator[int]:
    """Within the block every ``Conv2d`` under ``modules`` pads circularly; yields how many layers
    were switched (0 when not ``enabled``: the block runs on the layers as they are)."""
    if not enabled:
        yield 0
        return
    layers = _convolutions(modules)
    previous = [layer.padding_mode for layer in layers]
    try:
        for layer in layers:
            layer.padding_mode = "circular"
        yield len(layers)
    finally:
        for layer, mode in zip(layers, previous, strict=True):
            layer.padding_mode = mode


def seamless(pipe: Any, enabled: bool) -> Any:
    """:func:`circular_padding` for a pipeline's UNet, VAE and ControlNet (see the module doc)."""
    return circular_padding(pipeline_modules(pipe) if enabled else (), enabled)


def tile_extras(images: Iterable[Any]) -> tuple[tuple[str, Any], ...]:
    """The pictures shown with a tile job's result (``JobResult.extras``): each image 2x2."""
    return tuple(("tile", tile_preview(image)) for image in images)
