"""/describe and Apps > Describe: prompt suggestions with Imagine 1-4 buttons (tiny random BLIP)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from config import Config
from inference.describe.source import NOT_CONFIGURED
from tests.cogs.conftest import eventually
from tests.cogs.helpers import assert_no_pings, button_ids, final, job_posted_as, make_world, png, refusal


@pytest.fixture
def bot_config(bot_config: Config, tiny_blip_dir: Path) -> Config:
    return dataclasses.replace(bot_config, describe=dataclasses.replace(
        bot_config.describe, source=str(tiny_blip_dir), device="cpu", suggestions=4))


async def describe(w: Any) -> Any:
    return await final(await w.alice.slash(w.channel, "describe", image=("cat.png", png((64, 48)))))


async def suggestions(bot: Any, job_id: str) -> list[str]:
    return (await bot.studio.database.jobs.get(job_id)).params["result"]


def imagine_buttons(message: Any) -> list[str]:
    return [i for i in button_ids(message) if i.startswith("easel:i:")]


async def test_describe_answers_with_numbered_suggestions_and_imagine_buttons(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    message = await describe(w)
    row = await job_posted_as(simcord_bot, message)
    texts = await suggestions(simcord_bot, row.job_id)
    assert row.kind == "describe" and 1 <= len(texts) <= 4 and len(set(texts)) == len(texts)
    assert not message.attachments  # text only: no image is stored or sent
    assert await simcord_bot.studio.database.images.for_job(row.job_id) == []
    assert imagine_buttons(message) == [f"easel:i:{row.job_id}:{i}" for i in range(len(texts))]
    for i in range(len(texts)):
        assert f"**{i + 1}.**" in message.content
    assert_no_pings(simcord_env)


async def test_imagine_2_makes_an_image_from_suggestion_2_for_whoever_clicks(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    message = await describe(w)
    row = await job_posted_as(simcord_bot, message)
    texts = await suggestions(simcord_bot, row.job_id)
    assert len(texts) >= 2  # BLIP's conditional prefixes make them distinct
    made = await final(await w.bob.click(message, custom_id=f"easel:i:{row.job_id}:1"))
    new = await job_posted_as(simcord_bot, made)
    assert new.kind == "imagine" and new.user_id == w.bob.id and new.params["prompt"] == texts[1]
    assert made.attachments


async def test_describe_context_menu_on_a_members_picture(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    picture = await w.alice.send(w.channel, "", attachments=[("dog.png", png((64, 64)))])
    result = await w.bob.context_menu(w.channel, "Describe", picture)
    message = await final(result)
    row = await job_posted_as(simcord_bot, message)
    assert not result.ephemeral and row.kind == "describe" and row.user_id == w.bob.id
    assert imagine_buttons(message)


async def test_the_buttons_work_from_the_job_log_alone_as_after_a_restart(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    message = await describe(w)
    row = await job_posted_as(simcord_bot, message)
    texts = await suggestions(simcord_bot, row.job_id)
    # As after a restart: nothing in memory knows the job; only its row holds the suggestions.
    simcord_bot.delivery.tracked.clear()
    simcord_bot.studio._jobs.clear()  # noqa: SLF001
    made = await final(await w.alice.click(message, custom_id=f"easel:i:{row.job_id}:0"))
    assert (await job_posted_as(simcord_bot, made)).params["prompt"] == texts[0]


async def test_imagine_on_a_deleted_describe_job_is_refused_privately(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    message = await describe(w)
    row = await simcord_bot.studio.database.jobs.get(
        (await job_posted_as(simcord_bot, message)).job_id)
    await simcord_bot.studio.database.forget(w.alice.id)
    result = await w.bob.click(message, custom_id=f"easel:i:{row.job_id}:0")
    assert "no longer stored" in refusal(result)


async def test_withheld_source_is_refused_privately(simcord_env, simcord_bot, monkeypatch) -> None:
    from cogs.utils import gate

    w = make_world(simcord_env)
    picture = await w.alice.send(w.channel, "", attachments=[("x.png", png((64, 64)))])
    await simcord_bot.studio.database.settings.update_guild(w.guild.id, nsfw_policy="block")

    async def flagged(bot: Any, message: Any) -> gate.Flags:
        return gate.Flags(checker=True)

    monkeypatch.setattr(gate, "message_flags", flagged)
    result = await w.bob.context_menu(w.channel, "Describe", picture)
    assert refusal(result) == gate.WITHHELD_SOURCE
    assert (await simcord_bot.studio.database.jobs.history(user_id=w.bob.id)).total == 0


async def test_suggestions_with_an_nsfw_word_follow_the_channel_policy(simcord_env, simcord_bot, monkeypatch) -> None:
    from inference.describe import captioner

    monkeypatch.setattr(captioner.Captioner, "suggest",
                        lambda self, image, count, max_chars: ["a calm lake", "a nsfwword scene"])
    w = make_world(simcord_env)
    await simcord_bot.studio.database.settings.update_guild(w.guild.id, nsfw_policy="spoiler")
    spoilered = await describe(w)
    row = await job_posted_as(simcord_bot, spoilered)
    assert "||a nsfwword scene||" in spoilered.content and len(imagine_buttons(spoilered)) == 2
    await simcord_bot.studio.database.settings.update_guild(w.guild.id, nsfw_policy="block")
    blocked = await describe(w)
    assert "nsfwword" not in blocked.content and "1 suggestion(s) not shown" in blocked.content
    assert [b.rsplit(":", 1)[1] for b in imagine_buttons(blocked)] == ["0"]
    assert (await suggestions(simcord_bot, row.job_id)) == ["a calm lake", "a nsfwword scene"]  # stored whole


async def test_no_describe_model_configured_is_a_friendly_private_message(simcord_env, simcord_bot) -> None:
    simcord_bot.studio.captions.source = ""
    w = make_world(simcord_env)
    result = await w.alice.slash(w.channel, "describe", image=("cat.png", png((64, 48))))
    assert refusal(result) == NOT_CONFIGURED
    await eventually(lambda: True)
    assert (await simcord_bot.studio.database.jobs.history(user_id=w.alice.id)).total == 0



async def test_its_status_line_says_describing_not_painting(simcord_env, simcord_bot, monkeypatch) -> None:
    from cogs.utils.text import progress_text

    kinds: list[str] = []
    expect = simcord_bot.delivery.expect

    def recording(job_id: str, **kwargs: Any) -> None:
        kinds.append(kwargs.get("kind", ""))
        expect(job_id, **kwargs)

    monkeypatch.setattr(simcord_bot.delivery, "expect", recording)
    await describe(make_world(simcord_env))
    assert kinds == ["describe"]
    assert progress_text("j", 1, 2, "describe").startswith("\U0001f50d Describing")
    assert progress_text("j", 1, 2, "upscale").startswith("\U0001f5bc\ufe0f Upscaling")
    assert progress_text("j", 1, 2, "imagine").startswith("\U0001f3a8 Painting")
