"""Diffusion schedulers ("samplers") by the names members pick, with their timestep spacing and eta.

Each name maps to a diffusers scheduler class plus config tweaks; instances are built from the
model's own scheduler config so betas and prediction type stay what the model was trained with.
``spacing`` (``trailing``, ``leading``, ``linspace``) overrides the config's ``timestep_spacing``:
"DDIM with trailing timesteps" is ``DDIMScheduler.from_config(config, timestep_spacing="trailing")``,
as the Hyper-SD and SDXL-Turbo posts write it. ``eta`` is the noise factor of DDIM and TCD steps;
diffusers pipelines hand ``eta`` to ``scheduler.step`` only when its signature takes it, and so do
we (:func:`call_eta`). The A1111-style label (:func:`label_for`) goes into the PNG ``parameters``.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from typing import Any

import diffusers

from config import SPACINGS

__all__ = ["SAMPLERS", "SPACINGS", "Sampler", "build_scheduler", "call_eta", "class_of", "ignores_spacing", "label_for", "sampler_names",
           "step_takes_eta"]


@dataclass(frozen=True)
class Sampler:
    name: str
    label: str
    class_name: str
    options: tuple[tuple[str, Any], ...] = ()
    # Used when the member sets no eta: TCD's 0.3 as the TCD/Hyper-SD posts use it. None = the
    # pipeline's own default (eta=0.0 for DDIM).
    default_eta: float | None = None
    # False for schedulers that pick their own timesteps and ignore ``timestep_spacing`` (LCM, TCD).
    uses_spacing: bool = True


SAMPLERS: dict[str, Sampler] = {
    s.name: s
    for s in (
        Sampler("euler", "Euler", "EulerDiscreteScheduler"),
        Sampler("euler_a", "Euler a", "EulerAncestralDiscreteScheduler"),
        Sampler("dpmpp_2m", "DPM++ 2M", "DPMSolverMultistepScheduler"),
        Sampler("dpmpp_2m_karras", "DPM++ 2M Karras", "DPMSolverMultistepScheduler", (("use_karras_sigmas", True),)),
        Sampler("ddim", "DDIM", "DDIMScheduler"),
        Sampler("ddpm", "DDPM", "DDPMScheduler"),
        Sampler("unipc", "UniPC", "UniPCMultistepScheduler"),
        Sampler("heun", "Heun", "HeunDiscreteScheduler"),
        Sampler("lms", "LMS", "LMSDiscreteScheduler"),
        Sampler("pndm", "PNDM", "PNDMScheduler"),
        Sampler("kdpm2", "DPM2", "KDPM2DiscreteScheduler"),
        Sampler("kdpm2_a", "DPM2 a", "KDPM2AncestralDiscreteScheduler"),
        Sampler("deis", "DEIS", "DEISMultistepScheduler"),
        Sampler("lcm", "LCM", "LCMScheduler", uses_spacing=False),
        Sampler("tcd", "TCD", "TCDScheduler", default_eta=0.3, uses_spacing=False),
    )
}


def sampler_names() -> list[str]:
    return list(SAMPLERS)


def build_scheduler(name: str, base_config: Any, spacing: str = "", *, default_class: str = "") -> Any:
    """A scheduler instance for ``name`` ("" = ``default_class``, the model's own) derived from the
    model's scheduler config, with ``spacing`` as its ``timestep_spacing`` when given."""
    sampler = SAMPLERS.get(name)
    cls = getattr(diffusers, sampler.class_name if sampler else default_class)
    options = dict(sampler.options) if sampler else {}
    if spacing:
        options["timestep_spacing"] = spacing
    return cls.from_config(base_config, **options)


def class_of(name: str, default_class: str) -> str:
    """The scheduler class a sampler name runs ("" = the model's own ``default_class``)."""
    return SAMPLERS[name].class_name if name else default_class


@functools.cache
def step_takes_eta(class_name: str) -> bool:
    """Whether ``class_name.step`` has an ``eta`` parameter (DDIM, TCD): what diffusers pipelines
    check before passing ``eta`` on. False for an unknown class."""
    cls = getattr(diffusers, class_name, None) if class_name else None
    return cls is not None and "eta" in inspect.signature(cls.step).parameters


def ignores_spacing(class_name: str) -> bool:
    """Schedulers that choose their own timesteps whatever ``timestep_spacing`` says."""
    return any(s.class_name == class_name and not s.uses_spacing for s in SAMPLERS.values())


def call_eta(name: str, eta: float, class_name: str) -> float | None:
    """The ``eta`` to pass to the pipeline call, or None to pass none (the pipeline's default).

    ``eta < 0`` means the member set none: the sampler's own default (TCD 0.3) applies. Passed only
    when the scheduler's step takes it."""
    if not step_takes_eta(class_name):
        return None
    if eta >= 0:
        return eta
    sampler = SAMPLERS.get(name) if name else next((s for s in SAMPLERS.values() if s.class_name == class_name
                                                    and not s.options), None)
    return sampler.default_eta if sampler else None


def label_for(name: str, default_class: str, spacing: str = "") -> str:
    """The human label of a sampler name (or of the model's own scheduler when ``name`` is empty),
    followed by the timestep spacing when one was asked for and the scheduler uses it:
    ``DDIM trailing``."""
    if name:
        label = SAMPLERS[name].label
    else:
        label = next((s.label for s in SAMPLERS.values() if s.class_name == default_class and not s.options),
                     default_class.removesuffix("Scheduler"))
    if label and spacing and not ignores_spacing(class_of(name, default_class)):
        label = f"{label} {spacing}"
    return label
