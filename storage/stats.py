"""What ``/easel stats`` reads from the job log: the timings of recent jobs.

Plain rows; the counting and the chart are studio_stats.py's (no SQL there).
"""

from __future__ import annotations

from dataclasses import dataclass

from storage.connection import Connection


@dataclass(frozen=True)
class JobTiming:
    kind: str
    model: str  # "" = the default model
    status: str
    guild_id: int | None
    created_at: float
    started_at: float | None
    finished_at: float | None


async def job_timings(conn: Connection, since: float) -> list[JobTiming]:
    """Every job asked for since ``since`` (Unix time), oldest first, on every server: the GPU's busy
    share needs them all; the caller keeps a server's own for the rest."""
    rows = await conn.fetchall(
        "SELECT kind, coalesce(json_extract(params, '$.model'), '') AS model, status, guild_id, created_at,"
        " started_at, finished_at FROM jobs WHERE created_at >= ? ORDER BY seq", (since,))
    return [JobTiming(r["kind"], str(r["model"] or ""), r["status"], r["guild_id"], r["created_at"],
                      r["started_at"], r["finished_at"]) for r in rows]
