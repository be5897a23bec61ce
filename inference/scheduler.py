"""The fair queue: round-robin across members, with a per-member and a global cap.

Each member has their own FIFO; the queue serves members in turn, so one member's twenty jobs
never hold up another member's first. Turns go by who was served longest ago (never served
first, ties by arrival), and that memory outlives an empty lane: emptying your lane and
re-submitting does not jump you ahead of members who are still waiting. The order a member sees (``order()``) is the order ``get``
would hand jobs out if nothing else arrived. Lives on the event loop; not thread-safe.

A member may have a weight w (1 to :data:`MAX_WEIGHT`, set at admission with :meth:`set_weight`,
e.g. a supporter role's priority): a turn of theirs is up to w jobs in a row, then the others get
theirs. So nobody waits more than one turn of each other member, however heavy. The queue
remembers who took the last job and how many in a row (``_last``): that member's turn goes on
while the run is shorter than their weight and nobody else has taken a job since.

A job taken for the GPU thread is *next* until the engine says it has ``start``ed (:meth:`next_up`).
Until then the take is provisional: when a member whose turn comes first submits meanwhile,
:meth:`is_fair` says so and the engine ``give_back``s the jobs, which undoes the take exactly
(place in the lane, the member's turn), so the newcomer's job goes first.

Model affinity (inference/affinity.py): the engine tells the queue which model will be on the
device (:meth:`set_preferred`; empty = none, then everything above holds as written). When the job
due next needs another model, the first job in fair order that uses the preferred one goes instead,
and the job passed over goes next once it has been passed over ``affinity_skips`` times. A job taken
that way does not end the turn of the member it passed over, and a job taken for another model
makes that model the preferred one. ``order()`` and ``is_fair()`` follow the same rule.
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain, islice

from inference.affinity import MAX_AFFINITY_SKIPS, model_of, pick
from inference.jobs import Job, QueueRefused

Listener = Callable[[], None]
MAX_WEIGHT = 5
Run = tuple[int, int]  # (member, jobs they took in a row): the last taker


@dataclass(frozen=True)
class _Taken:
    """A job taken and not started yet, with what its take changed (to undo it exactly)."""

    job: Job
    served: int | None  # its member's last turn before this take
    arrival: int  # when its member's lane was opened, before this take
    last: Run | None  # the queue's last taker before this take
    preferred: frozenset[str] = frozenset()  # the preferred models before this take
    passed: tuple[str, int] | None = None  # the job this take passed over for affinity, and its skips before
    ahead: frozenset[str] = frozenset()  # the jobs before it in its lane (affinity may take it from the middle)


class FairQueue:
    def __init__(self, *, per_user: int = 5, total: int = 100, affinity_skips: int = 2,
                 model_names: Callable[[str], frozenset[str]] | None = None) -> None:
        if per_user < 1 or total < 1:
            raise ValueError("queue limits must be at least 1")
        if not 0 <= affinity_skips <= MAX_AFFINITY_SKIPS:
            raise ValueError(f"affinity_skips must be between 0 and {MAX_AFFINITY_SKIPS}")
        self.per_user = per_user
        self.total = total
        self.affinity_skips = affinity_skips  # times a job may be passed over for the preferred model
        self._names = model_names or (lambda model: frozenset({model}))  # every name of a job's model
        self._preferred: frozenset[str] = frozenset()
        self._skips: dict[str, int] = {}  # job id -> times passed over for affinity
        self._lanes: dict[int, deque[Job]] = {}  # owner -> their waiting jobs, oldest first
        self._arrival: dict[int, int] = {}  # owner -> when their current lane was opened
        self._served: dict[int, int] = {}  # owner -> tick of the last time they got a turn
        self._tick = 0
        self._weights: dict[int, int] = {}  # owner -> jobs per turn, when more than 1
        self._last: Run | None = None  # who took the last job, and how many in a row
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
        """Waiting jobs in the order they will run: one turn per member per round (weight jobs each)."""
        return [job for job, _ in self._plan(self._lanes, self._served, self._arrival, self._last,
                                             self._preferred, self._skips)]

    @property
    def preferred(self) -> frozenset[str]:
        return self._preferred

    def weight(self, owner: int) -> int:
        return self._weights.get(owner, 1)

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
        served, arrival, last = dict(self._served), dict(self._arrival), self._last
        preferred, skips = self._preferred, dict(self._skips)
        for t in reversed(taken[first:]):
            lane = lanes.setdefault(t.job.owner, [])
            lane.insert(_place(lane, t), t.job)
            _undo_turn(t, served, arrival, skips)
            last, preferred = t.last, t.preferred
        plan = self._plan(lanes, served, arrival, last, preferred, skips)
        return [job.job_id for job, _ in islice(plan, len(ids))] == ids

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

    def set_preferred(self, names: Iterable[str]) -> None:
        """The models cheap to run next (the one the device will hold, by every name a job may give
        it); empty: none, jobs go in fair order."""
        names = frozenset(names)
        if names != self._preferred:
            self._preferred = names
            self._notify()

    def set_weight(self, owner: int, weight: int) -> None:
        """Jobs per turn for this member from now on (1 to MAX_WEIGHT; 1 is everyone's default)."""
        if isinstance(weight, bool) or not isinstance(weight, int) or not 1 <= weight <= MAX_WEIGHT:
            raise ValueError(f"a queue weight is a whole number from 1 to {MAX_WEIGHT}, not {weight!r}")
        if self.weight(owner) == weight:
            return
        if weight == 1:
            del self._weights[owner]
        else:
            self._weights[owner] = weight
        self._notify()

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
        """Take up to ``limit`` more jobs with this batch key, from the front of :meth:`order`.

        Stops at the first job whose key differs, so batching never lets a job jump ahead of a
        different member's job that was due earlier (nor past the bound of model affinity).
        """
        taken: list[Job] = []
        for job, passed in self._plan(self._lanes, self._served, self._arrival, self._last,
                                      self._preferred, self._skips):
            if len(taken) >= limit or job.batch_key() != key:
                break
            self._take(job, passed)
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
            lane = self._lanes.setdefault(t.job.owner, deque())
            lane.insert(_place(lane, t), t.job)
            _undo_turn(t, self._served, self._arrival, self._skips)
            self._last, self._preferred = t.last, t.preferred
        self._notify()

    def done(self, job_id: str) -> None:
        """A taken job has finished (in any way); frees the member's slot."""
        self._running.pop(job_id, None)
        self._skips.pop(job_id, None)
        if self._next.pop(job_id, None) is not None:  # ended before it started (cancelled, unreadable input)
            self._notify()

    def cancel(self, job_id: str) -> Job | None:
        """Remove a waiting job. Returns it, or None when it is not waiting."""
        for owner, lane in self._lanes.items():
            for job in lane:
                if job.job_id == job_id:
                    lane.remove(job)
                    self._skips.pop(job_id, None)
                    self._drop_lane_if_empty(owner)
                    self._notify()
                    return job
        return None

    # ------------------------------------------------------------------ internals

    def _known(self, job_id: str) -> bool:
        return job_id in self._running or any(j.job_id == job_id for lane in self._lanes.values() for j in lane)

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
        job, passed = next(self._plan(self._lanes, self._served, self._arrival, self._last,
                                      self._preferred, self._skips))
        self._take(job, passed)
        self._notify()
        return job

    def _plan(self, lanes: Mapping[int, Sequence[Job]], served: Mapping[int, int], arrival: Mapping[int, int],
              last: Run | None, preferred: frozenset[str], skips: Mapping[str, int]) -> Iterator[tuple[Job, Job | None]]:
        """The waiting jobs in the order ``get`` takes them from this state, each with the job its
        take passes over for affinity (None: taken in its fair turn). Without a preferred model
        that is the fair order; with one, each take is simulated as :meth:`_take` makes it."""
        if not preferred or not self.affinity_skips:
            yield from ((job, None) for job in _round_robin(lanes, served, arrival, self._weights, last))
            return
        left = {owner: list(lane) for owner, lane in lanes.items()}
        models = Counter(model_of(job) for lane in left.values() for job in lane)
        served, skips, tick = dict(served), dict(skips), self._tick
        turns = _turns(left, served, arrival)  # sorted once: a take sends only its member to the back
        while left:
            if all(model is None or model in preferred for model, n in models.items() if n):
                fair = _fair_order(left, served, arrival, self._weights, last, turns)
                yield from ((job, None) for job in fair)  # nothing to pass over: the fair order
                return
            job, passed = pick(_fair_order(left, served, arrival, self._weights, last, turns), preferred, skips,
                               self.affinity_skips)
            yield job, passed
            left[job.owner].remove(job)
            turns.remove(job.owner)
            if left[job.owner]:
                turns.append(job.owner)  # served now, later than anyone: last in turn
            else:
                del left[job.owner]
            models[model_of(job)] -= 1
            tick += 1
            served[job.owner] = tick
            last = _after_take(last, job.owner, passed is not None)
            if passed is not None:
                skips[passed.job_id] = skips.get(passed.job_id, 0) + 1
            preferred = self._follow(preferred, job)

    def _follow(self, preferred: frozenset[str], job: Job) -> frozenset[str]:
        """The preferred models once ``job`` is taken: its model, when it has one and a preference is set."""
        model = model_of(job)
        return preferred if not preferred or model is None or model in preferred else self._names(model)

    def _take(self, job: Job, passed: Job | None = None) -> None:
        """Move a waiting job to running (next, until it starts); its member goes to the back of the
        round, unless their weight lets their turn go on. ``passed``: the job due first that this
        take passes over for affinity (its member's turn goes on)."""
        skipped = None if passed is None else (passed.job_id, self._skips.get(passed.job_id, 0))
        lane = self._lanes[job.owner]
        ahead = frozenset(j.job_id for j in islice(lane, lane.index(job)))
        self._next[job.job_id] = _Taken(job, self._served.get(job.owner), self._arrival[job.owner], self._last,
                                        self._preferred, skipped, ahead)
        self._last = _after_take(self._last, job.owner, passed is not None)
        if skipped is not None:
            self._skips[skipped[0]] = skipped[1] + 1
        self._preferred = self._follow(self._preferred, job)
        self._lanes[job.owner].remove(job)
        self._drop_lane_if_empty(job.owner)
        self._tick += 1
        self._served[job.owner] = self._tick
        self._running[job.job_id] = job

    def _notify(self) -> None:
        self._changed.set()
        for listener in list(self._listeners):
            listener()


def _round_robin(lanes: Mapping[int, Sequence[Job]], served: Mapping[int, int], arrival: Mapping[int, int],
                 weights: Mapping[int, int], last: Run | None) -> list[Job]:
    """Waiting jobs in fair order: a turn per member per round, members by turn (served longest ago
    first, never served first, ties by arrival); a turn is as many jobs as the member's weight.
    The last taker's turn goes on first while their run is shorter than their weight (they were
    served last, so their next full turn comes at the end of the round)."""
    return list(_fair_order(lanes, served, arrival, weights, last))


def _fair_order(lanes: Mapping[int, Sequence[Job]], served: Mapping[int, int], arrival: Mapping[int, int],
                weights: Mapping[int, int], last: Run | None, turns: Sequence[int] | None = None) -> Iterator[Job]:
    """:func:`_round_robin`, one job at a time (the affinity rule reads only as far as it needs).
    ``turns``: the members in :func:`_turns` order, when the caller keeps it."""
    turns = _turns(lanes, served, arrival) if turns is None else turns
    start: dict[int, int] = {}
    going = None  # the last taker, when their run goes on: served last, so last in the round
    if last is not None and last[0] in lanes and last[1] < weights.get(last[0], 1):
        going = owner = last[0]
        first = list(islice(lanes[owner], weights[owner] - last[1]))
        yield from first
        start[owner] = len(first)
    while True:
        more = False
        # Most often they are last already; not when a take for affinity (passing over their run) came since.
        for owner in turns if going is None else chain((o for o in turns if o != going), (going,)):
            lane, size, at = lanes[owner], weights.get(owner, 1), start.get(owner, 0)
            for job in islice(lane, at, at + size):
                more = True
                yield job
            start[owner] = at + size
        if not more:
            return


def _turns(lanes: Mapping[int, Sequence[Job]], served: Mapping[int, int], arrival: Mapping[int, int]) -> list[int]:
    """Members by turn: served longest ago first, never served first, ties by arrival."""
    return sorted(lanes, key=lambda owner: (served.get(owner, 0), arrival[owner]))


def _after_take(last: Run | None, owner: int, passing: bool) -> Run | None:
    """The last taker once ``owner`` took a job: their run goes on, or starts; a take that passes
    over the job due first for affinity leaves another member's run as it was."""
    if last is not None and last[0] == owner:
        return (owner, last[1] + 1)
    return last if passing else (owner, 1)


def _place(lane: Sequence[Job], taken: _Taken) -> int:
    """Where an undone take goes back in its lane: behind the jobs that were before it and still wait."""
    return sum(1 for job in lane if job.job_id in taken.ahead)


def _undo_turn(taken: _Taken, served: dict[int, int], arrival: dict[int, int], skips: dict[str, int]) -> None:
    owner = taken.job.owner
    if taken.served is None:
        served.pop(owner, None)
    else:
        served[owner] = taken.served
    arrival[owner] = taken.arrival
    if taken.passed is not None and taken.passed[0] in skips:  # not: the job passed over was cancelled since
        job_id, before = taken.passed
        if before:
            skips[job_id] = before
        else:
            del skips[job_id]
