"""The fair queue: round-robin across members, with a per-member and a global cap.

Each member has their own FIFO; the queue serves members in turn, so one member's twenty jobs
never hold up another member's first. Turns go by who was served longest ago (never served
first, ties by arrival), and that memory outlives an empty lane: emptying your lane and
re-submitting does not jump you ahead of members who are still waiting. The order a member sees (``order()``) is the order ``get``
would hand jobs out if nothing else arrived. Lives on the event loop; not thread-safe.

A job taken for the GPU thread is *next* until the engine says it has ``start``ed (:meth:`next_up`).
Until then the take is provisional: when a member whose turn comes first submits meanwhile,
:meth:`is_fair` says so and the engine ``give_back``s the jobs, which undoes the take exactly
(place in the lane, the member's turn), so the newcomer's job goes first.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from inference.jobs import Job, QueueRefused

Listener = Callable[[], None]


@dataclass(frozen=True)
class _Taken:
    """A job taken and not started yet, with what its take changed (to undo it exactly)."""

    job: Job
    served: int | None  # its member's last turn before this take
    arrival: int  # when its member's lane was opened, before this take


class FairQueue:
    def __init__(self, *, per_user: int = 5, total: int = 100) -> None:
        if per_user < 1 or total < 1:
            raise ValueError("queue limits must be at least 1")
        self.per_user = per_user
        self.total = total
        self._lanes: dict[int, deque[Job]] = {}  # owner -> their waiting jobs, oldest first
        self._arrival: dict[int, int] = {}  # owner -> when their current lane was opened
        self._served: dict[int, int] = {}  # owner -> tick of the last time they got a turn
        self._tick = 0
        self._running: dict[str, Job] = {}  # taken: next (not started yet) or running
        self._next: dict[str, _Taken] = {}  # taken and not started, in the order they were taken
        self._listeners: list[Listener] = []
        self._changed = asyncio.Event()

    # ------------------------------------------------------------------ inspection

    def __len__(self) -> int:
        return sum(len(lane) for lane in self._lanes.values())

    def pending_for(self, owner: int) -> int:
        """Jobs of this member waiting or running (what the per-member cap counts)."""
        waiting = len(self._lanes.get(owner, ()))
        return waiting + sum(1 for j in self._running.values() if j.owner == owner)

    def running(self) -> list[Job]:
        """Jobs taken from the queue: next to start (:meth:`next_up`) or started."""
        return list(self._running.values())

    def next_up(self) -> list[Job]:
        """Taken jobs that have not started yet, in the order they will start."""
        return [taken.job for taken in self._next.values()]

    def started(self) -> list[Job]:
        return [job for job_id, job in self._running.items() if job_id not in self._next]

    def order(self) -> list[Job]:
        """Waiting jobs in the order they will run: one per member per round."""
        return _round_robin(self._lanes, self._served, self._arrival)

    def is_fair(self, jobs: Sequence[Job]) -> bool:
        """Whether these taken jobs (one batch, in the order they were taken) are still what the
        fair order would take next: with them, and every job taken after them, given back, the
        order starts with exactly these jobs. Jobs that started or ended meanwhile are left out."""
        ids = [job.job_id for job in jobs if job.job_id in self._next]
        if not ids:
            return True
        taken = list(self._next.values())
        first = next(i for i, t in enumerate(taken) if t.job.job_id == ids[0])
        lanes = {owner: list(lane) for owner, lane in self._lanes.items()}
        served, arrival = dict(self._served), dict(self._arrival)
        for t in reversed(taken[first:]):
            lanes.setdefault(t.job.owner, []).insert(0, t.job)
            _undo_turn(t, served, arrival)
        return [job.job_id for job in _round_robin(lanes, served, arrival)[:len(ids)]] == ids

    def position(self, job_id: str) -> int | None:
        """1-based place in :meth:`order`, or None when the job is not waiting."""
        for pos, job in enumerate(self.order(), start=1):
            if job.job_id == job_id:
                return pos
        return None

    # ------------------------------------------------------------------ changes

    def add_listener(self, listener: Listener) -> None:
        """Called after every change of the waiting order (to update positions shown to members)."""
        self._listeners.append(listener)

    def check_room(self, owner: int, *, also_mine: int = 0, also_total: int = 0) -> None:
        """Raise QueueRefused (member-facing) if ``put`` would refuse a job of this member, counting
        ``also_mine`` / ``also_total`` more jobs on their way in (places held for requests)."""
        if self.pending_for(owner) + also_mine >= self.per_user:
            raise QueueRefused(f"You already have {self.per_user} jobs in the queue. "
                               "Wait for one to finish, or cancel one with `/queue`.")
        if len(self) + also_total >= self.total:
            raise QueueRefused(f"The queue is full ({self.total} jobs). Please try again in a few minutes.")

    def put(self, job: Job) -> int:
        """Add a job; returns its 1-based position. Raises QueueRefused when a cap is reached."""
        if self._known(job.job_id):
            raise QueueRefused(f"Job `{job.job_id}` is already queued.")
        self.check_room(job.owner)
        self._lane(job.owner).append(job)
        self._notify()
        pos = self.position(job.job_id)
        assert pos is not None
        return pos

    def restore(self, jobs: Iterable[Job]) -> None:
        """Re-queue recovered jobs in their given order, ignoring the caps (they were accepted)."""
        for job in jobs:
            if not self._known(job.job_id):
                self._lane(job.owner).append(job)
        self._notify()

    async def get(self) -> Job:
        """Wait for the next job in fair order and mark it running."""
        while True:
            job = self._pop_next()
            if job is not None:
                return job
            self._changed.clear()
            await self._changed.wait()

    def take_compatible(self, key: Hashable, limit: int) -> list[Job]:
        """Take up to ``limit`` more jobs with this batch key, from the front of the fair order.

        Stops at the first job whose key differs, so batching never lets a job jump ahead of a
        different member's job that was due earlier.
        """
        taken: list[Job] = []
        for job in self.order():
            if len(taken) >= limit or job.batch_key() != key:
                break
            self._take(job)
            taken.append(job)
        if taken:
            self._notify()
        return taken

    def start(self, job_id: str) -> None:
        """A taken job has started on the GPU thread: it is no longer next, and its take is final."""
        if self._next.pop(job_id, None) is not None:
            self._notify()

    def give_back(self, jobs: Iterable[Job]) -> None:
        """Undo the take of jobs that have not started (the newest ones taken): each goes back to
        the front of its member's lane, and the member's turn is as it was before the take."""
        ids = {job.job_id for job in jobs}
        for t in reversed([t for t in self._next.values() if t.job.job_id in ids]):
            del self._next[t.job.job_id]
            del self._running[t.job.job_id]
            self._lanes.setdefault(t.job.owner, deque()).appendleft(t.job)
            _undo_turn(t, self._served, self._arrival)
        self._notify()

    def done(self, job_id: str) -> None:
        """A taken job has finished (in any way); frees the member's slot."""
        self._running.pop(job_id, None)
        if self._next.pop(job_id, None) is not None:  # ended before it started (cancelled, unreadable input)
            self._notify()

    def cancel(self, job_id: str) -> Job | None:
        """Remove a waiting job. Returns it, or None when it is not waiting."""
        for owner, lane in self._lanes.items():
            for job in lane:
                if job.job_id == job_id:
                    lane.remove(job)
                    self._drop_lane_if_empty(owner)
                    self._notify()
                    return job
        return None

    # ------------------------------------------------------------------ internals

    def _known(self, job_id: str) -> bool:
        return job_id in self._running or any(j.job_id == job_id for lane in self._lanes.values() for j in lane)

    def _turns(self) -> list[int]:
        """Owners with waiting jobs, next turn first."""
        return sorted(self._lanes, key=lambda owner: (self._served.get(owner, 0), self._arrival[owner]))

    def _lane(self, owner: int) -> deque[Job]:
        if owner not in self._lanes:
            self._tick += 1
            self._lanes[owner] = deque()
            self._arrival[owner] = self._tick
        return self._lanes[owner]

    def _drop_lane_if_empty(self, owner: int) -> None:
        if not self._lanes[owner]:
            del self._lanes[owner]
            del self._arrival[owner]

    def _pop_next(self) -> Job | None:
        if not self._lanes:
            return None
        job = self._lanes[self._turns()[0]][0]
        self._take(job)
        self._notify()
        return job

    def _take(self, job: Job) -> None:
        """Move a waiting job to running (next, until it starts); its member goes to the back of the round."""
        self._next[job.job_id] = _Taken(job, self._served.get(job.owner), self._arrival[job.owner])
        self._lanes[job.owner].remove(job)
        self._drop_lane_if_empty(job.owner)
        self._tick += 1
        self._served[job.owner] = self._tick
        self._running[job.job_id] = job

    def _notify(self) -> None:
        self._changed.set()
        for listener in list(self._listeners):
            listener()


def _round_robin(lanes: Mapping[int, Sequence[Job]], served: Mapping[int, int],
                 arrival: Mapping[int, int]) -> list[Job]:
    """Waiting jobs in fair order: one per member per round, members by turn (served longest ago
    first, never served first, ties by arrival)."""
    turns = sorted(lanes, key=lambda owner: (served.get(owner, 0), arrival[owner]))
    rows = [lanes[owner] for owner in turns]
    out: list[Job] = []
    depth = 0
    while True:
        row = [lane[depth] for lane in rows if depth < len(lane)]
        if not row:
            return out
        out.extend(row)
        depth += 1


def _undo_turn(taken: _Taken, served: dict[int, int], arrival: dict[int, int]) -> None:
    owner = taken.job.owner
    if taken.served is None:
        served.pop(owner, None)
    else:
        served[owner] = taken.served
    arrival[owner] = taken.arrival
