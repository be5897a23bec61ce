"""Turning /morph's options (or a result's 🎞️ button) into a valid :class:`MorphJob`, or one clear JobError.

A strength sweep needs enough steps for every frame to start at a timestep of its own: diffusers
runs ``int(steps * strength)`` of the schedule, so two frames whose strengths give the same number
would be the same picture. The steps are raised (within the model's limit) until they differ, and
the member is told.
"""

from __future__ import annotations

import math

from inference.jobs import JobError, MorphJob
from inference.morph_plan import NO_KANDINSKY, distinct_starts
from inference.presets import KANDINSKY
from inference.validation import Draft, ModelInfo, _common, clean_text, fit_source_size, token_note

MIN_FRAMES = 2
MAX_FRAMES = 16
DEFAULT_FRAMES = 8
DEFAULT_FROM = 0.1
DEFAULT_TO = 0.9
MIN_STRENGTH = 0.05

NEEDS_A_SOURCE = ("A morph needs an `image` (a strength sweep of it) or a `to_prompt` (a morph from `prompt` "
                  "to `to_prompt`).")
NO_STRENGTHS = ("`from` and `to` are the strengths of an image sweep; a prompt morph has none (its frames move "
                "from `prompt` to `to_prompt`): leave them out.")
NOT_BOTH = "Give either an `image` or a `to_prompt`, not both: a morph sweeps one image, or moves between two prompts."


def default_from(max_steps: int) -> float:
    """The first frame's strength when the member gives none: 0.1, or the lowest strength at which a
    model of few steps (a Turbo model runs at most 8) still gives that frame one step."""
    return max(DEFAULT_FROM, math.ceil(100 / max(1, max_steps)) / 100)


def build_morph(job_id: str, owner: int, info: ModelInfo, *, init_image: str | None = None,
                source_size: tuple[int, int] | None = None, prompt: str | None = None,
                to_prompt: str | None = None, frames: int | None = None, strength_from: float | None = None,
                strength_to: float | None = None, seed: int | None = None, steps: int | None = None,
                guidance: float | None = None, negative: str | None = None, scheduler: str | None = None,
                spacing: str | None = None, eta: float | None = None,
                loras: list[tuple[str, float]] | None = None, max_prompt_chars: int = 1000) -> Draft:
    if info.preset.family == KANDINSKY:
        raise JobError(NO_KANDINSKY)
    count = DEFAULT_FRAMES if frames is None else frames
    if not MIN_FRAMES <= count <= MAX_FRAMES:
        raise JobError(f"A morph has {MIN_FRAMES} to {MAX_FRAMES} frames (you asked for {count}).")
    target = clean_text(to_prompt, limit=max_prompt_chars, what="to_prompt", required=False)
    if init_image is not None and target:
        raise JobError(NOT_BOTH)
    if init_image is None and not target:
        raise JobError(NEEDS_A_SOURCE)
    params, notes = _common(info, prompt=prompt, negative=negative, steps=steps, guidance=guidance, seed=seed,
                            count=1, scheduler=scheduler, spacing=spacing, eta=eta, loras=loras,
                            max_prompt_chars=max_prompt_chars,
                            prompt_required=init_image is None, weighted=False)  # morphs take plain text
    preset = info.preset
    if init_image is None:  # a prompt morph: the two prompts' text-to-image at the model's size
        if strength_from is not None or strength_to is not None:
            raise JobError(NO_STRENGTHS)
        note = token_note(info.tokenizer, target, "to_prompt")
        return Draft(MorphJob(job_id=job_id, owner=owner, width=preset.size, height=preset.size, to_prompt=target,
                              frames=count, **params), tuple(notes + ([note] if note else [])))
    start = default_from(preset.max_steps) if strength_from is None else strength_from
    end = DEFAULT_TO if strength_to is None else strength_to
    for value in (start, end):
        if not MIN_STRENGTH <= value <= 1.0:
            raise JobError(f"Morph strengths go from {MIN_STRENGTH} to 1 (you gave {value:g}).")
    if start >= end:
        raise JobError(f"`from` ({start:g}) must be below `to` ({end:g}): the morph moves away from the image.")
    asked = params["steps"]
    params["steps"] = distinct_starts(asked, start, end, count, preset.max_steps)
    if params["steps"] != asked:
        notes.append(f"Steps raised from {asked} to {params['steps']} so that every frame differs from the last.")
    width, height = fit_source_size(preset, source_size or (preset.size, preset.size))
    return Draft(MorphJob(job_id=job_id, owner=owner, width=width, height=height, init_image=init_image,
                          strength_from=float(start), strength_to=float(end), frames=count, **params), tuple(notes))
