"""Emoji reactions as members use them: on our results (🔁 🎨 🌸 ✉️ ❌) and on members' own pictures."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import Any

import discord
import pytest

from inference.imaging import parse_parameters
from tests.cogs.conftest import eventually
from tests.cogs.helpers import final, gpu_busy, image_of, is_final, job_posted_as, make_world, png

REROLL, VARY, ANIME, MAIL, DELETE = "\U0001f501", "\U0001f3a8", "\U0001f338", "\u2709\ufe0f", "\u274c"


@dataclasses.dataclass
class Calls:
    started: int = 0
    finished: int = 0


@pytest.fixture
def handled(simcord_env: Any, simcord_bot: Any) -> Calls:
    """Counts the reactions the cog looked at and finished with (its work ends on other threads)."""
    cog = simcord_bot.get_cog("Reactions")
    calls = Calls()
    original = cog.handle

    async def handle(payload: discord.RawReactionActionEvent, emoji: str) -> None:
        calls.started += 1
        try:
            await original(payload, emoji)
        finally:
            calls.finished += 1

    cog.handle = handle
    return calls


async def all_handled(calls: Calls, count: int) -> None:
    await eventually(lambda: calls.started == calls.finished == count)


def replies_to(channel: Any, message: Any, check: Callable[[discord.Message], bool] = lambda m: True) -> list[Any]:
    return [m for m in channel.history() if m.author.bot and m.reference is not None
            and m.reference.message_id == message.id and check(m)]


async def result_replying_to(channel: Any, message: Any) -> discord.Message:
    """The bot's reply to ``message`` once it shows a finished job."""
    found = await eventually(lambda: replies_to(channel, message, lambda m: is_final(m.content, m)))
    return found[-1]


async def job_of(bot: Any, message: Any) -> Any:
    row = await job_posted_as(bot, message)
    assert row is not None, f"no job posted as message {message.id}"
    return row


async def a_result(w: Any, prompt: str = "a red fox", seed: int = 42) -> Any:
    return await final(await w.alice.slash(w.channel, "imagine", prompt=prompt, seed=seed, steps=2))


def exists(channel: Any, message: Any) -> bool:
    return any(m.id == message.id for m in channel.history())


