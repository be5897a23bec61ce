"""Delivery when something besides Discord fails: the job log (locked past SQLite's wait, or failing)
around a post, the network while showing a status, a result file gone from outputs/. Every such
post still ends in the channel without a restart, and a missing file is not retried without end."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import storage.connection as connection_module
from cogs.utils.origin import InteractionOrigin
from config import Config
from inference.jobs import Failed, TextToImageJob
from tests.cogs.helpers import final, final_in, gpu_busy, is_final, make_world
from tests.cogs.test_redelivery import eventually_row, fail_the_result

LOCKED = "database is locked"
BROKEN = "disk I/O error"  # not "locked": write_while_locked does not wait it out


@pytest.fixture
def bot_config(bot_config: Config) -> Config:
    """Retries after 50 ms (doubling to 200 ms)."""
    return dataclasses.replace(bot_config, discord=dataclasses.replace(
        bot_config.discord, delivery_retry_s=0.05, delivery_retry_max_s=0.2, delivery_attempts=3))


@pytest.fixture(autouse=True)
def short_lock_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connection_module, "LOCKED_FIRST_WAIT_S", 0.02)


def fail_first(monkeypatch: pytest.MonkeyPatch, obj: Any, name: str, message: str, times: int = 1) -> list[int]:
    """The first ``times`` calls of ``obj.name`` raise sqlite3's OperationalError(message); returns
    a list that counts the calls."""
    real = getattr(obj, name)
    calls: list[int] = []

    async def failing(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) <= times:
            raise sqlite3.OperationalError(message)
        return await real(*args, **kwargs)

    monkeypatch.setattr(obj, name, failing)
    return calls


def bot_messages(channel: Any) -> list[Any]:
    return [m for m in channel.history() if m.author.bot]


@pytest.mark.parametrize("error, times", [(LOCKED, 3), (BROKEN, 1)])
async def test_a_failed_jobs_post_whose_claim_fails_is_posted_without_a_restart(
        simcord_env, simcord_bot, monkeypatch, error, times) -> None:
    """The studio records a failure unclaimed; claiming its post here meets the job log failing."""
    w = make_world(simcord_env)
    db = simcord_bot.studio.database
    job = TextToImageJob(job_id="boom", owner=w.alice.id, prompt="a fox", width=64, height=64, steps=2, model="tiny")
    await db.jobs.add(job_id=job.job_id, kind="imagine", user_id=w.alice.id, guild_id=w.guild.id,
                      channel_id=w.channel.id, params=job.to_params())
    await db.jobs.set_status(job.job_id, "running")
    claims = fail_first(monkeypatch, db.jobs, "begin_delivery", error, times)

    with simcord_env.time_context():
        simcord_bot.studio._on_engine_event(Failed(job.job_id, "The model ran out of memory."))  # noqa: SLF001
        row = await eventually_row(db, job.job_id, lambda r: r.status == "delivered")

    [posted] = bot_messages(w.channel)
    assert posted.id == row.result_message_id and posted.content.startswith("\u26a0") and "out of memory" in posted.content
    assert len(claims) == times + 1


async def test_a_post_whose_record_fails_is_recorded_by_posting_it_again_into_the_same_message(
        simcord_env, simcord_bot, monkeypatch) -> None:
    w = make_world(simcord_env)
    db = simcord_bot.studio.database
    records = fail_first(monkeypatch, db.jobs, "mark_delivered", BROKEN)
    result = await w.alice.slash(w.channel, "imagine", prompt="a heron", steps=2)
    posted = await final(result)
    row = await eventually_row(db, (await db.jobs.history(user_id=w.alice.id)).rows[0].job_id,
                               lambda r: r.status == "delivered")
    assert row.result_message_id == posted.id and posted.attachments and len(records) == 2
    assert [m.id for m in bot_messages(w.channel)] == [posted.id]


async def test_a_failed_post_whose_failure_cannot_be_recorded_is_tried_again(simcord_env, simcord_bot,
                                                                             monkeypatch) -> None:
    w = make_world(simcord_env)
    db = simcord_bot.studio.database
    fail_first(monkeypatch, db.jobs, "delivery_failed", BROKEN)
    with gpu_busy(simcord_bot):
        result = await w.alice.slash(w.channel, "imagine", prompt="a crane", steps=2)
        fail_the_result(simcord_env, simcord_bot, "*", 503, times=1)
    posted = await final(result, timeout=30)
    row = await eventually_row(db, (await db.jobs.history(user_id=w.alice.id)).rows[0].job_id,
                               lambda r: r.status == "delivered")
    assert row.result_message_id == posted.id and posted.attachments


async def test_a_status_message_met_by_a_locked_job_log_is_recorded_all_the_same(simcord_env, simcord_bot,
                                                                                 monkeypatch) -> None:
    w = make_world(simcord_env)
    db = simcord_bot.studio.database
    fail_first(monkeypatch, db.jobs, "set_status_message", LOCKED, times=2)
    with gpu_busy(simcord_bot):
        result = await w.alice.slash(w.channel, "imagine", prompt="a patient heron")
        job_id = (await db.jobs.history(user_id=w.alice.id)).rows[0].job_id
        row = await eventually_row(db, job_id, lambda r: r.status_message_id is not None)
        assert row.status_message_id == result.response.id  # a crash now would still find it


@pytest.mark.parametrize("error", [aiohttp.ClientOSError(104, "Connection reset by peer"), TimeoutError(),
                                   OSError(101, "Network is unreachable")])
async def test_a_status_that_could_not_be_shown_for_any_reason_leaves_the_result_to_the_channel(
        simcord_env, simcord_bot, monkeypatch, error) -> None:
    async def unreachable(self: InteractionOrigin, text: str, view: Any = None) -> Any:
        raise error

    monkeypatch.setattr(InteractionOrigin, "open_status", unreachable)
    w = make_world(simcord_env)
    await w.alice.slash(w.channel, "imagine", prompt="a lark", steps=2)
    posted = await final_in(w.channel, timeout=30)
    assert posted.attachments and "a lark" in posted.content


@pytest.mark.parametrize("count", [1, 2])
async def test_a_result_whose_files_are_gone_says_so_instead_of_being_retried_forever(
        simcord_env, simcord_bot, monkeypatch, count) -> None:
    real_render = simcord_bot.delivery._render  # noqa: SLF001

    async def files_deleted_first(row: Any, images: Any, *args: Any) -> Any:
        for image in images:  # an admin cleaned outputs/ by hand
            Path(image.path).unlink(missing_ok=True)
        return await real_render(row, images, *args)

    monkeypatch.setattr(simcord_bot.delivery, "_render", files_deleted_first)
    w = make_world(simcord_env)
    db = simcord_bot.studio.database
    posted = await final(await w.alice.slash(w.channel, "imagine", prompt="a lost fox", steps=2, count=count),
                         timeout=30)
    assert "no longer stored" in posted.content and not posted.attachments and is_final(posted.content, posted)
    row = await eventually_row(db, (await db.jobs.history(user_id=w.alice.id)).rows[0].job_id,
                               lambda r: r.status == "delivered")
    assert row.delivery_attempts == 0 and row.result_message_id == posted.id
