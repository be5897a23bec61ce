"""The jobs whose batch still waits in a job stream when the bot starts, not answered by a worker yet.

A bot stopped while its batches were out finds them again here: those a worker has not read yet
(after the ``workers`` group's last delivered entry) and those read and not acknowledged (pending:
running, or to be taken over). A job handed over again that is among them is not sent a second
time: its result will come (a worker acknowledges an entry in the transaction that sends its results).
"""

from __future__ import annotations

import json
import logging

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from inference.cluster.keys import WORKERS_GROUP, Keys

log = logging.getLogger("inference.cluster.dispatch")

PENDING_MAX = 10000  # pending entries looked at per stream


async def queued_job_ids(client: aioredis.Redis, keys: Keys) -> set[str]:
    found: set[str] = set()
    async for key in client.scan_iter(match=f"{keys.prefix}:jobs:*", count=100):
        try:
            groups = await client.xinfo_groups(key)
        except ResponseError:  # not a stream
            continue
        group = next((g for g in groups if g["name"] in (WORKERS_GROUP, WORKERS_GROUP.encode())), None)
        last = group["last-delivered-id"] if group is not None else None
        if isinstance(last, bytes):
            last = last.decode()
        entries = await client.xrange(key, min=f"({last}" if last else "-")
        if group is not None:
            for pending in await client.xpending_range(key, WORKERS_GROUP, min="-", max="+", count=PENDING_MAX):
                entries += await client.xrange(key, min=pending["message_id"], max=pending["message_id"])
        for _, fields in entries:
            found.update(_job_ids(fields))
    return found


def _job_ids(fields: dict) -> list[str]:
    try:
        return [str(job["job_id"]) for job in json.loads(fields[b"meta"])["jobs"]]
    except (KeyError, ValueError, TypeError, RecursionError):  # a malformed entry: the workers drop it
        return []
