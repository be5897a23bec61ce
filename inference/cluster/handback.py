"""Job entries a worker does not run: dropped (unreadable), or handed back because it cannot run them.

A batch a worker cannot run has a LoRA it does not have, or images above its ``cluster.max_pixels``.

The bot routes by the workers' heartbeats (:func:`roster.can_run`), but a batch may still reach a
worker that cannot run it (its record was not yet seen, or changed). That worker hands the batch back:
a copy of the entry goes to the end of the same stream with its ``hops`` field counted up, and the
original is acknowledged and deleted, all in one transaction, so another worker reads it. After
``cluster.max_attempts`` hops the batch fails with what no worker had, instead of circling forever.
A hand-back while another live worker announces what the batch needs (it is busy, so the one that
cannot run it read it first) is not counted, and the worker pauses a heartbeat before reading again,
so the batch waits for that worker instead of failing within milliseconds.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from inference.cluster.keys import ANY_MODEL, WORKERS_GROUP, Keys
from inference.cluster.roster import batch_needs, can_run, read_workers
from inference.cluster.wire import HOPS, Fields
from inference.jobs import Job

NO_LORA = ("No GPU worker has the LoRA '{lora}' for model '{model}'. Try without it, or ask an admin "
           "which LoRAs the workers hold.")
TOO_LARGE = ("This request ({megapixels:.2f} megapixels an image) is larger than any GPU worker allows "
             "(at most {limit:.2f}). Try a smaller size.")
NO_MODEL = "No GPU worker can run this request on model '{model}'."


def lacking(record: dict[str, Any], model: str, jobs: list[Job]) -> str | None:
    """Why the worker of ``record`` (as :func:`roster.read_workers` gives it) cannot run these jobs of
    ``model`` ("" for the stream of jobs without one), in words for the member; ``None`` if it can."""
    loras, pixels = batch_needs(jobs)
    if can_run(record, model, loras, pixels):
        return None
    held = record.get("loras", {}).get(model)
    missing = [name for name in loras if held is not None and name not in held]
    if missing:
        return NO_LORA.format(lora=missing[0], model=model)
    limit = int(record.get("max_pixels", 0))
    if limit and pixels > limit:
        return TOO_LARGE.format(megapixels=pixels / 1e6, limit=limit / 1e6)
    return NO_MODEL.format(model=model or "-")


async def another_can_run(client: aioredis.Redis, keys: Keys, me: str, model: str, jobs: list[Job]) -> bool:
    """Whether a live worker other than ``me`` announces what these jobs of ``model`` need: then it is
    only busy, and a hand-back waits for it rather than counting towards failing the batch."""
    loras, pixels = batch_needs(jobs)
    return any(w["name"] != me and can_run(w, model, loras, pixels) for w in await read_workers(client, keys))


def handed_back(fields: Fields, hops: int) -> dict[bytes | str, bytes | str]:
    """A copy of a batch entry's fields with its hop count set to ``hops``."""
    copy: dict[bytes | str, bytes | str] = {k: v for k, v in fields.items() if k not in (HOPS, HOPS.encode())}
    copy[HOPS] = str(hops)
    return copy


def model_of(keys: Keys, stream: str) -> str:
    """The model of a job stream's batches ("" for the stream of jobs that need none)."""
    name = stream.removeprefix(keys.jobs(ANY_MODEL).removesuffix(ANY_MODEL))
    return "" if name == ANY_MODEL else name


async def hand_back(client: aioredis.Redis, stream: str, entry_id: bytes,
                    copy: dict[bytes | str, bytes | str]) -> None:
    """The copy to the end of the stream, for another worker, and the original acknowledged and deleted,
    in one transaction. Not raising on an error reply: after a Redis restart without persistence the
    acknowledgement finds no group (NOGROUP), and the copy must go through all the same."""
    async with client.pipeline(transaction=True) as pipe:
        pipe.xadd(stream, copy)  # type: ignore[arg-type]
        pipe.xack(stream, WORKERS_GROUP, entry_id)
        pipe.xdel(stream, entry_id)
        await pipe.execute(raise_on_error=False)


async def drop(client: aioredis.Redis, stream: str, entry_id: bytes) -> None:
    """Acknowledge and delete an entry in one transaction (not raising on NOGROUP either)."""
    async with client.pipeline(transaction=True) as pipe:
        pipe.xack(stream, WORKERS_GROUP, entry_id)
        pipe.xdel(stream, entry_id)
        await pipe.execute(raise_on_error=False)
