"""/prefs: a member's own defaults (aspect, model, negative prompt, sampler) filling the options they
leave out of /imagine, /vary and /paint, removed by /forget; and the DM when a long job is done."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from config import Config
from storage import UserPrefs
from tests.cogs.conftest import eventually
from tests.cogs.helpers import button_ids, final, gpu_busy, image_of, make_world, png, refusal


@pytest.fixture
def bot_config(bot_config: Config) -> Config:
    """A second model name on the same tiny weights, so that a preferred model can be told apart."""
    return dataclasses.replace(bot_config, models=(dataclasses.replace(bot_config.model, name="other"),))


def job_id_of(result: Any) -> str:
    return result.response.content.rsplit("job `", 1)[1].split("`", 1)[0]


async def params_of(bot: Any, result: Any) -> dict[str, Any]:
    row = await bot.studio.database.jobs.get(job_id_of(result))
    assert row is not None, refusal(result)
    return dict(row.params)


async def until_delivered(bot: Any, job_id: str) -> None:
    """Until the job log records the job's result as posted (right after Discord took it)."""
    for _ in range(1200):
        row = await bot.studio.database.jobs.get(job_id)
        if row is not None and row.status == "delivered":
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} was not recorded as posted")


async def set_prefs(member: Any, channel: Any, **options: Any) -> Any:
    return await member.slash(channel, "prefs set", **options)


