"""Deciding by measurement whether batching pays for a kind of job on this device.

On a big GPU, 4 SD-1.5 images at 512 px in one call take about half the time of 4 calls; on a
CPU at 256 px and above it gains nothing and makes the first image wait for the last. The policy
keeps the measured seconds per image for single and batched runs of each shape and batches only
where the batched figure is clearly better. With no figure yet for batching it tries once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from inference.jobs import DiffusionJob, Job

GAIN_NEEDED = 0.95  # batched per-image time must be under 95% of single to be worth the wait
SMOOTHING = 0.3


def shape_key(job: Job) -> tuple[object, ...]:
    if isinstance(job, DiffusionJob):
        return (job.kind, job.model, job.width, job.height, job.steps)
    return (job.kind,)


@dataclass
class BatchPolicy:
    max_batch: int = 4
    single: dict[tuple[object, ...], float] = field(default_factory=dict)
    batched: dict[tuple[object, ...], float] = field(default_factory=dict)

    def batch_size(self, job: Job) -> int:
        """How many jobs like this one to run together (1 = alone)."""
        if self.max_batch <= 1 or job.batch_key() is None:
            return 1
        key = shape_key(job)
        if key not in self.single:
            return 1  # measure a single run first
        if key not in self.batched:
            return self.max_batch  # then try a batch once
        return self.max_batch if self.batched[key] < GAIN_NEEDED * self.single[key] else 1

    def record(self, job: Job, batch_len: int, seconds_per_image: float) -> None:
        table = self.single if batch_len == 1 else self.batched
        key = shape_key(job)
        old = table.get(key)
        table[key] = seconds_per_image if old is None else (1 - SMOOTHING) * old + SMOOTHING * seconds_per_image
