"""Diffusion schedulers ("samplers") by the names members pick in /imagine.

Each name maps to a diffusers scheduler class plus config tweaks; instances are built from the
model's own scheduler config so timestep spacing and betas stay what the model was trained with.
The A1111-style label goes into the PNG ``parameters`` chunk.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import diffusers


@dataclass(frozen=True)
class Sampler:
    name: str
    label: str
    class_name: str
    options: tuple[tuple[str, Any], ...] = ()


SAMPLERS: dict[str, Sampler] = {
    s.name: s
    for s in (
        Sampler("euler", "Euler", "EulerDiscreteScheduler"),
        Sampler("euler_a", "Euler a", "EulerAncestralDiscreteScheduler"),
        Sampler("dpmpp_2m", "DPM++ 2M", "DPMSolverMultistepScheduler"),
        Sampler("dpmpp_2m_karras", "DPM++ 2M Karras", "DPMSolverMultistepScheduler", (("use_karras_sigmas", True),)),
        Sampler("ddim", "DDIM", "DDIMScheduler"),
        Sampler("unipc", "UniPC", "UniPCMultistepScheduler"),
        Sampler("heun", "Heun", "HeunDiscreteScheduler"),
        Sampler("lms", "LMS", "LMSDiscreteScheduler"),
        Sampler("pndm", "PNDM", "PNDMScheduler"),
    )
}


def sampler_names() -> list[str]:
    return list(SAMPLERS)


def build_scheduler(name: str, base_config: Any) -> Any:
    """A scheduler instance for ``name`` derived from the model's scheduler config."""
    sampler = SAMPLERS[name]
    cls = getattr(diffusers, sampler.class_name)
    return cls.from_config(base_config, **dict(sampler.options))


def label_for(name: str, default_class: str) -> str:
    """The human label of a sampler name, or of the model's own scheduler when ``name`` is empty."""
    if name:
        return SAMPLERS[name].label
    for sampler in SAMPLERS.values():
        if sampler.class_name == default_class and not sampler.options:
            return sampler.label
    return default_class.removesuffix("Scheduler")
