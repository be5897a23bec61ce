"""Choosing the torch device, dtype and CPU threads from configuration."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from config import Config

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA, then Apple's MPS, then the CPU. An unavailable explicit choice raises."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device.device is 'cuda' but torch sees no CUDA GPU (is the CUDA build of torch installed?)")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise RuntimeError("device.device is 'mps' but this machine has no Apple GPU available to torch")
    return torch.device(name)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """``auto`` means float16 on a GPU and float32 on the CPU (half precision is slow or unsupported there)."""
    if name == "auto":
        return torch.float16 if device.type in ("cuda", "mps") else torch.float32
    return _DTYPES[name]


def is_out_of_memory(exc: BaseException) -> bool:
    """True for CUDA/MPS out-of-memory errors (which torch raises under several types)."""
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def free_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps":  # pragma: no cover - no Apple GPU in CI
        torch.mps.empty_cache()


def cpu_threads(config: Config) -> int:
    """torch's CPU threads: the configured number; by default on a CPU host all cores but one,
    so the event loop (Discord's heartbeat, uploads) is never starved by the model. 0: leave as is."""
    if config.device.threads > 0:
        return config.device.threads
    if config.device.device == "cpu" or (config.device.device == "auto" and not torch.cuda.is_available()
                                         and not torch.backends.mps.is_available()):
        return max(1, (os.cpu_count() or 2) - 1)
    return 0
