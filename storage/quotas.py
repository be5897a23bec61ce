"""Daily image quotas: a server's limit per member, per-role overrides (a role's own limit and
its queue weight), and a member's usage.

Usage is counted from the job log itself, never kept apart: the images of the member's jobs on
the server asked for since the day began (UTC midnight), queued and running ones included,
cancelled and failed ones left out. So usage survives restarts, and a job that is cancelled or
fails gives its images back the moment the log records it so.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from storage.connection import Connection

DAY_S = 86_400.0
MAX_DAILY = 100_000
MAX_WEIGHT = 5  # jobs per turn in the fair queue (inference/scheduler.py has the same bound)

# The images a job makes, by its kind, from its parameters (inference/jobs.py ``to_params``):
# ``count`` images for imagine/vary/paint, ``frames`` for a morph, none for describe (text), one otherwise.
_IMAGES = ("CASE WHEN kind IN ('imagine', 'vary', 'paint') THEN coalesce(json_extract(params, '$.count'), 1)"
           " WHEN kind = 'morph' THEN coalesce(json_extract(params, '$.frames'), 1)"
           " WHEN kind = 'describe' THEN 0 ELSE 1 END")
# Not cancelled or failed. A failed job keeps its error after its failure is posted (delivered,
# with ``prior_status`` cleared), so the error marks it too.
_NOT_FAILED = ("status NOT IN ('failed', 'cancelled') AND coalesce(prior_status, '') != 'failed'"
               " AND error IS NULL")


@dataclass(frozen=True)
class RoleLimit:
    role_id: int
    daily: int | None = None  # None: the server's limit; 0: no limit
    weight: int = 1  # jobs per turn in the fair queue


@dataclass(frozen=True)
class Limits:
    """A server's daily image limits. 0 means no limit."""

    guild_id: int
    daily: int = 0
    roles: tuple[RoleLimit, ...] = ()  # by role id

    def role(self, role_id: int) -> RoleLimit | None:
        return next((r for r in self.roles if r.role_id == role_id), None)

    def for_member(self, role_ids: Iterable[int]) -> int:
        """A member's limit: the highest of their roles' own limits (0, no limit, beats any
        number), else the server's."""
        mine = {r.role_id: r.daily for r in self.roles if r.daily is not None}
        limits = [mine[r] for r in role_ids if r in mine]
        if not limits:
            return self.daily
        return 0 if 0 in limits else max(limits)

    def weight_for(self, role_ids: Iterable[int]) -> int:
        """A member's queue weight: the highest of their roles', else 1."""
        weights = {r.role_id: r.weight for r in self.roles}
        return max((weights[r] for r in role_ids if r in weights), default=1)

    @property
    def any(self) -> bool:
        """Whether any limit is set on this server (a server with none needs no counting)."""
        return bool(self.daily) or bool(self.roles)


def day_start(now: float) -> float:
    """The UTC midnight that began the day ``now`` (a Unix time) is in: when counts reset."""
    return (now // DAY_S) * DAY_S


class Quotas:
    def __init__(self, conn: Connection, *, clock: Callable[[], float] = time.time) -> None:
        self._conn = conn
        self.clock = clock

    async def limits(self, guild_id: int) -> Limits:
        rows = await self._conn.fetchall(
            "SELECT 0 AS is_role, 0 AS role_id, daily_images, 1 AS weight FROM guild_quotas WHERE guild_id = ?1"
            " UNION ALL SELECT 1, role_id, daily_images, weight FROM role_quotas WHERE guild_id = ?1"
            " ORDER BY is_role, role_id", (guild_id,))
        return _limits(guild_id, rows)

    async def set_daily(self, guild_id: int, images: int) -> Limits:
        """Set the server's images per member per day (0: no limit). Bad values: ValueError."""
        await self._conn.execute(
            "INSERT INTO guild_quotas (guild_id, daily_images, updated_at) VALUES (?, ?, ?)"
            " ON CONFLICT (guild_id) DO UPDATE SET daily_images = excluded.daily_images,"
            " updated_at = excluded.updated_at", (guild_id, _check(images), self.clock()))
        return await self.limits(guild_id)

    async def set_role(self, guild_id: int, role_id: int, *, daily: int | None, weight: int = 1) -> Limits:
        """Set a role's own images per day (None: the server's limit applies; 0: no limit) and queue
        weight; a role left with neither loses its row. Bad values: ValueError."""
        if daily is not None:
            _check(daily)
        if isinstance(weight, bool) or not isinstance(weight, int) or not 1 <= weight <= MAX_WEIGHT:
            raise ValueError(f"a queue weight must be a whole number from 1 to {MAX_WEIGHT}, not {weight!r}")
        if daily is None and weight == 1:
            return await self.clear_role(guild_id, role_id)
        await self._conn.execute(
            "INSERT INTO role_quotas (guild_id, role_id, daily_images, weight, updated_at) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (guild_id, role_id) DO UPDATE SET daily_images = excluded.daily_images,"
            " weight = excluded.weight, updated_at = excluded.updated_at",
            (guild_id, role_id, daily, weight, self.clock()))
        return await self.limits(guild_id)

    async def clear_role(self, guild_id: int, role_id: int) -> Limits:
        """Remove a role's own limit and weight."""
        await self._conn.execute("DELETE FROM role_quotas WHERE guild_id = ? AND role_id = ?", (guild_id, role_id))
        return await self.limits(guild_id)

    async def used(self, guild_id: int, user_id: int, *, now: float | None = None) -> int:
        """Images of the member's jobs on this server asked for since today's UTC midnight, not
        cancelled or failed (queued and running ones count: they are on their way)."""
        since = day_start(self.clock() if now is None else now)
        row = await self._conn.fetchone(
            f"SELECT coalesce(sum({_IMAGES}), 0) FROM jobs WHERE user_id = ? AND guild_id = ?"
            f" AND created_at >= ? AND {_NOT_FAILED}", (user_id, guild_id, since))
        return int(row[0]) if row is not None else 0


def _check(images: Any) -> int:
    if isinstance(images, bool) or not isinstance(images, int) or not 0 <= images <= MAX_DAILY:
        raise ValueError(f"images per day must be a whole number from 0 to {MAX_DAILY}, not {images!r}")
    return images


def _limits(guild_id: int, rows: list[Any]) -> Limits:
    daily = next((int(r["daily_images"]) for r in rows if not r["is_role"]), 0)
    roles = tuple(RoleLimit(int(r["role_id"]), None if r["daily_images"] is None else int(r["daily_images"]),
                            int(r["weight"])) for r in rows if r["is_role"])
    return Limits(guild_id, daily, roles)
