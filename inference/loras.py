"""A model's LoRAs: fused into its weights, or loaded as adapters members switch per request.

A LoRA comes from a ``.safetensors`` file, a folder (``weight_name`` picks a file when it holds
several), or a hub repo (``weight_name`` picks one file of a multi-file repo such as
ByteDance/Hyper-SD). Every failure is a :class:`ModelLoadError` of one line. Runs on the
inference thread, from :func:`inference.loader.load_model`.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from config import LoraConfig, ModelConfig
from inference.adapter_files import hub_failure, one_file
from inference.loader import ModelLoadError, first_line, local_path


def load_loras(pipe: Any, model: ModelConfig, base_dir: Path) -> dict[str, str]:
    """Fuse the ``fuse = true`` LoRAs into the weights, then load the others as switchable adapters.

    A fused LoRA is loaded, merged at its weight and its adapter layers removed
    (``unload_lora_weights``): it becomes part of the model, so the per-request switching in
    ``generate._set_loras`` (``disable_lora``, ``set_adapters``) cannot touch it, and it costs no
    time per step. Fusing comes first because unloading removes every adapter. Returns
    ``{name: adapter}`` of the switchable LoRAs only: a fused one is not offered to members.
    """
    fuse_loras(pipe, model, base_dir)
    adapters: dict[str, str] = {}
    for i, lora in enumerate(model.loras):
        if not lora.fuse:
            adapter = f"lora{i}"
            _load_lora(pipe, lora, adapter, base_dir)
            adapters[lora.name] = adapter
    if adapters:
        pipe.disable_lora()
    return adapters


def fuse_loras(pipe: Any, model: ModelConfig, base_dir: Path) -> None:
    """Merge each ``fuse = true`` LoRA into ``pipe``'s weights at its weight, leaving no adapter behind."""
    for i, lora in enumerate(model.loras):
        if not lora.fuse:
            continue
        adapter = f"fused{i}"
        _load_lora(pipe, lora, adapter, base_dir)
        try:
            pipe.fuse_lora(lora_scale=lora.weight, adapter_names=[adapter])
            pipe.unload_lora_weights()
        except (ValueError, KeyError, RuntimeError) as exc:
            raise ModelLoadError(f"LoRA {lora.name!r} could not be fused into the model: {lora_reason(exc)}") from None


def _load_lora(pipe: Any, lora: LoraConfig, adapter: str, base_dir: Path) -> None:
    """``load_lora_weights`` from a file, a file of a folder, or a (file of a) hub repo."""
    path = local_path(lora.source, base_dir)
    if path is not None:
        args: tuple[str, ...] = (str(_lora_file(lora, path)),)
        kwargs: dict[str, Any] = {}
    else:
        args, kwargs = (lora.source,), ({"weight_name": lora.weight_name} if lora.weight_name else {})
    try:
        with warnings.catch_warnings():
            # peft warns on every adapter after the first; several LoRAs per model are intended.
            warnings.filterwarnings("ignore", message="Already found a `peft_config`", category=UserWarning)
            pipe.load_lora_weights(*args, adapter_name=adapter, **kwargs)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        if path is None and isinstance(exc, OSError):
            raise _lora_hub_failure(lora, exc) from None
        raise ModelLoadError(f"LoRA {lora.name!r} could not be loaded from {lora.source}: {lora_reason(exc)}") from None


def _lora_file(lora: LoraConfig, path: Path) -> Path:
    """The one LoRA file ``source`` (and ``weight_name``) point at, or one clear line why not."""
    return one_file(f"LoRA {lora.name!r}", "LoRA", path, lora.weight_name, (".safetensors", ".bin"),
                    "no .safetensors file")


def _lora_hub_failure(lora: LoraConfig, exc: OSError) -> ModelLoadError:
    return hub_failure(f"LoRA {lora.name!r}", lora.source, lora.weight_name, "./loras", exc)


def lora_reason(exc: BaseException) -> str:
    """Why a LoRA file was refused, in words an admin can act on."""
    text = str(exc)
    if "size mismatch" in text or "not found in the base model" in text:
        return "it does not fit this model (was it made for another base model, such as SDXL instead of SD 1.5?)"
    if "Invalid LoRA checkpoint" in text:
        return "the file holds no LoRA weights (is it a full model rather than a LoRA?)"
    return first_line(exc)
