"""The real bot.py process with a tiny SDXL against the fake Discord: /imagine with A1111 weighting posts
the picture of diffusers' SDXL pipeline called with compel's embeddings, and its PNG keeps the text."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inference.imaging import read_parameters
from inference.imaging.pngmeta import parse_parameters
from tests.e2e.client import Member
from tests.e2e.conftest import Easel, Settings
from tests.e2e.easel_helpers import decode, result_attachment, result_of
from tests.e2e.fake_discord import FakeDiscord

pytestmark = pytest.mark.asyncio(loop_scope="module")

PROMPT = "a (castle:1.4) on a [hill] BREAK at night"


@pytest.fixture(scope="module")
def easel_settings(tiny_sdxl_dir: Path) -> Settings:
    return {"model": {"source": tiny_sdxl_dir, "name": "xl", "family": "auto", "steps": 3, "guidance": 5.0}}


@pytest.fixture(scope="module")
def server(easel_bot: Easel) -> FakeDiscord:
    return easel_bot.server


def compel_image(source: Path, seed: int) -> Any:
    import torch
    from compel import CompelForSDXL
    from diffusers import StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline.from_pretrained(source)
    pipe.set_progress_bar_config(disable=True)
    compel = CompelForSDXL(pipe)
    cond = compel('("a (castle)1.4 on a (hill)0.90909", "at night").and()')
    pooled = compel.compel_2.conditioning_provider.get_pooled_embeddings(["a castle on a hill at night"])
    with torch.inference_mode():
        return pipe(prompt_embeds=cond.embeds, pooled_prompt_embeds=pooled, num_inference_steps=3,
                    guidance_scale=5.0, width=64, height=64,
                    generator=[torch.Generator("cpu").manual_seed(seed)]).images[0]


async def test_a_weighted_prompt_posts_diffusers_picture_with_compels_embeddings(server: FakeDiscord,
                                                                                 tiny_sdxl_dir: Path) -> None:
    record = await Member(server, "alice").slash("imagine", prompt=PROMPT, seed=31)
    attachment = result_attachment(await result_of(server, record))
    assert parse_parameters(read_parameters(attachment["data"]))["prompt"] == PROMPT
    expected = await asyncio.to_thread(compel_image, tiny_sdxl_dir, 31)
    posted = np.asarray(decode(attachment["data"]).convert("RGB"), dtype=np.int16)
    assert np.abs(posted - np.asarray(expected, dtype=np.int16)).max() <= 1
