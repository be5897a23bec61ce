"""Per-family defaults: how many steps, which guidance and which sizes each model family wants.

Turbo models are distilled for 1-4 steps without classifier-free guidance; SD 1.5 wants ~25 steps
at guidance ~7. The numbers follow the model cards. An admin can override any of them per model
in ``easel.toml`` (``steps``, ``guidance``, ``size``, ``min_size``, ``max_size``, ``max_steps``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from config import ModelConfig


@dataclass(frozen=True)
class ModelPreset:
    family: str
    steps: int
    guidance: float
    size: int  # default square side
    min_size: int
    max_size: int
    max_steps: int
    default_strength: float = 0.6

    def aspect_size(self, aspect: str) -> tuple[int, int]:
        """Width and height for an aspect preset, keeping about ``size**2`` pixels, multiples of 8."""
        ratios = {"square": (1, 1), "portrait": (2, 3), "landscape": (3, 2), "tall": (9, 16), "wide": (16, 9)}
        if aspect not in ratios:
            raise KeyError(aspect)
        rw, rh = ratios[aspect]
        scale = (self.size * self.size / (rw * rh)) ** 0.5
        w, h = (max(self.min_size, min(self.max_size, int(round(r * scale / 8)) * 8)) for r in (rw, rh))
        return w, h


ASPECTS = ("square", "portrait", "landscape", "tall", "wide")

PRESETS: dict[str, ModelPreset] = {
    "sd15": ModelPreset("sd15", steps=25, guidance=7.0, size=512, min_size=256, max_size=1024, max_steps=100),
    "sd21": ModelPreset("sd21", steps=25, guidance=7.0, size=768, min_size=384, max_size=1024, max_steps=100),
    "sd-turbo": ModelPreset("sd-turbo", steps=1, guidance=0.0, size=512, min_size=256, max_size=768,
                            max_steps=8, default_strength=0.5),
    "sdxl": ModelPreset("sdxl", steps=30, guidance=6.0, size=1024, min_size=512, max_size=1536, max_steps=100),
    "sdxl-turbo": ModelPreset("sdxl-turbo", steps=1, guidance=0.0, size=512, min_size=256, max_size=1024,
                              max_steps=8, default_strength=0.5),
    # Kandinsky 2.2 decoder (the prior's own 25 steps at guidance 4 are fixed: inference/kandinsky.py).
    "kandinsky22": ModelPreset("kandinsky22", steps=25, guidance=4.0, size=512, min_size=256, max_size=768,
                               max_steps=100),
}

KANDINSKY = "kandinsky22"


def detect_family(source: str, pipeline_class: str = "") -> str:
    """Guess a family from the source's name and the pipeline class (``StableDiffusionXL...``)."""
    if is_kandinsky_source(source, pipeline_class):
        return KANDINSKY
    name = source.lower().replace("_", "-")
    xl = "xl" in pipeline_class.lower() or "xl" in name
    turbo = "turbo" in name
    if xl:
        return "sdxl-turbo" if turbo else "sdxl"
    if turbo:
        return "sd-turbo"
    if "2-1" in name or "2.1" in name or "sd2" in name or "v2-" in name:
        return "sd21"
    return "sd15"


def is_kandinsky_source(source: str, pipeline_class: str = "") -> bool:
    """A Kandinsky 2.2 decoder: its folder's pipeline class (``KandinskyV22Pipeline``) when known,
    else a name that says so (``kandinsky-community/kandinsky-2-2-decoder``)."""
    return pipeline_class.startswith("Kandinsky") if pipeline_class else "kandinsky" in source.lower()


def pipeline_class_of(folder: Path) -> str:
    """The ``_class_name`` of a local diffusers folder's ``model_index.json`` ("" if unreadable)."""
    try:
        return str(json.loads((folder / "model_index.json").read_text(encoding="utf-8")).get("_class_name", ""))
    except (OSError, ValueError):
        return ""


def preset_for(model: ModelConfig, family: str) -> ModelPreset:
    """The family preset, then a fused LoRA's recipe, then the model's configured overrides."""
    base = PRESETS[family]
    changes: dict[str, object] = {}
    fused = model.fused_recipe  # a fused speed LoRA's recipe replaces the family's defaults
    if fused.steps:
        changes.update(steps=fused.steps, max_steps=max(base.max_steps, fused.steps))
    if fused.guidance >= 0:
        changes["guidance"] = fused.guidance
    if model.steps:
        changes["steps"] = model.steps
    if model.guidance >= 0:
        changes["guidance"] = model.guidance
    if model.min_size:
        changes["min_size"] = model.min_size
    if model.max_size:
        changes["max_size"] = model.max_size
    if model.size:
        changes["size"] = model.size
    if model.max_steps:
        changes["max_steps"] = model.max_steps
    preset = replace(base, **changes)
    if not preset.min_size <= preset.size <= preset.max_size:
        preset = replace(preset, min_size=min(preset.min_size, preset.size), max_size=max(preset.max_size, preset.size))
    return replace(preset, steps=min(preset.steps, preset.max_steps))
