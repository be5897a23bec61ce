"""The quota check at admission on its own: two requests of one member arriving together are
counted one after the other, each seeing the other's job once it is recorded."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from cogs.utils import quota
from inference.jobs import DescribeJob, MorphJob, TextToImageJob
from storage import Database
from tests.storage.helpers import Clock

GUILD, MEMBER = 10, 1


@pytest.fixture
async def bot(tmp_path: Path) -> AsyncIterator[Any]:
    database = await Database.open(tmp_path / "easel.db", clock=Clock())
    await database.quotas.set_daily(GUILD, 3)
    weights: dict[int, int] = {}
    engine = SimpleNamespace(set_weight=weights.__setitem__, weights=weights)
    yield SimpleNamespace(studio=SimpleNamespace(database=database, engine=engine))
    await database.close()


def origin() -> Any:
    """A request from a member with no roles (a plain user: the guild is asked for the member)."""
    guild = SimpleNamespace(id=GUILD, get_member=lambda user_id: None)
    return SimpleNamespace(guild=guild, user=SimpleNamespace(id=MEMBER))


def job(job_id: str, count: int) -> TextToImageJob:
    return TextToImageJob(job_id=job_id, owner=MEMBER, prompt="a cat", count=count)


async def record(bot: Any, made: TextToImageJob) -> None:
    await bot.studio.database.jobs.add(job_id=made.job_id, kind=str(made.kind), user_id=MEMBER, guild_id=GUILD,
                                       channel_id=100, params=made.to_params())


async def test_a_second_request_waits_for_the_first_to_be_recorded_and_counts_it(bot: Any) -> None:
    first = await quota.admit(bot, origin(), job("a", 2))
    assert first is not None
    second = asyncio.create_task(quota.admit(bot, origin(), job("b", 2)))
    for _ in range(20):
        await asyncio.sleep(0)
    assert not second.done()  # held until the first job is in the job log
    await record(bot, job("a", 2))
    first.release()
    first.release()  # twice is harmless
    with pytest.raises(quota.QuotaReached, match="made 2 of 3 images today"):
        await second
    third = await quota.admit(bot, origin(), job("c", 1))  # the refusal let go of the lock
    assert third is not None
    third.release()


async def test_a_refused_request_lets_the_next_one_in(bot: Any) -> None:
    with pytest.raises(quota.QuotaReached, match="asks for 4 more: ask for 3 or fewer"):
        await quota.admit(bot, origin(), job("big", 4))
    hold = await asyncio.wait_for(quota.admit(bot, origin(), job("small", 3)), 5)
    assert hold is not None
    hold.release()


def test_describe_makes_no_images_and_a_morph_its_frames() -> None:
    assert quota.images_of(DescribeJob(job_id="d", owner=MEMBER, count=4)) == 0
    assert quota.images_of(MorphJob(job_id="m", owner=MEMBER, frames=6)) == 6
    assert quota.images_of(job("i", 4)) == 4


async def test_no_limit_means_no_check_and_no_hold(bot: Any) -> None:
    await bot.studio.database.quotas.set_daily(GUILD, 0)
    assert await quota.admit(bot, origin(), job("a", 4)) is None
    assert await quota.admit(bot, SimpleNamespace(guild=None, user=SimpleNamespace(id=MEMBER)), job("dm", 4)) is None
    assert bot.studio.engine.weights == {}  # admission gives no weight: an accepted job does (give_weight)


async def test_the_queue_weight_comes_with_an_accepted_job_and_is_1_in_direct_messages(bot: Any) -> None:
    await quota.give_weight(bot, SimpleNamespace(guild=None, user=SimpleNamespace(id=MEMBER)), MEMBER)
    assert bot.studio.engine.weights == {MEMBER: 1}


@pytest.mark.parametrize(("seconds", "text"), [(5 * 3600, "5 h"), (90 * 60, "2 h"), (40 * 60, "40 min"), (5, "1 min")])
def test_the_reset_reads_in_hours_or_minutes(seconds: float, text: str) -> None:
    assert quota.reset_text(seconds) == text
