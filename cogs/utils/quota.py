"""Daily image quotas: checked when a request is admitted, shown in /queue, set by /easel limits.

A member's limit on a server is the highest of their roles' overrides, else the server's; 0 is
no limit. Usage is the job log's count (storage/quotas.py): images of the member's jobs on the
server since UTC midnight, queued and running ones included, cancelled and failed ones not.

Two requests of one member arriving together must not both pass on the same count: :func:`admit`
takes a per-member lock that its :class:`Hold` keeps until the job is in the job log (launch
releases it with its reservation), so the next request's count includes the job.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import discord

from inference.jobs import Job, JobError, JobKind
from storage.quotas import DAY_S, Limits, Quotas, RoleLimit, day_start

if TYPE_CHECKING:
    from bot import EaselBot
    from cogs.utils.origin import Origin


class QuotaReached(JobError):
    """The member has made their images for today on this server."""


@dataclass(frozen=True)
class Usage:
    used: int
    limit: int
    resets_in: float  # seconds to the next UTC midnight

    def text(self) -> str:
        """``12 of 20 images today, resets in 5 h``"""
        return f"{self.used} of {self.limit} images today, resets in {reset_text(self.resets_in)}"


def reset_text(seconds: float) -> str:
    """Time to the reset, as a member reads it: ``5 h``, ``40 min``."""
    if seconds >= 90 * 60:
        return f"{seconds / 3600:.0f} h"
    return f"{max(1.0, seconds / 60):.0f} min"


def images_of(job: Job) -> int:
    """The images a job counts for, as the job log counts them: describe makes text, not images."""
    return 0 if job.kind is JobKind.DESCRIBE else job.image_count


def role_ids(user: discord.abc.User, guild: discord.Guild) -> list[int]:
    """The member's role ids (a reaction's origin may carry a plain user: look them up)."""
    member = user if isinstance(user, discord.Member) else guild.get_member(user.id)
    return [role.id for role in member.roles] if member is not None else []


async def usage(bot: EaselBot, guild: discord.Guild | None, user: discord.abc.User) -> Usage | None:
    """The member's usage today on this server, or None where no limit applies to them."""
    if guild is None:
        return None
    quotas = bot.studio.database.quotas
    limits = await quotas.limits(guild.id)
    limit = limits.for_member(role_ids(user, guild)) if limits.any else 0
    if not limit:
        return None
    now = quotas.clock()
    return Usage(await quotas.used(guild.id, user.id, now=now), limit, day_start(now) + DAY_S - now)


class Hold:
    """A member's admission lock, held until their admitted job is recorded. Releasing twice is harmless."""

    def __init__(self, lock: asyncio.Lock) -> None:
        self._lock: asyncio.Lock | None = lock

    def release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None


# Per job log (a bot's; tests open several), per (server, member): the admission locks. One small
# lock per member who ever asked under a limit, for the life of the process.
_LOCKS: weakref.WeakKeyDictionary[Quotas, dict[tuple[int, int], asyncio.Lock]] = weakref.WeakKeyDictionary()


async def _lock(quotas: Quotas, guild_id: int, user_id: int) -> asyncio.Lock:
    locks = _LOCKS.setdefault(quotas, {})
    lock = locks.setdefault((guild_id, user_id), asyncio.Lock())
    await lock.acquire()
    return lock


async def admit(bot: EaselBot, origin: Origin, job: Job) -> Hold | None:
    """Raise QuotaReached when ``job`` would take the member over today's limit here. Otherwise
    returns the hold to release once the job is recorded (None where no limit applies)."""
    if origin.guild is None:
        return None
    quotas = bot.studio.database.quotas
    limits = await quotas.limits(origin.guild.id)
    roles = role_ids(origin.user, origin.guild) if limits.any else []
    limit = limits.for_member(roles)
    if not limit:
        return None
    hold = Hold(await _lock(quotas, origin.guild.id, job.owner))
    try:
        now = quotas.clock()
        used = await quotas.used(origin.guild.id, job.owner, now=now)
        wanted = images_of(job)
        if wanted and used + wanted > limit:
            raise QuotaReached(refusal_text(Usage(used, limit, day_start(now) + DAY_S - now), wanted))
    except BaseException:
        hold.release()
        raise
    return hold


async def give_weight(bot: EaselBot, origin: Origin, owner: int) -> None:
    """Once a job of ``owner`` is accepted: their roles' queue weight here (1 in DMs and without a
    weighted role). The fair queue keeps one weight per member: that of the place of their latest
    accepted request (a refused one changes nothing)."""
    weight = 1
    if origin.guild is not None:
        limits = await bot.studio.database.quotas.limits(origin.guild.id)
        weight = limits.weight_for(role_ids(origin.user, origin.guild)) if limits.any else 1
    bot.studio.engine.set_weight(owner, weight)


def refusal_text(usage: Usage, wanted: int) -> str:
    resets = f"the count resets in {reset_text(usage.resets_in)}"
    made = f"You have made {usage.used} of {usage.limit} images today on this server"
    if usage.used >= usage.limit:
        return f"{made}; {resets}."
    return f"{made}, and this asks for {wanted} more: ask for {usage.limit - usage.used} or fewer, or wait ({resets})."


# ---------------------------------------------------------------------- /easel limits


async def change_limits(bot: EaselBot, guild_id: int, *, daily: int | None, role: discord.Role | None,
                        role_daily: int | None, role_weight: int | None, clear_role: discord.Role | None) -> str:
    """Apply what /easel limits asked for and return the limits as text. JobError: a half-given role."""
    if (role is None) != (role_daily is None and role_weight is None):
        raise JobError("To give a role its own limit or queue weight, name the `role` with its `role_daily` "
                       "images (0 = no limit) and/or `role_weight` (jobs per turn in the queue).")
    quotas = bot.studio.database.quotas
    changed = daily is not None or role is not None or clear_role is not None
    if daily is not None:
        await quotas.set_daily(guild_id, daily)
    if role is not None:
        current = (await quotas.limits(guild_id)).role(role.id) or RoleLimit(role.id)
        await quotas.set_role(guild_id, role.id, daily=current.daily if role_daily is None else role_daily,
                              weight=current.weight if role_weight is None else role_weight)
    if clear_role is not None:
        await quotas.clear_role(guild_id, clear_role.id)
    return limits_text(await quotas.limits(guild_id), updated=changed)


def limits_text(limits: Limits, *, updated: bool = False) -> str:
    return (f"**easel limits**{' (updated)' if updated else ''}\n"
            f"Images per member per day: {_images(limits.daily)} (counts reset at midnight UTC)\n"
            f"Role overrides: {_roles(limits.roles)}")


def _images(limit: int) -> str:
    return str(limit) if limit else "no limit"


def _roles(roles: Iterable[RoleLimit]) -> str:
    return " \u00b7 ".join(f"<@&{r.role_id}>: {_role(r)}" for r in roles) or "none"


def _role(role: RoleLimit) -> str:
    daily = "the server's limit" if role.daily is None else _images(role.daily)
    return daily + (f", {role.weight} jobs per turn in the queue" if role.weight > 1 else "")
