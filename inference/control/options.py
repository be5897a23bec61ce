"""A member's control options checked against the model (no torch: runs on the event loop).

The mode may be left out when the model has one ControlNet; the strength defaults to the one its
admin configured. Every refusal names what would work."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from inference.jobs import JobError
from inference.presets import KANDINSKY

MAX_STRENGTH = 2.0


def control_params(model: str, family: str, modes: Mapping[str, float], *, image: str | None = None, mode: str | None = None,
                   strength: float | None = None) -> dict[str, Any]:
    """The ``TextToImageJob`` control fields for ``image`` (an input file path, None = none) on
    ``model``, whose ControlNets ``modes`` maps to their default strengths."""
    mode = (mode or "").strip().lower()
    if not image:
        if mode or strength is not None:
            raise JobError("`control_mode` and `control_strength` go with a control picture: attach one with "
                           "`control`.")
        return {}
    if family == KANDINSKY:
        raise JobError(f"Model {model} (Kandinsky 2.2) cannot follow a control picture; pick another model.")
    if not modes:
        raise JobError(f"Model {model} has no ControlNet, so it cannot follow a control picture; pick another model "
                       "(an admin adds ControlNets in easel.toml).")
    listed = ", ".join(modes)
    if not mode:
        if len(modes) > 1:
            raise JobError(f"Say how model {model} should follow the picture: pick a `control_mode` ({listed}).")
        mode = next(iter(modes))
    if mode not in modes:
        raise JobError(f"Model {model} has no ControlNet for {mode!r}; its modes are: {listed}.")
    if strength is not None and not 0.0 <= strength <= MAX_STRENGTH:
        raise JobError(f"The control strength must be between 0 and {MAX_STRENGTH:g}.")
    return {"control_image": image, "control_mode": mode,
            "control_strength": float(modes[mode] if strength is None else strength)}
