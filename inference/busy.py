"""How much of the wall time an executor spent running batches (the GPU thread's, or a remote one's)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BusyStats:
    """How much of the wall time the inference thread spent running batches.

    ``wall_s`` runs from the start of the first batch (since the last reset) to now, or to the end
    of the last batch when the thread is idle with nothing queued: gaps between batches count as
    idle, the quiet time after the work ran out does not.
    """

    busy_s: float
    wall_s: float
    batches: int
    cpu_s: float = 0.0  # the thread's own CPU time inside finished batches (time.thread_time)
    finished_busy_s: float = 0.0  # busy_s without the batch running now, to compare with cpu_s

    @property
    def fraction(self) -> float:
        return min(1.0, self.busy_s / self.wall_s) if self.wall_s > 0 else 0.0

    @property
    def on_cpu_fraction(self) -> float:
        """Of the time inside batches, the share the thread was running rather than waiting for
        the GIL or a core. With one torch thread a raw loop is ~1.0; what is missing is what the
        rest of the process took from the GPU thread (independent of the machine's speed)."""
        return min(1.0, self.cpu_s / self.finished_busy_s) if self.finished_busy_s > 0 else 0.0
