"""The ControlNet part of one text-to-image batch: which pipeline runs it, and each image's map.

A batch whose jobs have a ``control_mode`` (the batch key makes them agree on it and on the
strength) runs on that mode's ControlNet pipeline with one map per image: jobs with different
pictures batch together and each gets the image it gets alone. Each job's map goes with its result
(``JobResult.extras``) so the member sees what the model followed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from inference.control.preprocess import OPENCV, control_map
from inference.jobs import JobError, TextToImageJob
from inference.loader import LoadedModel
from inference.prepare import PreparedJob

EXTRA_LABEL = "control"


@dataclass(frozen=True)
class ControlCall:
    """The pipeline to call instead of the plain one, its extra arguments, and each job's extras."""

    pipe: Any
    kwargs: dict[str, Any]
    extras: dict[str, tuple[tuple[str, Any], ...]] = field(default_factory=dict)
    flagged: dict[str, bool] = field(default_factory=dict)  # job id -> the safety checker flagged its map


def control_call(model: LoadedModel, batch: Sequence[PreparedJob], plain: Any) -> ControlCall | None:
    """None for a batch without control; else its ControlNet pipeline (with ``plain``'s sampler:
    LoRA switches act on the modules both share) and ``image``/``controlnet_conditioning_scale``."""
    first = batch[0].job
    if not isinstance(first, TextToImageJob) or not first.control_mode:
        return None
    control = model.controls.get(first.control_mode)
    if control is None:  # the config changed between the request and its turn
        modes = ", ".join(model.controls) or "none"
        raise JobError(f"Model {model.name} has no ControlNet for {first.control_mode} any more (it has: {modes}).")
    control.pipe.scheduler = plain.scheduler
    # A map a member made (pose, depth without an estimator) is their own picture, resized: nothing to
    # learn from seeing it again, and posting it would show an upload Discord never showed the channel.
    shown = first.control_mode in OPENCV or control.estimator is not None
    maps: list[Any] = []
    pictures: dict[str, Any] = {}
    for prepared in batch:
        job = prepared.job
        assert isinstance(job, TextToImageJob)
        if prepared.control_image is None:
            raise JobError("The control picture of this job could not be read any more.")
        picture = control_map(first.control_mode, prepared.control_image, (job.width, job.height), control.estimator)
        maps.extend([picture] * job.count)
        pictures[job.job_id] = picture
    extras: dict[str, tuple[tuple[str, Any], ...]] = {}
    flagged: dict[str, bool] = {}
    if shown:
        # A shown map is posted with the result, so it is judged like one: where the model has a safety
        # checker, a flagged map makes the whole result NSFW (spoilered or withheld by the channel's policy).
        for job_id, is_flagged in zip(pictures, map_flags(control.pipe, list(pictures.values())), strict=True):
            extras[job_id] = ((EXTRA_LABEL, pictures[job_id]),)
            flagged[job_id] = is_flagged
    return ControlCall(control.pipe, {"image": maps, "controlnet_conditioning_scale": first.control_strength},
                       extras, flagged)


def map_flags(pipe: Any, maps: Sequence[Any]) -> list[bool]:
    """The safety checker's verdict on each map (all False when the model has no checker)."""
    if getattr(pipe, "safety_checker", None) is None or not maps:
        return [False] * len(maps)
    import numpy as np
    import torch

    pixels = np.stack([np.asarray(m.convert("RGB"), dtype=np.float32) / 255.0 for m in maps])
    with torch.inference_mode():
        _, flags = pipe.run_safety_checker(pixels, pipe._execution_device, pipe.safety_checker.dtype)
    return [bool(f) for f in (flags or [False] * len(maps))]
