"""Helpers for storage tests: a settable clock and short ways to walk a job through its life."""

from __future__ import annotations

from typing import Any

from storage import Database, JobRow


class Clock:
    """A clock the test moves by hand (Unix seconds)."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def add_job(db: Database, job_id: str, *, user_id: int = 1, guild_id: int | None = 10, channel_id: int = 100,
                  kind: str = "imagine", prompt: str | None = "a cat", suppliers: dict[str, int] | None = None,
                  **params: Any) -> JobRow:
    if prompt is not None:
        params["prompt"] = prompt
    return await db.jobs.add(job_id=job_id, kind=kind, user_id=user_id, guild_id=guild_id, channel_id=channel_id,
                             params={"steps": 4, "seed": 1, **params}, suppliers=suppliers)


async def finish(db: Database, job_id: str, status: str = "done", error: str | None = None) -> None:
    await db.jobs.set_status(job_id, "running")
    await db.jobs.set_status(job_id, status, error=error)


async def deliver(db: Database, job_id: str, message_id: int = 900) -> None:
    assert await db.jobs.begin_delivery(job_id)
    await db.jobs.mark_delivered(job_id, channel_id=100, message_id=message_id)
