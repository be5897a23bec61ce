"""Admitting a request into the studio: a held place in the queue, and input files stored only
once the request is accepted. Knows no Discord types.

A request is checked (channel, prompt, caps) before anything about it is written. Two things make
that hold under load and faults:

- :class:`Reservations`: the per-member and queue caps are checked and a place is held in one
  synchronous step, so five requests arriving together cannot all pass the check before any of
  them is queued (``Studio.submit`` releases the place once the queue holds the job).
- :class:`InputFile`: an upload is encoded and named (content-addressed: the name is the hash)
  before the checks, so the job can refer to it, but written to disk by :func:`store_inputs` only
  after every check passed. A refused request leaves no file; a job that then cannot be recorded
  has its new files removed (:func:`discard_inputs`), and anything a crash leaves in between is
  swept later (``Database.sweep_orphans``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from inference.jobs import JobError, QueueRefused
from inference.scheduler import FairQueue
from storage.files import remove_files

if TYPE_CHECKING:
    from studio import Studio

MB = 1024 * 1024


def _add(counts: dict[int, int], owner: int, amount: int) -> None:
    left = counts.get(owner, 0) + amount
    if left:
        counts[owner] = left
    else:
        counts.pop(owner, None)


class Reservation:
    """A member's place in the queue, held from the cap check until the job is queued (or refused),
    and the bytes of the inputs stored for it until its job (and so its input rows) is recorded.
    Releasing twice is harmless."""

    def __init__(self, held: dict[int, int], owner: int, held_bytes: dict[int, int]) -> None:
        self._held = held
        self._held_bytes = held_bytes
        self.owner = owner
        self._bytes = 0
        self._released = False
        _add(held, owner, 1)

    def hold_bytes(self, size: int) -> None:
        """Count ``size`` bytes of inputs stored for this request against the member's storage cap
        until the job is recorded: two requests storing at the same moment see each other's."""
        if not self._released:
            self._bytes += size
            _add(self._held_bytes, self.owner, size)

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        _add(self._held, self.owner, -1)
        _add(self._held_bytes, self.owner, -self._bytes)


class Reservations:
    """Places held for requests that passed their checks and are on their way into the queue."""

    def __init__(self, queue: FairQueue) -> None:
        self._queue = queue
        self._held: dict[int, int] = {}  # member -> places held
        self._held_bytes: dict[int, int] = {}  # member -> bytes of inputs stored, jobs not recorded yet

    def held(self, owner: int) -> int:
        return self._held.get(owner, 0)

    def held_bytes(self, owner: int) -> int:
        return self._held_bytes.get(owner, 0)

    def reserve(self, owner: int, cap: int | None = None) -> Reservation:
        """Check that the member (and the queue) has room for one more job and hold that place.
        ``cap``: the server's per-member cap. Raises QueueRefused (member-facing)."""
        held = self.held(owner)
        if cap is not None and self._queue.pending_for(owner) + held >= cap:
            raise QueueRefused(f"This server allows {cap} job(s) per member at a time. Wait for one to finish.")
        self._queue.check_room(owner, also_mine=held, also_total=sum(self._held.values()))
        return Reservation(self._held, owner, self._held_bytes)


@dataclass(frozen=True)
class InputFile:
    """An input image encoded for storage but not written yet; ``path`` is where it will be."""

    data: bytes
    suffix: str
    path: str


async def input_file(studio: Studio, data: bytes, suffix: str) -> InputFile:
    """Name an input without storing it."""
    path = await asyncio.to_thread(studio.outputs.address, data, suffix)
    return InputFile(data, suffix, str(path))


async def store_inputs(studio: Studio, owner: int, files: Sequence[InputFile],
                       reservation: Reservation | None = None) -> list[str]:
    """Store an accepted request's inputs; returns the paths that were not stored before (for
    :func:`discard_inputs`). Raises JobError, storing nothing, when the new files would take the
    member past ``limits.max_stored_input_mb_per_member``. With the request's ``reservation``, the
    new bytes count against the cap until its job is recorded, so requests storing at the same
    moment cannot pass the cap together."""
    new = [f for f in files if not await asyncio.to_thread(Path(f.path).exists)]
    cap_mb = studio.config.limits.max_stored_input_mb_per_member
    if cap_mb > 0 and new:
        recorded = await studio.database.stored_input_bytes(owner)
        # From here to hold_bytes no await: the check and the hold are one step.
        used = recorded + studio.reservations.held_bytes(owner)
        size = sum(len(f.data) for f in new)
        if used + size > cap_mb * MB:
            raise JobError(f"Your uploaded images stored here take {used / MB:.1f} MB; the limit is {cap_mb:g} MB "
                           "per member. `/forget` deletes them (with your history).")
        if reservation is not None:
            reservation.hold_bytes(size)
    for f in files:  # a file stored already is touched: wanted again (OutputStore.save_bytes)
        await studio.outputs.save_bytes(f.data, f.suffix)
    return [f.path for f in new]


async def discard_inputs(studio: Studio, paths: Sequence[str]) -> None:
    """Remove inputs stored for a request whose job was not recorded, unless a row names them
    (or they were stored again meanwhile)."""
    since = time.time()
    unused = await studio.database.unreferenced(list(paths))
    if unused:
        await asyncio.to_thread(remove_files, unused, untouched_since=since)
