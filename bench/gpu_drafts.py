"""bench/gpu.py's ``drafts`` section: the opt-in speed-ups that change pixels, each against the same
executor without it (SD 1.5, the sd15 section's size and steps, batch 1): DeepCache step caching
(``device.fast_draft``) and torchao quantisation of the UNet (``device.quantize``; fp8 only on a GPU
of compute capability 8.9+). For each: seconds per image, the speed-up, and how far its pixels are
from the plain run's (mean and max of |difference| over the image, 0-255)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.gpu_common import Budget, Plan, Runner, free, images_of, jobs_for, model_config
from bench.gpu_models import Models

# (label, device options). The base keeps the pixel-keeping switches on, so each row adds only its own.
BASE = {"channels_last": True, "fuse_qkv": True}
DRAFTS = [
    ("fast_draft3", {"fast_draft": 3}),
    ("int8-dynamic", {"quantize": "int8-dynamic"}),
    ("fp8", {"quantize": "fp8"}),
]


def fp8_possible(device: str) -> bool:
    return device == "cuda" and torch.cuda.get_device_capability() >= (8, 9)


def drafts(plan: Plan, models: Models, work: Path, budget: Budget, out: dict[str, Any]) -> None:
    """Each draft option at batch 1 against the base, both through easel's executor."""
    folder = models.folder("sd15")
    base_image: np.ndarray | None = None
    base_s = 0.0
    for label, options in [("base", {}), *DRAFTS]:
        if label == "fp8" and not fp8_possible(plan.device):
            out["fp8/skipped"] = "needs a CUDA GPU of compute capability 8.9+"
            continue
        if not budget.allows(label, (base_s or 1.0) * (plan.repeats + 3) + 10):
            continue
        config = model_config(plan, work / label, folder, family="sd15", size=plan.sd15_size, steps=plan.sd15_steps,
                              guidance=7.5, **BASE, **options)
        with Runner(config) as runner:
            runner.load()
            image = images_of(runner.run(jobs_for(config, 1, seed=700))[1])[0]
            seconds = runner.s_per_image(jobs_for(config, 1, seed=700), plan.repeats)
        free(plan.device)
        out[f"{label}/batch1_s_per_image"] = round(seconds, 4)
        if base_image is None:
            base_image, base_s = image, seconds
            print(f"  base (channels_last+fuse_qkv)   batch  1: {seconds:.4f} s/image", flush=True)
            continue
        diff = np.abs(image - base_image)
        out.update({f"{label}/speedup": round(base_s / seconds, 3), f"{label}/mean_abs_diff": round(float(diff.mean()), 2),
                    f"{label}/max_abs_diff": int(diff.max())})
        print(f"  {label:<31} batch  1: {seconds:.4f} s/image, {base_s / seconds:.2f}x the base, "
              f"pixels off by {diff.mean():.1f} on average (max {diff.max()})", flush=True)
