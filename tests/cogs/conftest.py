"""In-process Discord tests: the real EaselBot, its cogs and studio (tiny model, temp SQLite)
against simcord's in-memory Discord.

The studio (engine thread, job log) is started by the fixture right after simcord has started
the bot, outside the bot's own setup: its work is driven by the GPU thread and SQLite's thread,
which simcord's settling cannot see, so tests wait for outcomes on the real clock with
:func:`eventually`.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import simcord

from config import Config


@pytest.fixture
def bot_config(tiny_config: Config, tmp_path: Path, anime_weights: Path) -> Config:
    """A fresh database and outputs folder per test; progress edits without waiting; local
    AnimeGAN2 weights for the default style only (the others are "unavailable", as offline)."""
    return dataclasses.replace(
        tiny_config,
        base_dir=tmp_path,
        discord=dataclasses.replace(tiny_config.discord, progress_interval_s=0.0, nsfw_words=("nsfwword",)),
        anime=dataclasses.replace(tiny_config.anime, cache_dir=str(tmp_path / "anime"), device="cpu",
                                  weights={"face_paint_512_v2": str(anime_weights)}),
    )


@pytest.fixture
def simcord_bot(bot_config: Config) -> Any:
    from bot import EaselBot

    return EaselBot(bot_config, start_studio=False)


@pytest.fixture
async def simcord_env(simcord_bot: Any) -> AsyncIterator[simcord.Env]:
    env = simcord.Env(simcord_bot)
    await env.start()
    with env.time_context():  # the studio's tasks talk to simcord's Discord, as driver code
        await simcord_bot.studio.start(warm_up=False)
    try:
        yield env
    finally:
        await simcord_bot.studio.engine.stop()
        await simcord_bot.delivery.close()
        await env.shutdown()
        await simcord_bot.studio.close()
        env.raise_errors()


async def eventually(check: Callable[[], Any], timeout: float = 60.0) -> Any:
    """Poll until ``check()`` returns something truthy (the GPU thread works on the real clock)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = check()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out waiting for the bot")
        await asyncio.sleep(0.05)
