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
from inference.loader import ModelLoadError, _first_line, _local_path, hub_reachable


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
    path = _local_path(lora.source, base_dir)
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
    if not path.exists():
        raise ModelLoadError(f"LoRA {lora.name!r}: {path} does not exist")
    if path.is_file():
        return path
    files = sorted(p.name for p in path.iterdir() if p.is_file() and p.suffix in (".safetensors", ".bin"))
    if lora.weight_name:
        if not (path / lora.weight_name).is_file():
            held = ", ".join(files) or "no LoRA files"
            raise ModelLoadError(f"LoRA {lora.name!r}: weight_name {lora.weight_name!r} is not in {path} (it holds: {held})")
        return path / lora.weight_name
    if len(files) != 1:
        held = f"several LoRA files ({', '.join(files)})" if files else "no .safetensors file"
        raise ModelLoadError(f"LoRA {lora.name!r}: the folder {path} holds {held}; set weight_name to the one to use")
    return path / files[0]


def _lora_hub_failure(lora: LoraConfig, exc: OSError) -> ModelLoadError:
    """One line for a hub LoRA that did not come: offline, no hub, or a wrong repo or file name."""
    from huggingface_hub import constants

    what = f"{lora.source} ({lora.weight_name})" if lora.weight_name else lora.source
    fetch = f"hf download {lora.source}{' ' + lora.weight_name if lora.weight_name else ''} --local-dir ./loras"
    if constants.is_offline_mode():
        return ModelLoadError(f"LoRA {lora.name!r}: {what} is not in the Hugging Face cache and HF_HUB_OFFLINE is set, "
                              f"so it cannot be downloaded. Unset HF_HUB_OFFLINE, or download it ({fetch}) and set "
                              "its source to that file")
    if not hub_reachable():
        return ModelLoadError(f"LoRA {lora.name!r}: the Hugging Face hub ({constants.ENDPOINT}) cannot be reached to "
                              f"download {what}. Download it where there is internet ({fetch}) and set its source "
                              "to that file")
    return ModelLoadError(f"LoRA {lora.name!r} could not be downloaded from {what}: are the repo and weight_name "
                          f"right? {_first_line(exc)}")


def lora_reason(exc: BaseException) -> str:
    """Why a LoRA file was refused, in words an admin can act on."""
    text = str(exc)
    if "size mismatch" in text or "not found in the base model" in text:
        return "it does not fit this model (was it made for another base model, such as SDXL instead of SD 1.5?)"
    if "Invalid LoRA checkpoint" in text:
        return "the file holds no LoRA weights (is it a full model rather than a LoRA?)"
    return _first_line(exc)
