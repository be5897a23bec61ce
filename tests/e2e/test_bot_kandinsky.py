"""A Kandinsky 2.2 model served by the real bot.py process against the fake Discord: its family
detected from the decoder folder, its prior loaded from ``prior_source``, /imagine posting the
pixels diffusers' combined pipeline makes with the same options."""

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


@pytest.fixture(scope="module")
def easel_settings(tiny_kandinsky_dir: Path) -> Settings:
    return {"model": {"source": tiny_kandinsky_dir / "decoder", "prior_source": tiny_kandinsky_dir / "prior",
                      "name": "kandy", "family": "auto", "steps": 3, "guidance": 4.0}}


@pytest.fixture(scope="module")
def server(easel_bot: Easel) -> FakeDiscord:
    return easel_bot.server


def direct_image(folder: Path, seed: int, **kwargs: Any) -> Any:
    import torch
    from diffusers import KandinskyV22CombinedPipeline, KandinskyV22Pipeline, KandinskyV22PriorPipeline

    prior = KandinskyV22PriorPipeline.from_pretrained(folder / "prior")
    decoder = KandinskyV22Pipeline.from_pretrained(folder / "decoder")
    pipe = KandinskyV22CombinedPipeline(**decoder.components, **{f"prior_{k}": v for k, v in prior.components.items()})
    pipe.set_progress_bar_config(disable=True)
    with torch.inference_mode():
        return pipe(generator=torch.Generator("cpu").manual_seed(seed), **kwargs).images[0]


async def test_imagine_on_a_kandinsky_model_posts_its_image(server: FakeDiscord, tiny_kandinsky_dir: Path) -> None:
    alice = Member(server, "alice")
    record = await alice.slash("imagine", prompt="a castle at night", negative="blurry", seed=21, width=64, height=64)
    attachment = result_attachment(await result_of(server, record))
    posted = decode(attachment["data"])
    params = parse_parameters(read_parameters(attachment["data"]))
    assert (params["Model"], params["Steps"], params["CFG scale"], params["Seed"]) == ("kandy", "3", "4.0", "21")
    expected = await asyncio.to_thread(direct_image, tiny_kandinsky_dir, 21, prompt="a castle at night",
                                       negative_prompt="blurry", num_inference_steps=3, guidance_scale=4.0,
                                       width=64, height=64)
    difference = np.abs(np.asarray(posted.convert("RGB"), np.int16) - np.asarray(expected, np.int16)).max()
    assert posted.size == (64, 64) and difference <= 1
