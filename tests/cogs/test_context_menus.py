"""Apps > Vary image / Anime / Describe / Paint... / Use as control..., on members' pictures and on our results."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from inference.describe.source import NOT_CONFIGURED
from tests.cogs.helpers import button_ids, final, image_of, job_posted_as, make_world, png, refusal

PROMPT, REGION = "easel:paint:prompt", "easel:paint:region"


async def a_picture(w: Any, size: tuple[int, int] = (64, 64)) -> Any:
    return await w.alice.send(w.channel, "", attachments=[("cat.png", png(size))])


async def job_of(bot: Any, message: Any) -> Any:
    row = await job_posted_as(bot, message)
    assert row is not None, f"no job posted as message {message.id}"
    return row


async def test_vary_image_on_a_members_picture(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    picture = await a_picture(w, (96, 64))
    result = await w.bob.context_menu(w.channel, "Vary image", picture)
    message = await final(result)
    assert not result.ephemeral
    row = await job_of(simcord_bot, message)
    assert row.kind == "vary" and row.user_id == w.bob.id and row.request_message_id == picture.id
    width, height = (await image_of(message)).size
    assert width > height


async def test_vary_image_on_our_result_keeps_its_prompt(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    original = await final(await w.alice.slash(w.channel, "imagine", prompt="a tall lighthouse", seed=3, steps=2))
    message = await final(await w.bob.context_menu(w.channel, "Vary image", original))
    row = await job_of(simcord_bot, message)
    assert row.kind == "vary" and row.params["prompt"] == "a tall lighthouse"


async def test_anime_paints_a_members_picture(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    picture = await a_picture(w)
    result = await w.bob.context_menu(w.channel, "Anime", picture)
    message = await final(result)
    assert not result.ephemeral and "AnimeGAN2" in message.content
    assert (await job_of(simcord_bot, message)).kind == "anime"


async def test_vary_and_anime_on_a_message_without_an_image_are_refused_privately(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    text = await w.alice.send(w.channel, "just words")
    for menu in ("Vary image", "Anime"):
        result = await w.bob.context_menu(w.channel, menu, text)
        assert refusal(result) == "That message has no image I can use."
    assert (await simcord_bot.studio.database.jobs.history(user_id=w.bob.id)).total == 0


async def test_paint_opens_a_modal_and_repaints_the_named_region(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    picture = await a_picture(w)
    shown = await w.bob.context_menu(w.channel, "Paint...", picture)
    assert shown.modal is not None and shown.modal["title"] == "Paint on this image"
    result = await w.bob.submit_modal(shown, {PROMPT: "a red hat", REGION: "top-left"})
    message = await final(result)
    assert not result.ephemeral and "a red hat" in message.content
    row = await job_of(simcord_bot, message)
    assert row.kind == "paint" and row.params["prompt"] == "a red hat"
    painted = np.asarray((await image_of(message)).convert("RGB"), dtype=int)
    source = np.array([200, 40, 40])
    assert np.abs(painted[48:, 48:] - source).max() <= 8  # the far corner stays as it was
    assert np.abs(painted[:16, :16] - source).max() > 8  # the named corner was repainted


async def test_paint_with_a_box(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    picture = await a_picture(w)
    shown = await w.bob.context_menu(w.channel, "Paint...", picture)
    message = await final(await w.bob.submit_modal(shown, {PROMPT: "a moon", REGION: "box 25,25,50,50"}))
    assert (await job_of(simcord_bot, message)).kind == "paint"
    painted = np.asarray((await image_of(message)).convert("RGB"), dtype=int)
    assert np.abs(painted[:6, :6] - np.array([200, 40, 40])).max() <= 8  # outside the box: untouched


@pytest.mark.parametrize(("region", "expected"), [
    ("under the sofa", "I don't know the region 'under'"),
    ("box 25,25,90,50", "The box goes past the right edge"),
])
async def test_a_bad_region_gets_a_clear_private_answer(simcord_env, simcord_bot, region, expected) -> None:
    w = make_world(simcord_env)
    picture = await a_picture(w)
    shown = await w.bob.context_menu(w.channel, "Paint...", picture)
    result = await w.bob.submit_modal(shown, {PROMPT: "a cat", REGION: region})
    assert expected in refusal(result)
    assert (await simcord_bot.studio.database.jobs.history(user_id=w.bob.id)).total == 0


async def test_paint_on_a_message_without_an_image_shows_no_modal(simcord_env) -> None:
    w = make_world(simcord_env)
    text = await w.alice.send(w.channel, "just words")
    result = await w.bob.context_menu(w.channel, "Paint...", text)
    assert result.modal is None and refusal(result) == "That message has no image I can paint on."


async def test_describe_shows_the_parameters_of_our_png_privately(simcord_env) -> None:
    """Describe took over the "Show parameters" menu: a picture carrying parameters gets them, as before."""
    w = make_world(simcord_env)
    original = await final(await w.alice.slash(w.channel, "imagine", prompt="a red fox", seed=42, steps=2))
    result = await w.bob.context_menu(w.channel, "Describe", original)
    assert result.ephemeral
    text = result.response.content
    assert text.startswith("```\na red fox\n") and "Seed: 42" in text and "Steps: 2" in text
    assert button_ids(result.response) == []  # no captioning model here: no "Suggest prompts" button


async def test_describe_of_a_picture_without_parameters_asks_for_suggestions(simcord_env) -> None:
    w = make_world(simcord_env)
    result = await w.bob.context_menu(w.channel, "Describe", await a_picture(w))
    assert refusal(result) == NOT_CONFIGURED  # no captioning model here: the /describe path answered


async def test_describe_of_a_message_without_an_image_says_so(simcord_env) -> None:
    w = make_world(simcord_env)
    text = await w.alice.send(w.channel, "just words")
    assert refusal(await w.bob.context_menu(w.channel, "Describe", text)) == "That message has no image I can use."


async def test_the_bot_registers_no_more_message_menus_than_discord_allows(simcord_env, simcord_bot) -> None:
    """Discord takes at most five message commands per bot: a sixth makes the command sync, and so
    the bot's start, fail."""
    import discord

    menus = simcord_bot.tree.get_commands(type=discord.AppCommandType.message)
    assert 0 < len(menus) <= 5, [m.name for m in menus]
