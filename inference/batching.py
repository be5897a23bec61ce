"""Deciding by measurement whether batching pays for a kind of job on this device.

On a big GPU, 4 SD-1.5 images at 512 px in one call take about half the time of 4 calls; on a
CPU at 256 px and above it gains little and makes the first image wait for the last. The policy
keeps the measured seconds per image for single and batched runs of each shape (kind, model,
size, steps) and batches only where the batched figure is clearly better, so batching never
makes the device slower than single runs. One policy belongs to one engine, which serves one
device: the figures are that device's.

Where a figure is missing the policy measures: a single run first, then one batch. The engine's
warm-up can take both measurements for the default shape at start-up (:meth:`Engine.start`).
Because a machine's speed drifts (other processes, clocks, a noisy first measurement), the
losing choice is measured again once every :data:`REPROBE_EVERY` decisions for that shape. Each
such run costs a little (a job run alone where batches pay, or a batch where they do not), so
every time the new figure confirms the decision the interval doubles, up to :data:`REPROBE_MAX`;
a figure that changes the decision brings it back to :data:`REPROBE_EVERY`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from inference.jobs import DiffusionJob, Job

GAIN_NEEDED = 0.95  # batched per-image time must be under 95% of single to be worth the wait
SMOOTHING = 0.3
REPROBE_EVERY = 50
REPROBE_MAX = 800

Shape = tuple[object, ...]


def shape_key(job: Job) -> Shape:
    if isinstance(job, DiffusionJob):
        return (job.kind, job.model, job.width, job.height, job.steps)
    return (job.kind,)


@dataclass
class BatchPolicy:
    max_batch: int = 4
    device: str = "cpu"
    single: dict[Shape, float] = field(default_factory=dict)  # shape -> seconds per image, one job per call
    batched: dict[Shape, float] = field(default_factory=dict)  # shape -> seconds per image, several jobs
    _since_probe: dict[Shape, int] = field(default_factory=dict, repr=False)
    _probe_every: dict[Shape, int] = field(default_factory=dict, repr=False)
    _probing: dict[Shape, bool] = field(default_factory=dict, repr=False)  # the decision before a re-measurement

    def batch_size(self, job: Job) -> int:
        """How many jobs like this one to run together (1 = alone)."""
        if self.max_batch <= 1 or job.batch_key() is None:
            return 1
        key = shape_key(job)
        if key not in self.single:
            return 1  # measure a single run first
        if key not in self.batched:
            return self.max_batch  # then try a batch once
        pays = self.pays(job)
        count = self._since_probe.get(key, 0) + 1
        if count >= self._probe_every.get(key, REPROBE_EVERY):
            self._since_probe[key] = 0
            self._probing[key] = bool(pays)
            pays = not pays  # measure the losing choice again
        else:
            self._since_probe[key] = count
        return self.max_batch if pays else 1

    def pays(self, job: Job) -> bool | None:
        """Whether batching is measured to pay for this shape (None: not measured both ways yet)."""
        key = shape_key(job)
        if key not in self.single or key not in self.batched:
            return None
        return self.batched[key] < GAIN_NEEDED * self.single[key]

    def record(self, job: Job, batch_len: int, seconds_per_image: float) -> None:
        """Add a measurement: ``batch_len`` jobs ran in one call at ``seconds_per_image``."""
        if seconds_per_image <= 0:
            return
        table = self.single if batch_len == 1 else self.batched
        key = shape_key(job)
        decided = self.pays(job)
        old = table.get(key)
        table[key] = seconds_per_image if old is None else (1 - SMOOTHING) * old + SMOOTHING * seconds_per_image
        pays = self.pays(job)
        probed = self._probing.get(key)
        if probed is not None and (batch_len == 1) == probed:  # a figure for the choice that was losing
            del self._probing[key]
            if pays == probed:
                self._probe_every[key] = min(REPROBE_MAX, 2 * self._probe_every.get(key, REPROBE_EVERY))
        if decided is not None and pays != decided:
            self._probe_every[key] = REPROBE_EVERY

    def summary(self) -> list[dict[str, object]]:
        """Every measured shape with both figures and the decision, for benches and ``/admin``."""
        rows: list[dict[str, object]] = []
        for key in sorted(set(self.single) | set(self.batched), key=str):
            single, batched = self.single.get(key), self.batched.get(key)
            decided = None if single is None or batched is None else batched < GAIN_NEEDED * single
            rows.append({"device": self.device, "shape": key, "single_s_per_image": single,
                         "batched_s_per_image": batched, "batching": decided})
        return rows
