"""How a worker reads its job streams: entries a silent worker left (claimed after the lease), then new
ones, the model already on its GPU first within a bound (model affinity).

The bot sends each batch to the stream of its model (inference/cluster/keys.py), in fair order; a
worker holding several models reads all their streams. Reading them all at once makes a worker with
two models and one place on its GPU (``device.resident_models``) take one batch of each in turn and
switch models every batch. So, when switching costs (the executor's ``preferred_models()`` is not
empty), a worker first reads only the streams of the model on its device (and the stream of jobs
that need no model); only when they are empty, or after ``queue.affinity_skips`` such reads in a
row, does it read every stream. A batch of another model thus waits at most that many batches of
this worker, and a worker whose model is the other one takes it meanwhile.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import redis.asyncio as aioredis

from inference.cluster.keys import WORKERS_GROUP

log = logging.getLogger(__name__)

Entry = tuple[str, bytes, dict, int]
"""(stream, entry id, fields, times delivered)"""


class ReadOrder:
    """Which streams the next read of a worker starts with, and the bound on reading them alone."""

    def __init__(self, bound: int) -> None:
        self.bound = bound
        self.in_a_row = 0  # reads in a row that took work from the preferred streams only

    def first(self, streams: Mapping[str, str], preferred: frozenset[str], any_stream: str) -> list[str]:
        """The streams of the model on the device and of jobs that need none (empty: no preference).
        ``streams`` maps each model the worker holds to its job stream; ``preferred`` names the model on
        the device by every name. They go first in every read, so its batches run before the others."""
        if not preferred or self.bound <= 0:
            return []
        mine = [stream for model, stream in streams.items() if model in preferred]
        return [*mine, any_stream] if mine else []

    def may_read_alone(self) -> bool:
        """Whether the next read may take from the first streams only (fewer than ``bound`` in a row)."""
        return self.in_a_row < self.bound

    def took_preferred(self) -> None:
        self.in_a_row += 1

    def read_all(self) -> None:
        self.in_a_row = 0


async def claim(client: aioredis.Redis, name: str, streams: list[str], count: int, lease_ms: int) -> list[Entry]:
    """Up to ``count`` entries a silent worker held longer than the lease, with how often each was delivered."""
    found: list[Entry] = []
    for stream in streams:
        reply = await client.xautoclaim(stream, WORKERS_GROUP, name, lease_ms, "0-0", count=count - len(found))
        for entry_id, fields in reply[1]:
            if fields is None:  # deleted from the stream meanwhile
                continue
            pending = await client.xpending_range(stream, WORKERS_GROUP, entry_id, entry_id, 1)
            delivered = pending[0]["times_delivered"] if pending else 1
            found.append((stream, entry_id, fields, delivered))
            log.warning("worker %s took over %s of %s (delivery %d)", name, entry_id, stream, delivered)
        if len(found) >= count:
            break
    return found


async def read(client: aioredis.Redis, name: str, streams: list[str], first: list[str], order: ReadOrder,
               count: int, block_ms: int) -> list[Entry]:
    """New entries: from the ``first`` streams alone while ``order`` allows it (no wait when they hold
    none), else from every stream, the ``first`` ones first, waiting up to ``block_ms`` for one."""
    if first and order.may_read_alone():
        entries = _entries(await client.xreadgroup(WORKERS_GROUP, name, dict.fromkeys(first, ">"), count=count))
        if entries:
            order.took_preferred()
            return entries
    order.read_all()
    ordered = [*first, *(s for s in streams if s not in first)]  # its batch still runs before the others
    return _entries(await client.xreadgroup(WORKERS_GROUP, name, dict.fromkeys(ordered, ">"), count=count,
                                            block=block_ms))


def _entries(reply: Any) -> list[Entry]:
    # COUNT applies per stream, so this may be more than ``count``: every entry read is now pending on
    # this worker and is run (the executor queues the extra), never left to be taken over as if we died.
    return [(stream.decode(), entry_id, fields, 1) for stream, entries in reply or []
            for entry_id, fields in entries if fields is not None]
