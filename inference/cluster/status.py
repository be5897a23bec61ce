"""The workers of a cluster in words, for /easel status."""

from __future__ import annotations

import asyncio
import time
from typing import Any


def workers_text(workers: list[dict[str, Any]], now: float | None = None) -> str:
    """One line per live worker: name, models, device, jobs served, seconds since its last heartbeat."""
    if not workers:
        return "Workers: none connected (jobs wait for one)"
    now = time.time() if now is None else now
    lines = [f"- {w['name']}: {', '.join(w['models']) or 'no model'} on `{w['device']}` ({w['dtype']}), "
             f"{w['served']} served, {w['slots'] - w['free']}/{w['slots']} busy, {_capabilities(w)}"
             f"heartbeat {max(0.0, now - w['beat']):.0f} s ago" for w in workers]
    return "Workers:\n" + "\n".join(lines)


def _capabilities(worker: dict[str, Any]) -> str:
    """Its LoRAs (members' picks, over all its models) and pixel limit, each only when it has one."""
    loras = sum(len(names) for names in worker.get("loras", {}).values())
    limit = int(worker.get("max_pixels", 0))
    return (f"{loras} LoRA{'s' if loras != 1 else ''}, " if loras else "") + \
        (f"at most {limit / 1e6:.2f} Mpx an image, " if limit else "")


async def cluster_status(executor: Any) -> str:
    """The workers' lines when ``executor`` dispatches to a cluster, else ""."""
    workers = getattr(executor, "workers", None)
    if workers is None:
        return ""
    try:
        found = await asyncio.wrap_future(workers())  # bounded on the cluster's own thread (its real clock)
    except Exception as exc:  # Redis unreachable: the rest of the status still shows
        return f"Workers: unknown (Redis: {type(exc).__name__})"
    return workers_text(found)
