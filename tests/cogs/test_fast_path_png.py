"""A server whose GPU runs with device.quantize and device.fast_draft: each PNG it posts says which
speed-ups made its pixels (``Fast path``), so a member who redoes it elsewhere knows why it differs."""

from __future__ import annotations

import dataclasses

import pytest

from config import Config
from inference.imaging import parse_parameters, read_parameters
from tests.cogs.helpers import final, make_world


@pytest.fixture
def bot_config(bot_config: Config) -> Config:
    return dataclasses.replace(bot_config, device=dataclasses.replace(bot_config.device, quantize="int8", fast_draft=3))


async def test_the_posted_png_names_the_speed_ups_that_made_it(simcord_env) -> None:
    w = make_world(simcord_env)
    message = await final(await w.alice.slash(w.channel, "imagine", prompt="a brick wall", steps=6, seed=5))
    [result] = message.attachments
    params = parse_parameters(read_parameters(await result.read()))
    assert params["Fast path"] == "int8, DeepCache every 3 steps" and params["Steps"] == "6"
