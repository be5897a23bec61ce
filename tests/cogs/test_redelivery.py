"""Delivery under faults, in process: posts Discord did not take are tried again without a restart,
a refusal for lack of permissions is told privately and ends as undeliverable, a status message a
moderator deleted is replaced, and after a restart the original status message becomes the result."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from cogs.utils.posting import nonce_for
from config import Config
from tests.cogs.conftest import eventually
from tests.cogs.helpers import button_ids, final, final_in, gpu_busy, is_final, job_posted_as, make_world

REROLL = "\U0001f501"


@pytest.fixture
def bot_config(bot_config: Config) -> Config:
    """Retries after 50 ms (doubling to 200 ms); three refusals make a result undeliverable."""
    return dataclasses.replace(bot_config, discord=dataclasses.replace(
        bot_config.discord, delivery_retry_s=0.05, delivery_retry_max_s=0.2, delivery_attempts=3))


def fail_the_result(env: Any, bot: Any, path: str, status: int, times: int | None) -> None:
    """From the moment the result is rendered, ``times`` requests matching ``path`` get ``status``."""
    real_render = bot.delivery._render
    armed = []

    async def render(*args: Any, **kwargs: Any) -> Any:
        if not armed:
            armed.append(True)
            env.inject_error("PATCH", path, status=status, code=50013 if status == 403 else 0,
                             message="Missing Permissions" if status == 403 else "Service Unavailable", times=times)
        return await real_render(*args, **kwargs)

    bot.delivery._render = render


def replies_to(channel: Any, message_id: int) -> list[Any]:
    return [m for m in channel.history() if m.author.bot and m.reference is not None
            and m.reference.message_id == message_id]


async def a_result(w: Any) -> Any:
    return await final(await w.alice.slash(w.channel, "imagine", prompt="a red fox", seed=42, steps=2))


async def reroll(w: Any, original: Any) -> Any:
    """A 🔁 reaction on ``original``; returns the status reply of its job."""
    await w.bob.react(original, REROLL)
    return await eventually(lambda: next(iter(replies_to(w.channel, original.id)), None))


async def test_a_post_discord_refused_with_5xx_is_retried_by_the_running_process(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    original = await a_result(w)
    with gpu_busy(simcord_bot):
        status = await reroll(w, original)
        fail_the_result(simcord_env, simcord_bot, "/channels/*/messages/*", 503, times=4)
    posted = await eventually(lambda: next((m for m in replies_to(w.channel, original.id)
                                            if is_final(m.content, m)), None), timeout=30)
    assert posted.id == status.id and posted.attachments  # no restart: the loop posted it
    row = await job_posted_as(simcord_bot, posted)
    assert row is not None and row.status == "delivered" and row.delivery_attempts == 4


async def test_missing_permissions_are_told_privately_once_and_the_job_becomes_undeliverable(
        simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    db = simcord_bot.studio.database
    with gpu_busy(simcord_bot):
        result = await w.alice.slash(w.channel, "imagine", prompt="a hidden lake")
        fail_the_result(simcord_env, simcord_bot, "*", 403, times=None)
    job_id = (await db.jobs.history(user_id=w.alice.id)).rows[0].job_id
    row = await eventually_row(db, job_id, lambda r: r.undeliverable)
    assert row.status == "done" and row.delivery_attempts == 3 and row.state == "undeliverable"
    assert row.delivery_error.startswith("missing permissions")
    notices = [m for m in w.alice.user.dm_channel.history() if f"`{job_id}`" in m.content]
    assert len(notices) == 1 and "permission" in notices[0].content and "Attach Files" in notices[0].content
    assert not is_final(result.response.content, result.response)
    await asyncio.sleep(0.5)  # several retry intervals: an undeliverable job is not tried again
    assert (await db.jobs.get(job_id)).delivery_attempts == 3
    history = await w.alice.slash(w.channel, "history")
    assert "undeliverable" in str(history.response.embeds[0].to_dict())


async def eventually_row(db: Any, job_id: str, check: Any, timeout: float = 30) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        row = await db.jobs.get(job_id)
        if row is not None and check(row):
            return row
        assert asyncio.get_running_loop().time() < deadline, f"timed out; the job is {row}"
        await asyncio.sleep(0.05)


async def test_a_reaction_jobs_status_deleted_by_a_moderator_is_replaced_by_a_new_reply(
        simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    original = await a_result(w)
    with gpu_busy(simcord_bot):
        status = await reroll(w, original)
        await w.admin.delete(status)
    posted = await eventually(lambda: next((m for m in replies_to(w.channel, original.id)
                                            if is_final(m.content, m)), None), timeout=30)
    assert posted.id != status.id and posted.attachments
    row = await job_posted_as(simcord_bot, posted)
    assert row is not None and row.status == "delivered" and row.status_message_id == posted.id
    sent = [r.json for r in simcord_env.http_requests if r.method == "POST" and isinstance(r.json, dict)
            and r.json.get("nonce") == nonce_for(row.job_id, status.id)]
    assert len(sent) == 1 and sent[0]["enforce_nonce"] is True  # a repeat after a crash returns this message


async def test_after_a_restart_the_original_status_becomes_the_result(simcord_env, simcord_bot) -> None:
    """The process that showed "Queued" is gone (its memory of the job too): the result is edited into
    that same message, Cancel button and all replaced, instead of a second message."""
    w = make_world(simcord_env)
    with gpu_busy(simcord_bot):
        result = await w.alice.slash(w.channel, "imagine", prompt="a patient heron")
        assert any(i.startswith("easel:c:") for i in button_ids(result.response))
        simcord_bot.delivery.tracked.clear()  # as after a restart: only the job log knows the message
    posted = await final_in(w.channel)
    assert posted.id == result.response.id and posted.attachments
    assert not any(i.startswith("easel:c:") for i in button_ids(posted))
    assert [m.id for m in w.channel.history() if m.author.bot] == [posted.id]


async def test_cancel_after_a_restart_updates_the_original_status(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    with gpu_busy(simcord_bot):
        await w.bob.slash(w.channel, "imagine", prompt="ahead")
        result = await w.alice.slash(w.channel, "imagine", prompt="never mind")
        simcord_bot.delivery.tracked.clear()
        cancel = next(i for i in button_ids(result.response) if i.startswith("easel:c:"))
        await w.alice.click(result.response, custom_id=cancel)
    await eventually(lambda: "Cancelled" in result.response.content and not button_ids(result.response))


async def test_interaction_tokens_are_dropped_once_posted_and_once_expired(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    db = simcord_bot.studio.database
    message = await final(await w.alice.slash(w.channel, "imagine", prompt="a short errand", steps=2))
    posted = await job_posted_as(simcord_bot, message)  # recorded right after Discord took the post
    assert posted.status == "delivered" and posted.interaction_token is None
    await db.jobs.add(job_id="stale", kind="imagine", user_id=w.bob.id, guild_id=w.guild.id, channel_id=w.channel.id,
                      params={"prompt": "waiting"}, interaction_id=1, interaction_token="old-token", application_id=2)
    await db.jobs._conn.execute("UPDATE jobs SET created_at = created_at - 16 * 60 WHERE job_id = 'stale'")  # noqa: SLF001
    await simcord_bot.delivery.redeliver()  # what every start (and the retry loop, each minute) does
    assert (await db.jobs.get("stale")).interaction_token is None
