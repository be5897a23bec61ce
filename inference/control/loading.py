"""A model's ControlNets, loaded with the model: one pipeline per mode sharing the base weights.

``StableDiffusionControlNetPipeline.from_pipe(base, controlnet=...)`` (the SDXL one for SDXL)
reuses the base pipeline's UNet, VAE, text encoders and tokenizers: a ControlNet costs its own
weights only. A depth mode also loads its depth-estimation model (transformers). Every failure is
one :class:`ModelLoadError` line. Runs on the inference thread, from ``load_model``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from config import ModelConfig
from config_controlnets import NO_PREPROCESSOR, ControlNetConfig
from inference.loader import ModelLoadError, first_line, local_path


@dataclass(frozen=True)
class DepthEstimator:
    """A transformers depth-estimation model and its image processor."""

    processor: Any
    model: Any


@dataclass(frozen=True)
class LoadedControl:
    """One mode of a model: its ControlNet pipeline, the estimator making its maps (depth; None
    for the OpenCV modes and ready maps) and its default strength."""

    mode: str
    name: str
    pipe: Any
    strength: float = 1.0
    estimator: DepthEstimator | None = None


def load_controls(model: ModelConfig, base: Any, family: str, device: torch.device, dtype: torch.dtype,
                  base_dir: Path) -> dict[str, LoadedControl]:
    """``{mode: LoadedControl}`` for ``model.controlnets``, each pipeline made from ``base``."""
    if not model.controlnets:
        return {}
    from diffusers import StableDiffusionControlNetPipeline, StableDiffusionXLControlNetPipeline

    cls = StableDiffusionXLControlNetPipeline if family.startswith("sdxl") else StableDiffusionControlNetPipeline
    controls: dict[str, LoadedControl] = {}
    for entry in model.controlnets:
        net = load_controlnet(model, entry, dtype, base_dir).to(device)
        misfit = _misfit(net.config, base.unet.config)
        try:
            if misfit:
                raise ValueError(misfit)
            pipe = cls.from_pipe(base, controlnet=net)
        except (ValueError, TypeError, RuntimeError) as exc:
            raise ModelLoadError(f"model {model.display_name!r}: ControlNet {entry.display_name!r} does not fit it "
                                 f"(made for another model family?): {first_line(exc)}") from None
        pipe.set_progress_bar_config(disable=True)
        controls[entry.mode] = LoadedControl(entry.mode, entry.display_name, pipe, entry.strength,
                                             load_estimator(model, entry, device, base_dir))
    return controls


def _misfit(net: Any, unet: Any) -> str:
    """Why a ControlNet's config cannot steer this UNet ("" when it can): from_pipe does not check,
    and the first job would fail deep inside the UNet."""
    for key in ("cross_attention_dim", "addition_embed_type", "block_out_channels", "in_channels"):
        ours, theirs = getattr(net, key, None), getattr(unet, key, None)
        if (list(ours) if isinstance(ours, list | tuple) else ours) != \
                (list(theirs) if isinstance(theirs, list | tuple) else theirs):
            return f"its {key} is {ours}, the model's {theirs}"
    return ""


def load_controlnet(model: ModelConfig, entry: ControlNetConfig, dtype: torch.dtype, base_dir: Path) -> Any:
    """A ``ControlNetModel`` from a hub id, a diffusers folder or one ``.safetensors`` file."""
    from diffusers import ControlNetModel

    where = f"model {model.display_name!r}: ControlNet {entry.display_name!r} ({entry.source})"
    path = local_path(entry.source, base_dir)
    try:
        if path is None:
            return ControlNetModel.from_pretrained(entry.source, torch_dtype=dtype)
        if path.is_file():
            return ControlNetModel.from_single_file(str(path), torch_dtype=dtype)
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"{where}: {path} is not a ControlNet folder (no config.json)")
        return ControlNetModel.from_pretrained(path, torch_dtype=dtype, local_files_only=True)
    except ModelLoadError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError, TypeError) as exc:
        hint = ""
        if path is not None and path.is_file():  # diffusers fetches the matching config from the hub
            hint = " (a single-file ControlNet takes its config from the hub; offline, use its diffusers folder)"
        raise ModelLoadError(f"{where} could not be loaded{hint}: {first_line(exc)}") from None


def load_estimator(model: ModelConfig, entry: ControlNetConfig, device: torch.device,
                   base_dir: Path) -> DepthEstimator | None:
    """The depth-estimation model of a depth mode (None when none is configured, or "none")."""
    source = entry.preprocessor.strip()
    if not source or source == NO_PREPROCESSOR:
        return None
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation

    path = local_path(source, base_dir)
    kwargs: dict[str, Any] = {"local_files_only": True} if path is not None else {}
    where = str(path) if path is not None else source
    try:
        processor = AutoImageProcessor.from_pretrained(where, **kwargs)
        estimator = AutoModelForDepthEstimation.from_pretrained(where, **kwargs).to(device).eval()
    except (OSError, ValueError, KeyError, RuntimeError, TypeError) as exc:
        raise ModelLoadError(f"model {model.display_name!r}: depth preprocessor {source} could not be loaded "
                             f"(a transformers depth-estimation model is needed): {first_line(exc)}") from None
    return DepthEstimator(processor, estimator)