async def test_prefs_are_set_shown_and_cleared(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    shown = await w.alice.slash(w.channel, "prefs show")
    assert shown.ephemeral and "Model: not set" in shown.response.content and "DM when done: never" in shown.response.content
    answer = await set_prefs(w.alice, w.channel, aspect="wide", model="other", negative="blurry", sampler="ddim",
                             private=True, dm_when_done=120)
    assert answer.ephemeral and answer.response.content.startswith(
        "**Your defaults** (updated)\nAspect: `wide`\nModel: `other`\nNegative prompt: `blurry`\n"
        "Sampler: `ddim`\nResults: by DM\nDM when done: when a job takes 2 min")
    assert "Model: `other`" in (await w.alice.slash(w.channel, "prefs show")).response.content
    assert "Model: not set" in (await w.bob.slash(w.channel, "prefs show")).response.content  # each member their own
    cleared = await w.alice.slash(w.channel, "prefs clear", option="negative")
    assert "Negative prompt: not set" in cleared.response.content and "Model: `other`" in cleared.response.content
    await w.alice.slash(w.channel, "prefs clear")
    assert await simcord_bot.studio.database.settings.user(w.alice.id) == UserPrefs(w.alice.id)


async def test_unknown_models_and_samplers_are_refused(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    assert refusal(await set_prefs(w.alice, w.channel, model="nope")) == \
        "There is no model called 'nope'. Known: tiny, other."
    assert refusal(await set_prefs(w.alice, w.channel, sampler="jazz")).startswith(
        "There is no sampler called 'jazz'. Known: euler,")
    assert refusal(await set_prefs(w.alice, w.channel)).startswith("Give at least one option to set.")
    assert await simcord_bot.studio.database.settings.user(w.alice.id) == UserPrefs(w.alice.id)
    offered = await w.alice.autocomplete(w.channel, "prefs set", "model", "oth")
    assert [c["value"] for c in offered] == ["other"]


async def test_imagine_uses_the_prefs_for_options_left_out_and_the_members_own_when_given(
        simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    await set_prefs(w.alice, w.channel, aspect="wide", model="other", negative="blurry", sampler="ddim")
    with gpu_busy(simcord_bot):  # only the recorded jobs are looked at
        plain = await params_of(simcord_bot, await w.alice.slash(w.channel, "imagine", prompt="a cat", steps=2))
        assert (plain["model"], plain["negative_prompt"], plain["scheduler"]) == ("other", "blurry", "ddim")
        assert plain["width"] > plain["height"]  # wide
        given = await params_of(simcord_bot, await w.alice.slash(
            w.channel, "imagine", prompt="a cat", steps=3, model="tiny", negative="", scheduler="euler",
            aspect="tall"))
        assert (given["model"], given["negative_prompt"], given["scheduler"]) == ("tiny", "", "euler")
        assert given["width"] < given["height"]
        sized = await params_of(simcord_bot, await w.alice.slash(w.channel, "imagine", prompt="a cat", steps=4,
                                                                  width=64, height=64))
        assert sized["width"] == sized["height"] == 64  # a size given: no preferred aspect
        bobs = await params_of(simcord_bot, await w.bob.slash(w.channel, "imagine", prompt="a cat", steps=2))
        assert (bobs["model"], bobs["negative_prompt"]) == ("tiny", "")


async def test_the_members_model_wins_over_the_channels_default(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    await w.admin.slash(w.channel, "easel settings", channel=w.channel, default_model="other")
    await set_prefs(w.alice, w.channel, model="tiny")
    with gpu_busy(simcord_bot):
        alices = await params_of(simcord_bot, await w.alice.slash(w.channel, "imagine", prompt="a cat", steps=2))
        bobs = await params_of(simcord_bot, await w.bob.slash(w.channel, "imagine", prompt="a cat", steps=2))
    assert alices["model"] == "tiny" and bobs["model"] == "other"


async def test_vary_and_paint_use_the_prefs_too(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    await set_prefs(w.alice, w.channel, model="other", negative="blurry", sampler="ddim")
    with gpu_busy(simcord_bot):
        varied = await params_of(simcord_bot, await w.alice.slash(w.channel, "vary", image=("a.png", png((64, 64))),
                                                                   steps=2))
        painted = await params_of(simcord_bot, await w.alice.slash(
            w.channel, "paint", image=("b.png", png((64, 64))), prompt="a hat", region="top", steps=2,
            negative="dots"))
    assert (varied["model"], varied["negative_prompt"], varied["scheduler"]) == ("other", "blurry", "ddim")
    assert (painted["model"], painted["negative_prompt"], painted["scheduler"]) == ("other", "dots", "ddim")


async def test_forget_removes_the_prefs(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    await set_prefs(w.alice, w.channel, model="other", dm_when_done=60)
    await set_prefs(w.bob, w.channel, model="other")
    asked = await w.alice.slash(w.channel, "forget")
    await w.alice.click(asked.response, label="Yes, delete everything")
    settings = simcord_bot.studio.database.settings
    assert await settings.user(w.alice.id) == UserPrefs(w.alice.id)
    assert (await settings.user(w.bob.id)).default_model == "other"


async def test_a_job_that_took_longer_than_the_threshold_sends_a_dm_with_a_link(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    await set_prefs(w.alice, w.channel, dm_when_done=1)
    await set_prefs(w.bob, w.channel, dm_when_done=3600)
    with gpu_busy(simcord_bot):  # both jobs wait in the queue for over a second
        alices = await w.alice.slash(w.channel, "imagine", prompt="a slow cat", steps=2)
        bobs = await w.bob.slash(w.channel, "imagine", prompt="a slow dog", steps=3)
        await asyncio.sleep(1.2)
    posted = await final(alices)
    await final(bobs)
    dms = await eventually(lambda: w.alice.user.dm_channel.history())
    link = f"https://discord.com/channels/{w.guild.id}/{w.channel.id}/{posted.id}"
    assert dms[-1].content.startswith(f"\u2705 Your job `{job_id_of(alices)}` is done (it took ")
    assert dms[-1].content.endswith(link) and not dms[-1].attachments
    await until_delivered(simcord_bot, job_id_of(bobs))
    await w.bob.slash(w.channel, "prefs show")  # a round trip after his job was recorded posted
    assert not w.bob.user.dm_channel.history()  # under his hour


async def test_a_member_with_dms_closed_still_gets_the_result(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    await set_prefs(w.alice, w.channel, dm_when_done=1)
    dm = w.alice.user.dm_channel
    simcord_env.inject_error("POST", f"/channels/{dm.id}/messages", status=403, code=50007,
                             message="Cannot send messages to this user")
    with gpu_busy(simcord_bot):
        result = await w.alice.slash(w.channel, "imagine", prompt="a slow cat", steps=2)
        await asyncio.sleep(1.2)
    assert (await final(result)).attachments
    await eventually(lambda: [r for r in simcord_env.http_requests
                              if r.method == "POST" and r.path == f"/channels/{dm.id}/messages"])
    assert not dm.history()


# ---------------------------------------------------------------------------- private results


async def test_private_results_go_by_dm_and_the_channel_gets_a_note(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    await set_prefs(w.alice, w.channel, private=True)
    result = await w.alice.slash(w.channel, "imagine", prompt="a secret cat", steps=2, seed=5)
    job_id = job_id_of(result)
    dms = await eventually(lambda: w.alice.user.dm_channel.history())
    assert "a secret cat" in dms[-1].content and f"`{job_id}`" in dms[-1].content
    sent = await image_of(dms[-1])
    assert sent.size == (64, 64) and not dms[-1].components  # no buttons in a DM
    await eventually(lambda: result.response.content == f"\u2709\ufe0f Your result is in your DMs \u00b7 job `{job_id}`")
    assert not result.response.attachments and not button_ids(result.response)
    await until_delivered(simcord_bot, job_id)
    bobs = await final(await w.bob.slash(w.channel, "imagine", prompt="a public dog", steps=2))
    assert bobs.attachments  # other members' results are posted as always


async def test_another_members_reactions_and_menus_on_a_private_note_reach_nothing(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    await set_prefs(w.alice, w.channel, private=True)
    result = await w.alice.slash(w.channel, "imagine", prompt="a secret cat", steps=2, seed=5)
    job_id = job_id_of(result)
    await until_delivered(simcord_bot, job_id)
    note = result.response
    assert await simcord_bot.studio.database.images.by_message(note.id) == []  # the note is no image source
    before = len(w.bob.user.dm_channel.history()) if w.bob.user.dm_channel else 0
    for emoji in ("\u2709\ufe0f", "\U0001f501", "\U0001f3a8"):
        await w.bob.react(note, emoji)
    menu = await w.bob.context_menu(w.channel, "Vary image", note)
    assert menu.ephemeral and "image" in menu.response.content  # refused: there is no picture there
    await asyncio.sleep(0.5)
    assert (len(w.bob.user.dm_channel.history()) if w.bob.user.dm_channel else 0) == before
    assert (await simcord_bot.studio.database.jobs.history(user_id=w.bob.id)).total == 0  # 🔁/🎨 made nothing


async def test_a_private_result_is_posted_in_the_channel_when_dms_are_closed(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    await set_prefs(w.alice, w.channel, private=True)
    dm = w.alice.user.dm_channel
    simcord_env.inject_error("POST", f"/channels/{dm.id}/messages", status=403, code=50007,
                             message="Cannot send messages to this user", times=None)
    message = await final(await w.alice.slash(w.channel, "imagine", prompt="a cat", steps=2))
    assert message.attachments and button_ids(message)
    assert "I cannot send you DMs (allow DMs from server members), so posted here." in message.content


async def test_a_private_result_keeps_the_channels_nsfw_treatment_in_the_dm(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    await w.admin.slash(w.channel, "easel settings", nsfw="spoiler")
    await set_prefs(w.alice, w.channel, private=True)
    await w.alice.slash(w.channel, "imagine", prompt="a nsfwword cat", steps=2)
    dms = await eventually(lambda: w.alice.user.dm_channel.history())
    assert dms[-1].attachments[0].filename.startswith("SPOILER_")


async def test_a_private_members_previews_are_not_shown_in_the_channel(simcord_env, simcord_bot, monkeypatch) -> None:
    w = make_world(simcord_env)
    seen: list[str] = []
    real_expect = simcord_bot.delivery.expect

    def expect(job_id: str, **kwargs: Any) -> None:
        seen.append(str(kwargs["previews"]))
        real_expect(job_id, **kwargs)

    monkeypatch.setattr(simcord_bot.delivery, "expect", expect)
    await set_prefs(w.alice, w.channel, private=True)
    with gpu_busy(simcord_bot):
        await w.alice.slash(w.channel, "imagine", prompt="a cat", steps=2)
        await w.bob.slash(w.channel, "imagine", prompt="a cat", steps=2)
    assert seen == ["withheld", "plain"]  # Bob's results are not private
