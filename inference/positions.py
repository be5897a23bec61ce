"""What members are told while their jobs wait: the order jobs will start in, positions and ETAs.

A part of :class:`inference.engine.Engine` (which holds the state these methods read), kept in its
own module. Jobs taken for the GPU thread that have not started are waiting too, first in line:
members see them as next, not as running, until the thread starts them.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Callable

from inference.eta import EtaEstimator
from inference.jobs import Job, JobEvent, Queued
from inference.scheduler import FairQueue

ETA_FIELDS = ("kind", "model", "width", "height", "steps", "count", "strength")


def eta_key(job: Job) -> str:
    """Jobs with the same key take about the same time.

    Read from the attributes, not ``to_params()``: this runs for every waiting job on every queue
    change, on the event loop, and a deep copy per job there would steal time from the GPU thread.
    """
    return ":".join(str(getattr(job, k, "")) for k in ETA_FIELDS)


POSITIONS_EVERY_S = 0.25


class QueueView:
    """Positions and ETAs of an :class:`~inference.engine.Engine` (mixed into it)."""

    ETA_KEYS_KEPT = 10_000  # a bound on the per-job eta key cache (the queue caps waiting jobs far lower)

    # Set by Engine.__init__ (and start()).
    queue: FairQueue
    eta: EtaEstimator
    _began: dict[str, float]  # job id -> when the GPU thread started it (monotonic)
    _eta_keys: dict[str, str]
    _positions: dict[str, tuple[int, int]]
    _positions_held: bool
    _positions_due: bool
    _positions_at: float
    _queue_changed: asyncio.Event
    _loop: asyncio.AbstractEventLoop | None
    _context: contextvars.Context
    _emit: Callable[[JobEvent], None]

    def waiting(self) -> list[Job]:
        """Jobs not started, in the order they will start: those taken for the GPU thread first."""
        return self.queue.next_up() + self.queue.order()

    def running(self) -> list[Job]:
        """Jobs started on the GPU thread and not ended."""
        return self.queue.started()

    def position(self, job_id: str) -> tuple[int, int, float] | None:
        """``(position, queue length, eta seconds)`` of a job not started yet, or None. One pass over
        the waiting order (asked on every submit, with a backlog of any length)."""
        order = self.waiting()
        eta = sum(self._remaining(j) for j in self.running())
        for pos, job in enumerate(order, start=1):
            if job.job_id == job_id:
                return pos, len(order), eta
            eta += self.eta.estimate(self._eta_key(job))
        return None

    def positions(self) -> dict[str, tuple[int, int, float]]:
        """:meth:`position` of every job not started, in one pass (for updating many at once)."""
        order = self.waiting()
        eta = sum(self._remaining(j) for j in self.running())
        places: dict[str, tuple[int, int, float]] = {}
        for pos, job in enumerate(order, start=1):
            places[job.job_id] = (pos, len(order), eta)
            eta += self.eta.estimate(self._eta_key(job))
        return places

    def _eta_key(self, job: Job) -> str:
        """:func:`eta_key`, worked out once per job: positions and ETAs ask for every waiting job
        again and again while it waits."""
        key = self._eta_keys.get(job.job_id)
        if key is None:
            if len(self._eta_keys) > self.ETA_KEYS_KEPT:  # never reached by jobs that finish or are cancelled
                self._eta_keys.clear()
            key = self._eta_keys[job.job_id] = eta_key(job)
        return key

    def _remaining(self, job: Job) -> float:
        started = self._began.get(job.job_id)
        expected = self.eta.estimate(self._eta_key(job))
        return expected if started is None else max(0.0, expected - (time.monotonic() - started))

    def _on_queue_change(self) -> None:
        """Queue positions go out at most every POSITIONS_EVERY_S: with a backlog every dispatch
        moves every job, and telling all of them each time is O(n^2) work competing with the GPU
        thread (members see an edit every ~1.5 s anyway)."""
        self._queue_changed.set()
        if self._positions_held or self._positions_due:
            return
        if self._loop is None:  # not serving yet (tests, restore before start): publish at once
            self._publish_positions()
            return
        self._positions_due = True
        delay = max(0.0, self._positions_at + POSITIONS_EVERY_S - time.monotonic())
        self._loop.call_later(delay, self._publish_positions, context=self._context)

    def _publish_positions(self) -> None:
        self._positions_due = False
        self._positions_at = time.monotonic()
        order = self.waiting()
        total = len(order)
        fresh: dict[str, tuple[int, int]] = {}
        eta = sum(self._remaining(j) for j in self.running())
        for pos, job in enumerate(order, start=1):
            fresh[job.job_id] = (pos, total)
            if self._positions.get(job.job_id) != (pos, total):
                self._emit(Queued(job.job_id, pos, total, eta))
            eta += self.eta.estimate(self._eta_key(job))
        self._positions = fresh
