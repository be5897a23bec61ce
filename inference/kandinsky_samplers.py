"""What Kandinsky 2.2 can take: its samplers, /paint only with an inpainting decoder and no
strength, no seamless tiles (no torch here: validation asks before a job is queued).

diffusers' Kandinsky 2.2 pipelines never call ``scheduler.scale_model_input``. Samplers built on
sigmas (Euler, Euler a, Heun, LMS, KDPM2) need it to divide the UNet's input by ``sqrt(sigma² + 1)``;
without it their images are noise. DDPM (the decoder's own), DDIM, DPM++, UniPC, PNDM and the
like scale nothing and work.
"""

from __future__ import annotations

from inference.samplers import SAMPLERS

NO_INPAINT = ("This Kandinsky 2.2 model cannot paint into part of an image: that needs its inpainting "
              "decoder, which the admins have not configured. /imagine and /vary still work.")
INPAINT_STRENGTH = ("Kandinsky 2.2 always repaints the masked area in full, so it takes no strength; "
                    "leave the strength option out.")
# Its MoVQ decoder and UNet are not made seamless (inference/seamless.py serves SD and SDXL).
TILE_KANDINSKY = ("Seamless tiles (`tile`) work with Stable Diffusion models only, not with this Kandinsky 2.2 model: "
                  "pick another `model`, or leave `tile` out.")

NEEDS_INPUT_SCALING = frozenset({
    "EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler", "HeunDiscreteScheduler", "LMSDiscreteScheduler",
    "KDPM2DiscreteScheduler", "KDPM2AncestralDiscreteScheduler",
})


def kandinsky_sampler_error(name: str) -> str:
    """A member-facing refusal for sampler ``name`` on Kandinsky 2.2, or "" when it works."""
    sampler = SAMPLERS.get(name)
    if sampler is None or sampler.class_name not in NEEDS_INPUT_SCALING:
        return ""
    usable = ", ".join(n for n, s in SAMPLERS.items() if s.class_name not in NEEDS_INPUT_SCALING)
    return f"The {sampler.label} sampler does not work with Kandinsky 2.2 models. Leave it out, or pick one of: {usable}."
