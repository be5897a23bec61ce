"""The real bot.py process serving a tiny SDXL (family detected from its folder) against the fake Discord:
/imagine posts a result whose pixels equal diffusers' SDXL pipeline with the same inputs and seed, and a
LoRA with a recipe (the Hyper-SD way: few steps, no guidance, DDIM with trailing timesteps) brings its
settings when a member picks it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytest_asyncio

from inference.imaging import read_parameters
from inference.imaging.pngmeta import parse_parameters
from tests.e2e.client import Member
from tests.e2e.conftest import Easel, Settings
from tests.e2e.easel_helpers import decode, result_attachment, result_of
from tests.e2e.fake_discord import FakeDiscord

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
def easel_settings(tiny_sdxl_dir: Path, tiny_sdxl_lora: Path) -> Settings:
    recipe = {"steps": 2, "guidance": 0.0, "scheduler": "ddim", "spacing": "trailing"}
    lora = {"name": "hyper", "source": tiny_sdxl_lora, "weight": 1.0, "recipe": recipe}
    return {"model": {"source": tiny_sdxl_dir, "name": "xl", "family": "auto", "steps": 3, "guidance": 5.0,
                      "loras": [lora]}}


@pytest.fixture(scope="module")
def server(easel_bot: Easel) -> FakeDiscord:
    return easel_bot.server


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def direct_sdxl(tiny_sdxl_dir: Path) -> Any:
    from diffusers import StableDiffusionXLPipeline

    def load() -> Any:
        pipe = StableDiffusionXLPipeline.from_pretrained(tiny_sdxl_dir)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    return await asyncio.to_thread(load)


def direct_image(pipe: Any, prompt: str, seed: int) -> Any:
    import torch

    with torch.inference_mode():
        return pipe(prompt=[prompt], num_inference_steps=3, guidance_scale=5.0, width=64, height=64,
                    generator=[torch.Generator("cpu").manual_seed(seed)]).images[0]


async def test_imagine_with_an_sdxl_model_posts_the_sdxl_pipelines_picture(server: FakeDiscord,
                                                                          direct_sdxl: Any) -> None:
    record = await Member(server, "alice").slash("imagine", prompt="a castle on a hill at night", seed=31)
    attachment = result_attachment(await result_of(server, record))
    params = parse_parameters(read_parameters(attachment["data"]))
    assert (params["Model"], params["Steps"], params["CFG scale"], params["Size"]) == ("xl", "3", "5.0", "64x64")
    expected = await asyncio.to_thread(direct_image, direct_sdxl, "a castle on a hill at night", 31)
    posted = np.asarray(decode(attachment["data"]).convert("RGB"), dtype=np.int16)
    assert np.abs(posted - np.asarray(expected, dtype=np.int16)).max() <= 1


async def test_a_recipe_lora_picked_by_a_member_brings_its_steps_guidance_and_sampler(server: FakeDiscord) -> None:
    record = await Member(server, "bob").slash("imagine", prompt="a castle", lora="hyper", seed=5)
    params = parse_parameters(read_parameters(result_attachment(await result_of(server, record))["data"]))
    assert (params["Steps"], params["CFG scale"], params["Sampler"]) == ("2", "0.0", "DDIM trailing")
    assert params["Lora"] == "hyper:1"