async def test_reroll_replies_with_a_new_result_of_a_new_seed(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    original = await a_result(w)
    await w.bob.react(original, REROLL)
    reroll = await result_replying_to(w.channel, original)
    row = await job_of(simcord_bot, reroll)
    assert row.kind == "imagine" and row.user_id == w.bob.id  # the member who reacted owns the reroll
    assert row.params["prompt"] == "a red fox" and row.params["seed"] != 42
    assert f"seed `{row.params['seed']}`" in reroll.content
    assert parse_parameters((await image_of(reroll)).info["parameters"])["Seed"] == str(row.params["seed"])


async def test_vary_on_a_result_keeps_its_prompt(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    original = await a_result(w, prompt="a blue owl")
    await w.alice.react(original, VARY)
    varied = await result_replying_to(w.channel, original)
    row = await job_of(simcord_bot, varied)
    assert row.kind == "vary" and row.params["prompt"] == "a blue owl"
    assert (await image_of(varied)).size == (64, 64)


async def test_anime_on_a_result_paints_it(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    original = await a_result(w)
    await w.alice.react(original, ANIME)
    painted = await result_replying_to(w.channel, original)
    assert "AnimeGAN2" in painted.content
    assert (await job_of(simcord_bot, painted)).kind == "anime"


async def test_mail_sends_the_image_with_its_parameters_by_dm(simcord_env) -> None:
    w = make_world(simcord_env)
    original = await a_result(w, prompt="a green frog")
    await w.bob.react(original, MAIL)
    dms = await eventually(lambda: w.bob.user.dm_channel.history())
    assert "a green frog" in dms[-1].content and "Seed: 42" in dms[-1].content
    sent = await image_of(dms[-1])
    assert parse_parameters(sent.info["parameters"])["prompt"] == "a green frog"
    assert not w.alice.user.dm_channel.history()


async def test_mail_of_a_picture_without_parameters_sends_a_clean_png(simcord_env, handled) -> None:
    w = make_world(simcord_env)
    picture = await w.alice.send(w.channel, "", attachments=[("cat.png", png(colour=(1, 2, 3)))])
    await w.alice.react(picture, MAIL)
    dms = await eventually(lambda: w.alice.user.dm_channel.history())
    assert "```" not in dms[-1].content
    sent = await image_of(dms[-1])
    assert sent.format == "PNG" and sent.size == (96, 80) and "parameters" not in sent.info


def close_dms(env: Any, member: Any) -> Any:
    """The member's DMs refuse the bot (Discord's 403 "Cannot send messages to this user")."""
    dm = member.user.dm_channel
    env.inject_error("POST", f"/channels/{dm.id}/messages", status=403, code=50007,
                     message="Cannot send messages to this user", times=None)
    return dm


def dm_attempts(env: Any, dm: Any) -> int:
    return len([r for r in env.http_requests if r.method == "POST" and r.path == f"/channels/{dm.id}/messages"])


async def test_mail_with_dms_closed_says_how_to_open_them(simcord_env, handled) -> None:
    w = make_world(simcord_env)
    original = await a_result(w)
    dm = close_dms(simcord_env, w.alice)
    await w.alice.react(original, MAIL)
    await all_handled(handled, 1)
    [reply] = replies_to(w.channel, original)
    assert "cannot send you direct messages" in reply.content and not dm.history()
    assert dm_attempts(simcord_env, dm) == 1  # the DM that failed is not tried again to say that it failed


async def test_the_requester_can_delete_with_a_cross(simcord_env, handled) -> None:
    w = make_world(simcord_env)
    original = await a_result(w)
    await w.alice.react(original, DELETE)
    await all_handled(handled, 1)
    assert not exists(w.channel, original)


async def test_another_member_cannot_delete_and_is_told_privately(simcord_env, handled) -> None:
    w = make_world(simcord_env)
    original = await a_result(w)
    await w.bob.react(original, DELETE)
    await all_handled(handled, 1)
    assert exists(w.channel, original)
    [dm] = w.bob.user.dm_channel.history()
    assert "Only the member who asked for this image (or a moderator)" in dm.content
    assert f"/channels/{w.guild.id}/{w.channel.id}/{original.id}" in dm.content  # which reaction it answers
    assert not replies_to(w.channel, original)  # nothing said in front of the channel


async def test_with_dms_closed_a_refusal_is_a_reply_that_goes_away(simcord_env, handled) -> None:
    w = make_world(simcord_env)
    original = await a_result(w)
    dm = close_dms(simcord_env, w.bob)
    await w.bob.react(original, DELETE)
    await all_handled(handled, 1)
    assert exists(w.channel, original)
    [reply] = replies_to(w.channel, original)
    assert "Only the member who asked for this image (or a moderator)" in reply.content
    assert w.bob.mention in reply.content and not dm.history()
    [sent] = [e.json for e in simcord_env.http_requests if isinstance(e.json, dict)
              and e.json.get("content") == reply.content]
    assert sent["allowed_mentions"] == {"parse": [], "replied_user": False}  # named, not pinged
    await simcord_env.advance_time(30)
    assert not exists(w.channel, reply) and exists(w.channel, original)


async def test_a_moderator_can_delete_anyones_result(simcord_env, handled) -> None:
    w = make_world(simcord_env)
    original = await a_result(w)
    await w.admin.react(original, DELETE)
    await all_handled(handled, 1)
    assert not exists(w.channel, original)


async def test_vary_and_anime_work_on_a_members_own_picture(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    picture = await w.alice.send(w.channel, "", attachments=[("cat.png", png())])
    await w.bob.react(picture, VARY)
    varied = await result_replying_to(w.channel, picture)
    row = await job_of(simcord_bot, varied)
    assert row.kind == "vary" and row.user_id == w.bob.id
    width, height = (await image_of(varied)).size
    assert width > height  # the source's landscape aspect, not the default square
    await w.alice.react(picture, ANIME)
    painted = await eventually(lambda: [m for m in replies_to(w.channel, picture, lambda m: is_final(m.content, m))
                                        if "AnimeGAN2" in m.content])
    assert (await job_of(simcord_bot, painted[0])).kind == "anime"


async def test_reroll_of_a_members_picture_is_explained(simcord_env, handled) -> None:
    w = make_world(simcord_env)
    picture = await w.alice.send(w.channel, "", attachments=[("cat.png", png())])
    await w.alice.react(picture, REROLL)
    await all_handled(handled, 1)
    [dm] = w.alice.user.dm_channel.history()
    assert "rerolls work on my own results" in dm.content and not replies_to(w.channel, picture)


async def test_reactions_on_text_messages_do_nothing(simcord_env, simcord_bot, handled) -> None:
    w = make_world(simcord_env)
    text = await w.alice.send(w.channel, "what a nice day")
    for emoji in (REROLL, VARY, ANIME, MAIL, DELETE):
        await w.bob.react(text, emoji)
    await all_handled(handled, 5)
    assert [m.id for m in w.channel.history()] == [text.id] and exists(w.channel, text)
    assert not w.bob.user.dm_channel.history()
    assert (await simcord_bot.studio.database.jobs.history(user_id=w.bob.id)).total == 0


async def test_a_result_in_a_channel_not_enabled_gets_told_where_easel_works(simcord_env, simcord_bot,
                                                                           handled) -> None:
    w = make_world(simcord_env)
    original = await a_result(w)
    other = w.guild.create_text_channel("easel-only")
    await simcord_bot.studio.database.settings.update_guild(w.guild.id, enabled_channels=(other.id,))
    await w.alice.react(original, REROLL)
    await all_handled(handled, 1)
    [dm] = w.alice.user.dm_channel.history()
    assert "not enabled in this channel" in dm.content and f"<#{other.id}>" in dm.content
    assert not replies_to(w.channel, original)
    assert (await simcord_bot.studio.database.jobs.history(user_id=w.alice.id)).total == 1
    await w.alice.react(original, DELETE)  # cleaning up still works
    await all_handled(handled, 2)
    assert not exists(w.channel, original)


async def test_members_pictures_in_a_channel_not_enabled_are_left_alone(simcord_env, simcord_bot,
                                                                       handled) -> None:
    w = make_world(simcord_env)
    other = w.guild.create_text_channel("easel-only")
    await simcord_bot.studio.database.settings.update_guild(w.guild.id, enabled_channels=(other.id,))
    picture = await w.alice.send(w.channel, "", attachments=[("cat.png", png())])
    await w.bob.react(picture, VARY)
    await all_handled(handled, 1)
    assert [m.id for m in w.channel.history()] == [picture.id]
    assert (await simcord_bot.studio.database.jobs.history(user_id=w.bob.id)).total == 0


async def test_the_bots_own_reactions_are_ignored(simcord_env, simcord_bot, handled) -> None:
    w = make_world(simcord_env)
    original = await a_result(w)
    seen: list[int] = []

    async def listener(payload: discord.RawReactionActionEvent) -> None:
        seen.append(payload.user_id)

    simcord_bot.add_listener(listener, "on_raw_reaction_add")
    posted = simcord_bot.get_channel(w.channel.id).get_partial_message(original.id)
    with simcord_env.time_context():
        await posted.add_reaction(REROLL)
        await posted.add_reaction(DELETE)
    await simcord_env.settle()
    assert seen == [simcord_bot.user.id] * 2  # they reached the bot as reaction events...
    assert handled.started == 0  # ...and were not acted on
    assert exists(w.channel, original) and not replies_to(w.channel, original)


def channel_posts(env: Any, channel: Any) -> list[dict]:
    """The bodies of the messages the bot posted in ``channel`` (not through an interaction)."""
    return [r.json for r in env.http_requests if r.method == "POST" and r.path == f"/channels/{channel.id}/messages"
            and isinstance(r.json, dict)]


async def test_a_reactions_status_reply_carries_the_nonce_a_restart_posts_with(simcord_env, simcord_bot) -> None:
    """The "Queued" reply of a reaction is recorded in the job log only once Discord answered. Should
    the bot die in between, the restarted poster finds no recorded message and posts the job's first
    channel message: it must carry the very nonce of that reply (with enforce_nonce), so that Discord,
    within its nonce window, hands back the reply, Cancel button and all, to become the result instead
    of a second message (simcord ignores nonces; tests/e2e/test_bot_reaction_restart.py plays the crash
    against a Discord that enforces them)."""
    w = make_world(simcord_env)
    db = simcord_bot.studio.database
    original = await a_result(w)
    with gpu_busy(simcord_bot):
        await w.bob.react(original, REROLL)
        [status] = await eventually(lambda: replies_to(w.channel, original))
        job = (await db.jobs.history(user_id=w.bob.id)).rows[0].job_id
        for _ in range(600):  # recorded just after Discord answered
            if (await db.jobs.get(job)).status_message_id == status.id:
                break
            await asyncio.sleep(0.05)
        [reply] = channel_posts(simcord_env, w.channel)
        assert reply.get("nonce") and reply.get("enforce_nonce") is True
        # As after a crash between the reply and its record: the job log knows no message, nor does memory.
        await db.jobs._conn.execute("UPDATE jobs SET status_message_id = NULL WHERE job_id = ?", (job,))  # noqa: SLF001
        simcord_bot.delivery.tracked.clear()
    await eventually(lambda: len(channel_posts(simcord_env, w.channel)) == 2)
    replacement = channel_posts(simcord_env, w.channel)[1]
    assert replacement["nonce"] == reply["nonce"] and replacement["enforce_nonce"] is True
