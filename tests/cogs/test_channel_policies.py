"""Per-channel policies (/easel settings channel:): a channel's NSFW policy, default model, allowed
commands and per-member cap over the server's, and /easel status showing what is in force where it runs."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace
from typing import Any

import pytest

from cogs.utils.policy import channel_ids
from config import Config
from tests.cogs.helpers import final, gpu_busy, make_world, refusal

WORD = "a nsfwword cat"  # tests/cogs/conftest.py: "nsfwword" is the configured NSFW word


@pytest.fixture
def bot_config(bot_config: Config) -> Config:
    """A second model name on the same tiny weights, so that a default model can be told apart."""
    return dataclasses.replace(bot_config, models=(dataclasses.replace(bot_config.model, name="other"),))


async def settings(member: Any, where: Any, **options: Any) -> Any:
    """/easel settings run in ``where`` (``channel=`` is the command's own option)."""
    return await member.slash(where, "easel settings", **options)


def job_id_of(result: Any) -> str:
    return result.response.content.rsplit("job `", 1)[1].split("`", 1)[0]


async def model_of(bot: Any, result: Any) -> str:
    row = await bot.studio.database.jobs.get(job_id_of(result))
    assert row is not None
    return str(row.params["model"])


async def test_a_channels_nsfw_policy_overrides_the_servers(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    lenient = w.guild.create_text_channel("lenient")
    await settings(w.admin, w.channel, nsfw="block")
    answer = await settings(w.admin, w.channel, channel=lenient, nsfw="spoiler")
    assert answer.ephemeral and f"**easel settings in <#{lenient.id}>** (updated)" in answer.response.content
    assert "NSFW outside age-restricted channels: spoiler (this channel)" in answer.response.content
    message = await final(await w.alice.slash(lenient, "imagine", prompt=WORD, steps=2))
    assert message.attachments[0].filename.startswith("SPOILER_")
    refused = await w.alice.slash(w.channel, "imagine", prompt=WORD, steps=2)
    assert "not allowed in this channel (NSFW)" in refusal(refused)  # the server's block, elsewhere
    server = await settings(w.admin, w.channel)
    assert "NSFW outside age-restricted channels: block" in server.response.content  # the server's, unchanged


async def test_a_channels_default_model_is_used_when_the_member_picks_none(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    answer = await settings(w.admin, w.channel, channel=w.channel, default_model="other")
    assert "Default model: other (this channel)" in answer.response.content
    assert await model_of(simcord_bot, await w.alice.slash(w.channel, "imagine", prompt="a cat", steps=2)) == "other"
    picked = await w.alice.slash(w.channel, "imagine", prompt="a cat", steps=2, model="tiny")
    assert await model_of(simcord_bot, picked) == "tiny"  # the member's pick wins
    elsewhere = w.guild.create_text_channel("elsewhere")
    assert await model_of(simcord_bot, await w.alice.slash(elsewhere, "imagine", prompt="a cat", steps=2)) == "tiny"


async def test_a_command_not_allowed_in_a_channel_is_refused_privately(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    answer = await settings(w.admin, w.channel, allowed_commands="vary, /paint")  # this channel
    assert "Commands: /vary, /paint (this channel)" in answer.response.content
    refused = await w.alice.slash(w.channel, "imagine", prompt="a cat")
    assert refusal(refused) == "/imagine is not allowed in this channel. Here you can use /vary, /paint."
    assert (await simcord_bot.studio.database.jobs.history(user_id=w.alice.id)).total == 0
    other = w.guild.create_text_channel("other")
    assert not (await w.alice.slash(other, "imagine", prompt="a cat", steps=2)).ephemeral
    again = await settings(w.admin, w.channel, allowed_commands="all")
    assert "Commands: all" in again.response.content
    assert not (await w.alice.slash(w.channel, "imagine", prompt="a cat", steps=2)).ephemeral


async def test_an_unknown_command_name_is_refused_with_the_known_ones(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    refused = await settings(w.admin, w.channel, allowed_commands="imagine, dance")
    assert refusal(refused).startswith("Unknown command dance: use some of imagine, vary, paint")
    assert await simcord_bot.studio.database.channels.channel(w.channel.id) is None


async def test_a_channel_cap_limits_each_member_there_only(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    answer = await settings(w.admin, w.channel, channel=w.channel, per_user_cap=1)
    assert "Jobs per member: 1 (this channel)" in answer.response.content
    other = w.guild.create_text_channel("other")
    with gpu_busy(simcord_bot):
        assert not (await w.alice.slash(w.channel, "imagine", prompt="one", steps=2)).ephemeral
        refused = await w.alice.slash(w.channel, "imagine", prompt="two", steps=3)
        assert "allows 1 job(s) per member at a time" in refusal(refused)
        assert not (await w.alice.slash(other, "imagine", prompt="three", steps=4)).ephemeral  # the server's 4


async def test_reset_makes_a_channel_follow_the_server_again(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    await settings(w.admin, w.channel, channel=w.channel, nsfw="off", per_user_cap=2)
    refused = await settings(w.admin, w.channel, channel=w.channel, reset=True, nsfw="spoiler")
    assert refusal(refused).startswith("reset makes the channel follow the server's settings")
    answer = await settings(w.admin, w.channel, channel=w.channel, reset=True)
    assert "(reset to the server's)" in answer.response.content
    assert "NSFW outside age-restricted channels: block (server)" in answer.response.content
    assert await simcord_bot.studio.database.channels.channel(w.channel.id) is None


async def test_server_channel_lists_cannot_be_mixed_with_a_channels_settings(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    refused = await settings(w.admin, w.channel, channel=w.channel, enable_channel=w.channel)
    assert refusal(refused).startswith("enable_channel and disable_channel are server settings")
    assert (await simcord_bot.studio.database.settings.guild(w.guild.id)).enabled_channels == ()


async def test_status_shows_the_settings_in_force_in_its_channel(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    await settings(w.admin, w.channel, nsfw="spoiler", per_user_cap=3)
    await settings(w.admin, w.channel, channel=w.channel, default_model="other", allowed_commands="imagine")
    text = (await w.admin.slash(w.channel, "easel status")).response.content
    assert text.endswith(f"**Settings here** (<#{w.channel.id}>)\n"
                         "NSFW outside age-restricted channels: spoiler (server)\n"
                         "Jobs per member: 3 (server)\nDefault model: other (this channel)\n"
                         "Commands: /imagine (this channel)")
    other = w.guild.create_text_channel("other")
    text = (await w.admin.slash(other, "easel status")).response.content
    assert "Default model: tiny (server)\nCommands: all" in text


def test_a_thread_looks_up_its_own_policy_then_its_parent_channels() -> None:
    assert channel_ids(7, SimpleNamespace(parent_id=3)) == (7, 3)  # a thread
    assert channel_ids(7, SimpleNamespace(category_id=3)) == (7,)  # a text channel in a category
    assert channel_ids(7, None) == (7,)
