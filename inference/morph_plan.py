"""The plan of a morph's frames, without torch: strengths, prompt mix weights, and steps.

Shared by the validation of /morph (on the event loop) and the frames' torch work
(inference/morph.py).
"""

from __future__ import annotations

from inference.jobs import JobError

NO_KANDINSKY = "Morphs are not available for Kandinsky models yet."


def strengths(start: float, end: float, frames: int) -> list[float]:
    """``frames`` strengths rising evenly from ``start`` to ``end`` (both included)."""
    if frames < 2:
        return [start]
    return [start + (end - start) * i / (frames - 1) for i in range(frames)]


def mix_weights(frames: int) -> list[float]:
    """How far each frame of a prompt morph is from the first prompt (0) to the second (1)."""
    return [i / (frames - 1) for i in range(frames)] if frames > 1 else [0.0]


def steps_run(steps: int, strength: float) -> int:
    """The denoising steps diffusers' image-to-image runs at ``strength`` (its ``get_timesteps``)."""
    return min(int(steps * strength), steps)


def distinct_starts(steps: int, start: float, end: float, frames: int, max_steps: int) -> int:
    """The fewest steps, at least ``steps``, at which every frame of the sweep runs at least one step
    and no two frames run the same number (which would make them the same picture). At most
    ``max_steps``: there (as many distinct frames as the model allows), neighbouring frames may repeat. Raises JobError when even ``max_steps``
    leaves the first frame without a step."""
    plan = strengths(start, end, frames)
    for n in range(max(1, steps), max(steps, max_steps) + 1):
        runs = [steps_run(n, s) for s in plan]
        if runs[0] >= 1 and len(set(runs)) == len(runs):
            return n
    fewest = next((n for n in range(max(1, steps), max(steps, max_steps) + 1) if steps_run(n, start) >= 1), None)
    if fewest is None:
        raise JobError(f"`from` {start:g} is too low for this model (at most {max_steps} steps): "
                       f"start at {1 / max_steps:.2f} or more.")
    return max(steps, max_steps)
