"""Checking /imagine's ``style_ref`` options (no torch here: validation runs on the event loop).

A style reference needs an IP-Adapter configured for the model (``[model.ip_adapter]``,
inference/style_ref.py); every refusal is one private line for the member."""

from __future__ import annotations

from typing import Any, Protocol

from inference.jobs import JobError
from inference.presets import KANDINSKY, ModelPreset

NO_STYLE_REF = "This model has no style reference configured; ask an admin (or pick another `model`)."
KANDINSKY_STYLE_REF = "Kandinsky 2.2 models take no style reference; pick another `model` or leave `style_ref` out."
STRENGTH_RANGE = "The style reference strength (`style_ref_strength`) must be between 0 and 1."
STRENGTH_ALONE = "`style_ref_strength` needs a `style_ref` picture: add one, or leave the strength out."


class StyleRefModel(Protocol):
    """What of a model's ModelInfo this needs."""

    preset: ModelPreset
    style_ref: bool
    style_strength: float


def style_ref_params(info: StyleRefModel, style_image: str | None, strength: float | None) -> dict[str, Any]:
    """The job fields of a style reference (``{}`` without one: None), or a JobError for the member."""
    if style_image is None:
        if strength is not None:
            raise JobError(STRENGTH_ALONE)
        return {}
    if info.preset.family == KANDINSKY:
        raise JobError(KANDINSKY_STYLE_REF)
    if not info.style_ref:
        raise JobError(NO_STYLE_REF)
    value = info.style_strength if strength is None else strength
    if not 0.0 <= value <= 1.0:
        raise JobError(STRENGTH_RANGE)
    return {"style_image": style_image, "style_strength": float(value)}
