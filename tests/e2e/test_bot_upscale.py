"""The real bot.py process with an ``[[upscalers]]`` file against the fake Discord: a grid cell
picked with U1, then *Upscale (subtle)* posts it at twice its size, made by the configured upscaler."""

from __future__ import annotations

from pathlib import Path

import pytest

from inference.imaging import read_parameters
from inference.imaging.pngmeta import parse_parameters
from tests.e2e.client import Member
from tests.e2e.conftest import Easel, Settings
from tests.e2e.easel_helpers import buttons, decode, result_attachment, result_of
from tests.e2e.fake_discord import FakeDiscord

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
def easel_settings(tiny_upscaler: Path) -> Settings:
    return {"upscalers": [{"name": "tiny-esrgan", "source": tiny_upscaler, "scale": 2}]}


@pytest.fixture(scope="module")
def server(easel_bot: Easel) -> FakeDiscord:
    return easel_bot.server


async def test_subtle_upscale_of_a_picked_grid_cell(server: FakeDiscord) -> None:
    alice = Member(server, "alice")
    grid = await result_of(server, await alice.slash("imagine", prompt="a lighthouse", count=2, seed=40))
    picked = await result_of(server, await alice.click(grid, buttons(grid)["U1"]))
    cell = decode(result_attachment(picked)["data"])
    done = await result_of(server, await alice.click(picked, buttons(picked)["Upscale (subtle)"]))
    attachment = result_attachment(done)
    assert decode(attachment["data"]).size == (cell.width * 2, cell.height * 2)
    params = parse_parameters(read_parameters(attachment["data"]))
    assert (params["easel kind"], params["Upscaler"], params["Upscale mode"]) == ("upscale", "tiny-esrgan", "subtle")
    assert "Upscaled 2x (subtle)" in done["content"]


async def test_creative_upscale_of_a_single_result_refines_it_with_its_prompt_and_seed(server: FakeDiscord) -> None:
    bob = Member(server, "bob")
    single = await result_of(server, await bob.slash("imagine", prompt="a harbour at night", seed=12))
    small = decode(result_attachment(single)["data"])
    done = await result_of(server, await bob.click(single, buttons(single)["Upscale (creative)"]))
    attachment = result_attachment(done)
    image = decode(attachment["data"])
    assert image.size == (small.width * 2, small.height * 2)
    params = parse_parameters(read_parameters(attachment["data"]))
    assert (params["easel kind"], params["Upscale mode"], params["Seed"]) == ("upscale", "creative", "12")
    assert params["prompt"] == "a harbour at night"
    subtle_alike = small.resize(image.size)
    assert image.tobytes() != subtle_alike.tobytes()  # refined, not only enlarged
