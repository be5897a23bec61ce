"""Batches taken from the fair queue that the GPU thread has not started yet, kept fair until it does.

The engine takes the next batch early, so the GPU thread never waits for it (pipelining,
:mod:`inference.engine`): while batch N runs, batch N+1 fills with companions, has its inputs read
and is queued on the thread. Taken early is not chosen for good: until the thread starts it, the
take is provisional. Whenever a job arrives, :meth:`Handover.keep_fair` asks the queue whether each
such batch is still what the fair order would take next; if a member whose turn comes first
submitted meanwhile, the batch is withdrawn (from the executor, if it was handed over: its prepared
inputs are dropped), its jobs go back to their places in the queue, and the engine takes the fair
batch instead. The GPU thread keeps its queued batch the whole time unless the order changed, and
then gets the new one a few turns of the event loop later, normally long before the batch it is
running ends.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from inference.jobs import Job
from inference.scheduler import FairQueue


@dataclass(eq=False)
class Batch:
    """Jobs taken for one pipeline call: filling with companions, having inputs read, or handed over."""

    jobs: list[Job] = field(default_factory=list)
    handed: Future[Any] | None = None  # the executor's future, once handed over
    withdrawn: bool = False  # given back to the queue before it started: drop it, take the fair one


class Handover:
    """The batches taken and not started, oldest first (at most one with the GPU executor)."""

    def __init__(self, queue: FairQueue, executor: Any, forget: Callable[[Job], None]) -> None:
        self.queue = queue
        self.executor = executor
        self._forget = forget  # the engine drops a withdrawn job from its in-flight records
        self._batches: list[Batch] = []

    def take(self, job: Job) -> Batch:
        """A new batch whose first job was just taken from the queue."""
        batch = Batch([job])
        self._batches.append(batch)
        return batch

    def batch_of(self, job_id: str) -> Batch | None:
        return next((b for b in self._batches if any(j.job_id == job_id for j in b.jobs)), None)

    def started(self, job_id: str) -> None:
        """The GPU thread started this job (so its whole batch): its take is final."""
        batch = self.batch_of(job_id)
        if batch is not None:
            self._batches.remove(batch)
        self.queue.start(job_id)

    def ended(self, batch: Batch) -> None:
        """The batch's outcome arrived (its jobs may have ended without starting: cancelled, unreadable)."""
        if batch in self._batches:
            self._batches.remove(batch)

    def keep_fair(self) -> None:
        """Withdraw the first batch that the fair order no longer takes next, and every batch
        taken after it (call after jobs were added to the queue)."""
        for batch in self._batches:
            if not self.queue.is_fair(batch.jobs):
                self.withdraw_from(batch)
                return

    def withdraw_from(self, batch: Batch) -> bool:
        """Give back this batch and every batch taken after it, newest first, as far as none has
        started. True when ``batch`` itself was given back."""
        later = self._batches[self._batches.index(batch):]
        for b in reversed(later):
            if not self._withdraw(b):
                return False  # it started, and so did every batch queued on the thread before it
        return True

    def _withdraw(self, batch: Batch) -> bool:
        if batch.handed is not None:
            withdraw = getattr(self.executor, "withdraw", None)  # a remote executor starts what it gets
            if withdraw is None or not withdraw(batch.handed):
                return False
        batch.withdrawn = True
        self._batches.remove(batch)
        for job in batch.jobs:
            self._forget(job)
        self.queue.give_back(batch.jobs)
        return True
