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
    """Fuse the attention projections (``device.fuse_qkv``), quantise the UNet (``device.quantize``) and
    compile it (``device.compile``), in that order: each step sees what the one before made."""
    if opts.fuse_qkv:
        fuse_qkv(pipe)
    if opts.quantize != "none":
        quantize_unet(pipe, opts.quantize)
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


def quantized_label(opts: DeviceConfig) -> str:
    """What a model's results say of ``device.quantize`` ("" = not quantised)."""
    return "" if opts.quantize == "none" else opts.quantize


class QuantizeError(RuntimeError):
    """``device.quantize`` cannot be done on this device (the loader reports it as a load failure)."""


def quantize_unet(pipe: Any, mode: str) -> None:
    """The UNet's linear layers quantised by torchao (``device.quantize``), in place. Changes pixels
    (slightly): opt-in, and each PNG says so. ``int8``: int8 weights (half the UNet's linear weight
    memory of fp16); ``int8-dynamic``: int8 weights and activations (int8 matrix products, the gain
    comes with ``compile``); ``fp8``: float8 weights and activations, per row (Ada/Hopper tensor cores)."""
    unet = getattr(pipe, "unet", None)
    if unet is None:
        log.warning("device.quantize: %s has no UNet; left as it is", type(pipe).__name__)
        return
    device = next(unet.parameters()).device
    if mode == "fp8" and (device.type != "cuda" or torch.cuda.get_device_capability(device) < (8, 9)):
        where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"the {device.type.upper()}"
        raise QuantizeError(f"device.quantize = \"fp8\" needs an NVIDIA GPU of compute capability 8.9 or newer "
                            f"(Ada, Hopper); this runs on {where}. Use \"int8\" or \"int8-dynamic\".")
    from torchao.quantization import (
        Float8DynamicActivationFloat8WeightConfig,
        Int8DynamicActivationInt8WeightConfig,
        Int8WeightOnlyConfig,
        PerRow,
        quantize_,
    )

    configs = {"int8": Int8WeightOnlyConfig, "int8-dynamic": Int8DynamicActivationInt8WeightConfig,
               "fp8": lambda: Float8DynamicActivationFloat8WeightConfig(granularity=PerRow())}
    quantize_(unet, configs[mode]())
    log.info("device.quantize: the UNet's linear layers are %s now", mode)
