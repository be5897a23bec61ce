"""A member's picture behind a spoiler, followed as ControlNet control: its edge map is a copy of the
picture's outlines, so it is never posted plainly (cogs/utils/gate.py ``spoilered_by_member``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from config import Config, ControlNetConfig
from tests.cogs.helpers import final, make_world, refusal
from tests.cogs.test_control import MODE, PROMPT, STRENGTH, square_png
from tests.cogs.test_nsfw_gate import policy, spoilered


@pytest.fixture
def bot_config(bot_config: Config, tiny_controlnet_dir: Path) -> Config:
    model = dataclasses.replace(bot_config.model, controlnets=(
        ControlNetConfig(source=str(tiny_controlnet_dir), mode="canny"),))
    return dataclasses.replace(bot_config, model=model)


async def test_use_as_control_of_a_spoilered_picture_posts_the_result_and_map_spoilered(simcord_env,
                                                                                       simcord_bot) -> None:
    w = make_world(simcord_env)
    await policy(simcord_bot, w, "spoiler")
    picture = await w.alice.send(w.channel, "", attachments=[("SPOILER_sketch.png", square_png())])
    shown = await w.bob.context_menu(w.channel, "Use as control...", picture)
    message = await final(await w.bob.submit_modal(shown, {PROMPT: "a boat", MODE: "canny", STRENGTH: ""}))
    assert [a.filename.removeprefix("SPOILER_") for a in message.attachments][1] == "control.png"
    assert spoilered(message)


async def test_use_as_control_of_a_plain_picture_posts_the_map_plainly(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    await policy(simcord_bot, w, "spoiler")
    picture = await w.alice.send(w.channel, "", attachments=[("sketch.png", square_png())])
    shown = await w.bob.context_menu(w.channel, "Use as control...", picture)
    message = await final(await w.bob.submit_modal(shown, {PROMPT: "a boat", MODE: "canny", STRENGTH: ""}))
    assert [a.filename for a in message.attachments][1] == "control.png"


async def test_a_spoilered_control_upload_is_refused_where_nsfw_is_blocked(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    await policy(simcord_bot, w, "block")
    answer = await w.alice.slash(w.channel, "imagine", prompt="a red house", control_mode="canny", steps=1,
                                 control=("SPOILER_edges.png", square_png()))
    assert "not shown in this channel (NSFW)" in refusal(answer)
    assert (await simcord_bot.studio.database.jobs.history(user_id=w.alice.id)).total == 0
    answer = await w.alice.slash(w.channel, "imagine", prompt="a red house", control_mode="canny", steps=1,
                                 control=("edges.png", square_png()))
    assert (await final(answer)).attachments
