"""The GPU fast path switches of ``[device]`` that keep diffusers' pixels: fused QKV projections
and ``torch.compile`` with a chosen mode and shape handling.

Called by the loader once a pipeline sits on its device (after ``channels_last``). Fusing comes
before compiling, so the compiled graph sees the fused layers. Which settings pay on a given card is
measured by ``bench/gpu.py`` (bench/README.md).
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from config import DeviceConfig

log = logging.getLogger(__name__)

# device.compile_dynamic (config_checks.COMPILE_DYNAMIC) -> torch.compile's ``dynamic``: "auto" lets torch
# decide (static first, dynamic after a new shape); "static" is one graph per shape, each warmed up at
# start-up; "dynamic" one graph for every size. compile_mode "reduce-overhead" adds CUDA graphs.
COMPILE_DYNAMIC = {"auto": None, "static": False, "dynamic": True}


def apply_fast_path(pipe: Any, opts: DeviceConfig) -> None:
    """Fuse the attention projections (``device.fuse_qkv``) and compile the UNet (``device.compile``)."""
    if opts.fuse_qkv:
        fuse_qkv(pipe)
    if opts.compile:
        pipe.unet = torch.compile(pipe.unet, mode=opts.compile_mode, dynamic=COMPILE_DYNAMIC[opts.compile_dynamic],
                                  fullgraph=False)


def fuse_qkv(pipe: Any) -> None:
    """One matrix product for query, key and value in every self-attention layer (key and value in
    cross-attention) of the UNet and the VAE, instead of three. Same function, fewer kernel launches."""
    if hasattr(pipe, "fuse_qkv_projections"):
        pipe.fuse_qkv_projections()
        return
    fused = [name for name in ("unet", "vae") if hasattr(getattr(pipe, name, None), "fuse_qkv_projections")]
    for name in fused:
        getattr(pipe, name).fuse_qkv_projections()
    if not fused:
        log.warning("device.fuse_qkv: %s has no attention projections to fuse; left as it is", type(pipe).__name__)
