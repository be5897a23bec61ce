"""Daily image quotas in storage: limits per server and role, usage counted from the job log."""

from __future__ import annotations

from pathlib import Path

import pytest

from inference.scheduler import MAX_WEIGHT as QUEUE_MAX_WEIGHT
from storage import Database
from storage.quotas import DAY_S, MAX_WEIGHT, Limits, RoleLimit, day_start
from tests.storage.helpers import Clock, add_job, deliver, finish

GUILD, MEMBER = 10, 1


async def test_a_server_without_limits_has_none(db: Database) -> None:
    limits = await db.quotas.limits(GUILD)
    assert limits == Limits(GUILD) and not limits.any and limits.for_member([5]) == 0


async def test_daily_limit_and_role_overrides_are_set_changed_and_cleared(db: Database) -> None:
    await db.quotas.set_daily(GUILD, 20)
    await db.quotas.set_role(GUILD, 7, daily=50)
    limits = await db.quotas.set_role(GUILD, 3, daily=0, weight=2)
    assert limits == Limits(GUILD, 20, (RoleLimit(3, 0, 2), RoleLimit(7, 50)))
    assert limits.role(3) == RoleLimit(3, 0, 2) and limits.role(99) is None
    assert (await db.quotas.set_role(GUILD, 7, daily=None, weight=3)).roles == (RoleLimit(3, 0, 2), RoleLimit(7, None, 3))
    assert (await db.quotas.clear_role(GUILD, 3)).roles == (RoleLimit(7, None, 3),)
    assert (await db.quotas.set_role(GUILD, 7, daily=None)).roles == ()  # neither a limit nor a weight: gone
    assert (await db.quotas.set_daily(GUILD, 0)).daily == 0
    assert (await db.quotas.limits(GUILD + 1)) == Limits(GUILD + 1)  # other servers untouched


@pytest.mark.parametrize("bad", [-1, 100_001, 2.5, True, "20", None])
async def test_bad_limits_are_refused(db: Database, bad: object) -> None:
    with pytest.raises(ValueError, match="whole number from 0 to 100000"):
        await db.quotas.set_daily(GUILD, bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="whole number"):
        await db.quotas.set_role(GUILD, 7, daily=-5)
    for weight in (0, MAX_WEIGHT + 1, 1.5):
        with pytest.raises(ValueError, match="queue weight must be a whole number from 1 to 5"):
            await db.quotas.set_role(GUILD, 7, daily=5, weight=weight)  # type: ignore[arg-type]
    assert await db.quotas.limits(GUILD) == Limits(GUILD)


def test_a_members_limit_is_their_highest_role_override_else_the_servers() -> None:
    limits = Limits(GUILD, 20, (RoleLimit(3, 0), RoleLimit(7, 50, 2), RoleLimit(8, 10, 4), RoleLimit(9, None, 3)))
    assert limits.for_member([]) == 20
    assert limits.for_member([99]) == 20
    assert limits.for_member([9]) == 20  # a role with a weight only
    assert limits.for_member([8]) == 10  # an override may also lower it
    assert limits.for_member([7, 8]) == 50
    assert limits.for_member([3, 7]) == 0  # "no limit" beats any number
    assert limits.weight_for([]) == limits.weight_for([3]) == 1
    assert limits.weight_for([7, 8, 9]) == 4


def test_storage_and_the_queue_bound_weights_alike() -> None:
    assert MAX_WEIGHT == QUEUE_MAX_WEIGHT


async def test_usage_counts_the_images_of_the_members_jobs_on_this_server(db: Database) -> None:
    await add_job(db, "a", count=4)
    await add_job(db, "b", kind="morph", count=1, frames=8)
    await add_job(db, "c", kind="describe", count=4)  # text, no images
    await add_job(db, "d", kind="anime", prompt=None)
    await add_job(db, "e", kind="upscale", prompt=None)
    await add_job(db, "other-member", user_id=2, count=4)
    await add_job(db, "other-server", guild_id=11, count=4)
    await add_job(db, "dm", guild_id=None, count=4)
    assert await db.quotas.used(GUILD, MEMBER) == 4 + 8 + 0 + 1 + 1


async def test_cancelled_and_failed_jobs_do_not_count_even_once_delivered(db: Database) -> None:
    for job_id in ("queued", "running", "done", "delivered", "cancelled", "failed", "failed-posted", "failing"):
        await add_job(db, job_id, count=2)
    await db.jobs.set_status("running", "running")
    await finish(db, "done")
    await finish(db, "delivered")
    await deliver(db, "delivered", message_id=901)
    await db.jobs.set_status("cancelled", "cancelled")
    await finish(db, "failed", "failed", error="out of memory")
    await finish(db, "failed-posted", "failed", error="out of memory")
    await deliver(db, "failed-posted", message_id=902)
    await finish(db, "failing", "failed", error="out of memory")
    assert await db.jobs.begin_delivery("failing")  # its failure being posted
    assert await db.quotas.used(GUILD, MEMBER) == 2 * 4  # queued, running, done, delivered


async def test_usage_resets_at_utc_midnight(db: Database, clock: Clock) -> None:
    midnight = day_start(clock.now)
    assert midnight % DAY_S == 0 and 0 <= clock.now - midnight < DAY_S
    clock.now = midnight + DAY_S - 60  # a minute before the next midnight
    await add_job(db, "late", count=3)
    assert await db.quotas.used(GUILD, MEMBER) == 3
    clock.advance(60)  # midnight: a new day
    assert await db.quotas.used(GUILD, MEMBER) == 0
    await add_job(db, "early", count=2)
    assert await db.quotas.used(GUILD, MEMBER) == 2
    assert await db.quotas.used(GUILD, MEMBER, now=midnight + DAY_S - 1) == 5  # yesterday, both made by then


async def test_usage_and_limits_survive_a_restart(db_path: Path, clock: Clock) -> None:
    first = await Database.open(db_path, clock=clock)
    try:
        await first.quotas.set_daily(GUILD, 20)
        await first.quotas.set_role(GUILD, 7, daily=50, weight=2)
        await add_job(first, "a", count=4)
    finally:
        await first.close()
    second = await Database.open(db_path, clock=clock)
    try:
        assert await second.quotas.used(GUILD, MEMBER) == 4
        assert await second.quotas.limits(GUILD) == Limits(GUILD, 20, (RoleLimit(7, 50, 2),))
    finally:
        await second.close()
