"""Upscaler models: loaded with spandrel on the inference thread, kept resident after first use.

spandrel reads a ``.pth``/``.safetensors`` state dict (``.pth`` through a restricted unpickler:
no code runs from the file) and detects the architecture from its keys (ESRGAN/Real-ESRGAN,
SwinIR, HAT, DAT, ...). On CUDA the model runs in fp16 where its descriptor says the
architecture supports it, else in fp32.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch

from inference.upscale.weights import UpscalerWeights

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedUpscaler:
    name: str
    descriptor: Any  # spandrel.ImageModelDescriptor
    scale: int
    device: torch.device
    dtype: torch.dtype
    architecture: str


class UpscalerModels:
    """The upscalers loaded so far (one resident copy each). Call :meth:`get` on the inference thread."""

    def __init__(self, weights: UpscalerWeights, device: torch.device) -> None:
        self.weights = weights
        self.device = device
        self._loaded: dict[str, LoadedUpscaler] = {}

    def get(self, name: str) -> LoadedUpscaler:
        loaded = self._loaded.get(name)
        if loaded is None:
            loaded = self._load(name)
            self._loaded[name] = loaded
        return loaded

    def loaded(self) -> list[str]:
        return list(self._loaded)

    def _load(self, name: str) -> LoadedUpscaler:
        from spandrel import ImageModelDescriptor, ModelLoader

        path = self.weights.path_for(name)
        member = f"The upscaler {name} is unavailable: its weights file is not an upscaler I can read. An admin can fix it."
        try:
            descriptor = ModelLoader().load_from_file(path)
        except Exception as exc:  # an unknown architecture, a truncated or foreign file: several types
            raise self.weights.damaged(name, path, f"could not be loaded by spandrel ({exc})", member) from exc
        if not isinstance(descriptor, ImageModelDescriptor) or descriptor.output_channels != 3:
            raise self.weights.damaged(name, path, "is not an RGB image-to-image model", member)
        entry = self.weights.entries.get(name)
        if entry is not None and entry.scale != descriptor.scale:
            raise self.weights.damaged(name, path, f"is a {descriptor.scale}x model, but its scale is set to "
                                       f"{entry.scale}", member)
        dtype = torch.float16 if self.device.type == "cuda" and descriptor.supports_half else torch.float32
        descriptor.to(self.device)
        if dtype == torch.float16:
            descriptor.half()
        descriptor.eval()
        log.info("upscaler %s: %s %dx on %s (%s)", name, descriptor.architecture.name, descriptor.scale,
                 self.device, str(dtype).removeprefix("torch."))
        return LoadedUpscaler(name, descriptor, descriptor.scale, self.device, dtype, descriptor.architecture.name)
