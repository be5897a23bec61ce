"""Which family a model belongs to, read from the model itself rather than from its name.

The family picks the preset (steps, guidance, sizes) and, for a single file, the pipeline class.
A name says little: ``juggernaut_v9.safetensors`` is an SDXL checkpoint and
``stabilityai/stable-diffusion-2`` an SD 2 model at 768 px, yet neither name says "xl" or "2.1".
So :func:`detect_family` looks, in this order, at

1. a loaded pipeline (any source): a second text encoder or a UNet with
   ``addition_embed_type = "text_time"`` is SDXL; a scheduler predicting ``v_prediction`` is SD 2.x
   at 768 px (``sd21``);
2. a local diffusers folder's ``model_index.json`` and its ``unet``/``scheduler`` configs, the same
   way (and ``Kandinsky...`` pipelines are ``kandinsky22``);
3. a local single ``.safetensors`` file's tensor names, read from its header without loading a
   tensor: SDXL files hold ``conditioner.embedders.1.`` (the second text encoder), SD 2.x files
   ``cond_stage_model.model.`` (OpenCLIP; diffusers too reads those as the 768 px v-prediction model);
4. the name, for a hub id with nothing local to read.

Turbo models are distilled from SD 2.1 / SDXL with configs their bases share, so "turbo" in the name
still turns ``sdxl`` into ``sdxl-turbo`` and the SD families into ``sd-turbo``.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

from inference.presets import KANDINSKY

_SD2_NAME = re.compile(r"stable-diffusion-2(?!\d)|2-1|2\.1|sd2|v2-")


def detect_family(source: str, pipeline_class: str = "", *, base_dir: Path | None = None, pipe: Any = None) -> str:
    """The family of a model source (hub id, folder or file; relative paths start at ``base_dir``).

    ``pipe``: the loaded pipeline, when there is one (its configs are the best witness);
    ``pipeline_class``: its class name when only that is known.
    """
    found = family_from_pipeline(pipe) if pipe is not None else None
    if found is None:
        path = _existing_path(source, base_dir)
        if path is not None and path.is_dir():
            found = family_from_folder(path)
        elif path is not None and path.is_file():
            found = family_from_checkpoint(path)
    if found is None:
        return family_from_name(source, pipeline_class)
    return with_turbo(found, source)


@functools.lru_cache(maxsize=64)
def resolve_family(family: str, source: str, base_dir: Path | None = None) -> str:
    """A model's configured family, or the detected one for ``"auto"``.

    Asked on the event loop for every request to a model not loaded yet: kept, so its few small
    reads (configs, a file's header) happen once."""
    return family if family != "auto" else detect_family(source, base_dir=base_dir)


def family_from_name(source: str, pipeline_class: str = "") -> str:
    """The guess from a hub id's or a file's name (and a pipeline class name, if known)."""
    name = source.lower().replace("_", "-")
    if is_kandinsky_source(source, pipeline_class):
        return KANDINSKY
    xl = "xl" in pipeline_class.lower() or "xl" in name
    if xl:
        return with_turbo("sdxl", source)
    if _SD2_NAME.search(name) and "base" not in name:
        return with_turbo("sd21", source)
    return with_turbo("sd15", source)


def is_kandinsky_source(source: str, pipeline_class: str = "") -> bool:
    """A Kandinsky 2.2 decoder: its folder's pipeline class (``KandinskyV22Pipeline``) when known,
    else a name that says so (``kandinsky-community/kandinsky-2-2-decoder``)."""
    return pipeline_class.startswith("Kandinsky") if pipeline_class else "kandinsky" in source.lower()


def with_turbo(family: str, source: str) -> str:
    """``sdxl`` -> ``sdxl-turbo`` and ``sd15``/``sd21`` -> ``sd-turbo`` when the name says turbo."""
    if "turbo" not in source.lower():
        return family
    return {"sdxl": "sdxl-turbo", "sd15": "sd-turbo", "sd21": "sd-turbo"}.get(family, family)


def family_from_configs(pipeline_class: str, unet: dict[str, Any], scheduler: dict[str, Any],
                        has_text_encoder_2: bool) -> str | None:
    """The family the configs show; None when they are not a Stable Diffusion or Kandinsky model."""
    if pipeline_class.startswith("Kandinsky"):
        return KANDINSKY
    if has_text_encoder_2 or unet.get("addition_embed_type") == "text_time" or "XL" in pipeline_class:
        return "sdxl"
    if scheduler.get("prediction_type") == "v_prediction":
        return "sd21"
    if pipeline_class.startswith("StableDiffusion") or unet:
        # SD 1.x, and SD 2.x "base" models (512 px, epsilon), which want SD 1.5's sizes and steps.
        return "sd15"
    return None


def family_from_pipeline(pipe: Any) -> str | None:
    """The family of a loaded diffusers pipeline."""
    unet = getattr(pipe, "unet", None)
    scheduler = getattr(pipe, "scheduler", None)
    return family_from_configs(
        type(pipe).__name__,
        dict(unet.config) if unet is not None else {},
        dict(scheduler.config) if scheduler is not None else {},
        getattr(pipe, "text_encoder_2", None) is not None,
    )


def family_from_folder(folder: Path) -> str | None:
    """The family of a local diffusers folder, from ``model_index.json`` and its component configs."""
    index = _read_json(folder / "model_index.json")
    if not index:
        return None
    text_encoder_2 = index.get("text_encoder_2")
    return family_from_configs(
        str(index.get("_class_name", "")),
        _read_json(folder / "unet" / "config.json"),
        _read_json(folder / "scheduler" / "scheduler_config.json"),
        isinstance(text_encoder_2, list) and text_encoder_2[0] is not None,
    )


def family_from_checkpoint(path: Path) -> str | None:
    """The family of a single ``.safetensors`` checkpoint from its tensor names (header only)."""
    keys = checkpoint_keys(path)
    if any(k.startswith("conditioner.embedders.") for k in keys):
        return "sdxl"
    if any(k.startswith("cond_stage_model.model.") for k in keys):
        return "sd21"
    if any(k.startswith(("cond_stage_model.transformer.", "model.diffusion_model.")) for k in keys):
        return "sd15"
    return None


def checkpoint_keys(path: Path) -> list[str]:
    """The tensor names of a ``.safetensors`` file ([] for another format or an unreadable file)."""
    if path.suffix != ".safetensors":
        return []
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return list(f.keys())
    except Exception:  # a damaged file: the loader says so when it loads it
        return []


def pipeline_class_of(folder: Path) -> str:
    """The ``_class_name`` of a local diffusers folder's ``model_index.json`` ("" if unreadable)."""
    return str(_read_json(folder / "model_index.json").get("_class_name", ""))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _existing_path(source: str, base_dir: Path | None) -> Path | None:
    path = Path(source).expanduser()
    if not path.is_absolute():
        path = (base_dir or Path(".")) / path
    return path if path.exists() else None
