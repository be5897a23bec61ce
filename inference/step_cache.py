"""``device.fast_draft``: DeepCache step caching for one pipeline call.

DeepCache (the ``DeepCache`` package, DeepCacheSDHelper) runs the UNet's deep blocks only every N-th
step and reuses their output from the last full step in between, so most steps run only the
outermost down and up blocks. It changes pixels (a draft-quality trade), so it is opt-in and each
PNG it made says so (``Fast path`` in its parameters).

The helper keeps its cache and its first step on itself and never resets them between calls. A
cache from one job must not reach the next (another size, another strength: another first step),
so it is switched on for each pipeline call and off after it, and the block functions it put on
the modules are removed again: the UNet is as it was for every other call (/morph, ControlNet maps,
jobs of a model without it).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

# Pipelines that call their UNet as unet(latents, t, ...), as DeepCache's wrapper needs; Kandinsky's
# decoder passes the timestep by name, and a one-step model has no step to skip.
CACHEABLE_FAMILIES = frozenset({"sd15", "sd21", "sdxl"})


def fast_path_label(quantized: str, cache_interval: int) -> str:
    """What a PNG's ``Fast path`` says: e.g. ``int8, DeepCache every 3 steps`` ("" = plain)."""
    parts = [quantized] if quantized else []
    if cache_interval:
        parts.append(f"DeepCache every {cache_interval} steps")
    return ", ".join(parts)


def caches(family: str, interval: int, steps: int, scheduler_order: int = 1) -> bool:
    """Whether a call of ``steps`` steps of a ``family`` model gets step caching. Not with a sampler
    that calls the UNet more than once per step (Heun, DPM2: ``order`` 2): DeepCache counts steps by
    the timestep's first place in the schedule, which such a schedule repeats, so it would reuse the
    deep features of the first step for all the others (Heun) or count half steps (DPM2)."""
    return interval >= 2 and family in CACHEABLE_FAMILIES and steps > 1 and scheduler_order == 1


@contextmanager
def step_cache(pipe: Any, interval: int) -> Iterator[None]:
    """DeepCache on ``pipe``'s UNet for the calls inside, with a fresh cache; all of it undone after."""
    from DeepCache import DeepCacheSDHelper

    unet = pipe.unet
    had_own_forward = {id(m) for m in unet.modules() if "forward" in vars(m)}  # e.g. accelerate's hooks
    helper = DeepCacheSDHelper(pipe=pipe)
    helper.set_params(cache_interval=interval, cache_branch_id=0)  # branch 0: only the outermost blocks run
    helper.enable()
    try:
        yield
    finally:
        helper.disable()  # puts the bound methods back as instance attributes: remove those it added
        for module in unet.modules():
            if "forward" in vars(module) and id(module) not in had_own_forward:
                del module.forward
