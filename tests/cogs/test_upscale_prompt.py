"""/upscale's ``prompt``: what an uploaded picture shows steers a creative upscale (an upload has no
prompt of its own); it goes through the NSFW word gate like any prompt; a subtle upscale says it is
not used."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from config import Config, UpscalerConfig
from tests.cogs.helpers import final, job_posted_as, make_world, png, refusal
from tests.cogs.test_nsfw_gate import policy, spoilered


@pytest.fixture
def bot_config(bot_config: Config, tiny_upscaler: Path) -> Config:
    return dataclasses.replace(bot_config, upscalers=(UpscalerConfig("tiny-esrgan", str(tiny_upscaler), scale=2),))


def shown(env: Any) -> str:
    """Everything the bot wrote (the queue message carries a request's notes)."""
    return "\n".join(str(e.json["content"]) for e in env.http_requests
                     if isinstance(e.json, dict) and isinstance(e.json.get("content"), str))


async def params_of(bot: Any, message: Any) -> dict[str, Any]:
    row = await job_posted_as(bot, message)
    assert row is not None
    return row.params


async def test_a_creative_upscale_of_an_upload_refines_toward_the_members_prompt(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    done = await final(await w.alice.slash(w.channel, "upscale", image=("fox.png", png((40, 32))), mode="creative",
                                           prompt="  a red   fox in snow "))
    params = await params_of(simcord_bot, done)
    assert (params["mode"], params["prompt"]) == ("creative", "a red fox in snow")
    assert "a red fox in snow" in done.content and "without a prompt" not in shown(simcord_env)


async def test_without_a_prompt_the_creative_pass_says_how_to_give_one(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    done = await final(await w.alice.slash(w.channel, "upscale", image=("fox.png", png((40, 32))), mode="creative"))
    assert (await params_of(simcord_bot, done))["prompt"] == ""
    assert "without a prompt (say what it shows with prompt: to steer it)" in shown(simcord_env)


async def test_a_subtle_upscale_says_the_prompt_is_not_used(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    done = await final(await w.alice.slash(w.channel, "upscale", image=("fox.png", png((40, 32))), prompt="a fox"))
    assert (await params_of(simcord_bot, done))["prompt"] == ""
    assert "only steers a creative upscale" in shown(simcord_env)


async def test_the_prompt_meets_the_nsfw_word_gate(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    await policy(simcord_bot, w, "block")
    answer = await w.alice.slash(w.channel, "upscale", image=("cat.png", png((40, 32))), mode="creative",
                                 prompt="a nsfwword cat")
    assert "not allowed in this channel (NSFW)" in refusal(answer)
    await policy(simcord_bot, w, "spoiler")
    done = await final(await w.alice.slash(w.channel, "upscale", image=("cat.png", png((40, 32))), mode="creative",
                                           prompt="a nsfwword cat"))
    assert spoilered(done)


async def test_a_prompt_over_the_limit_is_refused_privately(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    answer = await w.alice.slash(w.channel, "upscale", image=("cat.png", png((40, 32))), mode="creative",
                                 prompt="x" * (simcord_bot.config.limits.max_prompt_chars + 1))
    assert "characters long" in refusal(answer)
