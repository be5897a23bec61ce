"""Turning a result's Zoom out / Pan button into a valid :class:`InpaintJob`, or one clear JobError.

A zoom or pan is an inpainting job whose init image is the grown canvas and whose mask covers the
new area (inference/imaging/outpaint.py): it runs at the canvas size itself (already within the
model's limits, multiples of 8), so the original's pixels are never resampled on the way in, and
the inpainting path pastes them back exactly wherever the mask keeps them.
"""

from __future__ import annotations

from inference.jobs import InpaintJob, JobError
from inference.validation import Draft, ModelInfo, _common

OUTPAINT_STRENGTH = 1.0  # the new area starts from noise (and Kandinsky 2.2 takes nothing else)

NO_INPAINT = ("Zoom out and pan paint the new border by inpainting, which this Kandinsky 2.2 model cannot do: "
              "its inpainting decoder is not configured. /imagine and /vary still work.")
REMOTE = ("Zoom out and pan are not available on this bot: they paint the new border by inpainting, which its "
          "image service cannot do. /imagine and /vary still work.")
NOT_A_STILL = "Only a still image made from a prompt can be zoomed out or panned."


def build_outpaint(job_id: str, owner: int, info: ModelInfo, *, init_image: str, mask_image: str,
                   canvas_size: tuple[int, int], prompt: str, negative: str = "", seed: int, steps: int,
                   guidance: float, scheduler: str = "", spacing: str = "", eta: float = -1.0,
                   loras: tuple[tuple[str, float], ...] = (), note: str = "", can_inpaint: bool = True,
                   max_prompt_chars: int = 1000) -> Draft:
    """The source job's prompt, negative, seed, sampler and LoRAs on the grown canvas. ``note``
    (how the canvas was made, e.g. scaled down) is shown with the result. ``can_inpaint``: False
    for a Kandinsky model without its inpainting decoder."""
    if not can_inpaint:
        raise JobError(NO_INPAINT)
    width, height = canvas_size
    if width % 8 or height % 8 or max(width, height) > info.preset.max_size:
        raise ValueError(f"a {width}x{height} canvas does not fit {info.name}: plan it with its max_size")
    params, notes = _common(info, prompt=prompt, negative=negative, steps=min(steps, info.preset.max_steps),
                            guidance=guidance, seed=seed, scheduler=scheduler or None, spacing=spacing or None,
                            eta=eta if eta >= 0 else None, loras=list(loras) or None,
                            max_prompt_chars=max_prompt_chars, prompt_required=False)
    return Draft(InpaintJob(job_id=job_id, owner=owner, width=width, height=height, init_image=init_image,
                            mask_image=mask_image, strength=OUTPAINT_STRENGTH, note=note, **params), tuple(notes))
