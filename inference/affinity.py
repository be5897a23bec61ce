"""Model affinity: the fair queue prefers jobs for the model already on the device, within a bound.

Switching models costs a copy from CPU RAM or a load from disk (inference/residency.py), so mixed
requests from several members thrash. The engine tells the queue which model will be on the
device when the next batch runs (:class:`DevicePreference`); when the job due next in fair order
needs another model and a waiting job uses that one, the queue takes that job (the first such in
fair order) instead. A job is passed over this way at most ``queue.affinity_skips`` times; then it
goes next regardless. The member passed over keeps their turn (the queue's turn bookkeeping,
inference/scheduler.py). Jobs without a model (anime, upscale, describe) are never preferred nor
passed over. With no preference (a switch costs nothing, a remote or cluster backend) the queue
hands out jobs exactly in fair order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from config import Config
from inference.jobs import DiffusionJob, Job, UpscaleJob

MAX_AFFINITY_SKIPS = 10


def model_of(job: Job) -> str | None:
    """The model a job runs on, as the job names it ("" = the default one); None for a job without one."""
    return job.model if isinstance(job, DiffusionJob) else None


def device_model_of(job: Job) -> str | None:
    """The model a job puts on the device: a diffusion job's, and a creative upscale's (its
    image-to-image pass, inference/upscale/runner.py); None for a job that leaves it as it was."""
    if isinstance(job, UpscaleJob) and job.mode == "creative":
        return job.model
    return model_of(job)


def pick(fair: Iterable[Job], preferred: frozenset[str], skips: Mapping[str, int], bound: int) -> tuple[Job, Job | None]:
    """The job to take next from the fair order ``fair`` (not empty; read only as far as needed), and
    the job it passes over (None when it is the fair order's first): the first job using a preferred
    model, when the first job needs another one and has been passed over fewer than ``bound`` times."""
    fair = iter(fair)
    head = next(fair)
    model = model_of(head)
    if not preferred or model is None or model in preferred or skips.get(head.job_id, 0) >= bound:
        return head, None
    instead = next((job for job in fair if model_of(job) in preferred), None)
    return (head, None) if instead is None else (instead, head)


def model_names(config: Config, name: str) -> frozenset[str]:
    """Every name a job may give the configured model ``name``: its display name, and "" when it
    is the default model."""
    for m in config.all_models:
        if m.display_name == name or (not name and m is config.model):
            return frozenset({m.display_name, ""}) if m is config.model else frozenset({m.display_name})
    return frozenset({name})


def held_preference(config: Config, held: Any, heading: str | None) -> frozenset[str]:
    """:meth:`GpuExecutor.preferred_models` from its :class:`~inference.residency.Residency` ``held``
    and ``heading``, the model of the batch it started last: that model's names when running another
    one costs a switch (a copy from RAM onto an accelerator, or a load from disk where fewer models
    stay loaded than are configured), else none."""
    active = held.active
    name = heading if heading is not None else (active.name if active is not None else None)
    moves = active is not None and active.device.type != "cpu" and not held.offload
    drops = 0 < held.limit < len(config.all_models)
    if name is None or len(config.all_models) < 2 or not (moves or drops):
        return frozenset()
    return model_names(config, name)


class DevicePreference:
    """What the engine tells the fair queue to prefer: the model the device will hold when the next
    batch runs. That is the model of the newest job taken for the GPU thread and not started yet,
    else the one the executor is on (``preferred_models()``: empty when switching costs nothing, and
    then nothing is preferred). Between two such updates the queue follows its own takes (a job
    taken for another model makes that model the preferred one)."""

    def __init__(self, config: Config, executor: Any) -> None:
        self.config = config
        self.executor = executor

    def names(self, model: str) -> frozenset[str]:
        return model_names(self.config, model)

    def now(self, next_up: Sequence[Job]) -> frozenset[str]:
        read = getattr(self.executor, "preferred_models", None)  # stand-in executors of tests may lack it
        device: frozenset[str] = read() if read is not None else frozenset()
        if not device:
            return frozenset()
        model = next((m for m in map(device_model_of, reversed(next_up)) if m is not None), None)
        return device if model is None else self.names(model)
