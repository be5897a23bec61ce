"""Kandinsky 2.2 through the bot: the tiny Kandinsky is the server's default model and the tiny SD
a second one, so /imagine, /vary, /paint and the result buttons reach it as members use them."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from config import Config, ModelConfig
from inference.imaging import parse_parameters
from inference.kandinsky import INPAINT_STRENGTH
from tests.cogs.helpers import button_ids, final, image_of, make_world, png, refusal


@pytest.fixture
def bot_config(bot_config: Config, tiny_kandinsky_dir: Path) -> Config:
    kandy = ModelConfig(source=str(tiny_kandinsky_dir / "decoder"), prior_source=str(tiny_kandinsky_dir / "prior"),
                        inpaint_source=str(tiny_kandinsky_dir / "decoder-inpaint"), name="kandy", size=64,
                        min_size=64, max_size=128, steps=3, max_steps=20)
    return dataclasses.replace(bot_config, model=kandy, models=(bot_config.model,))


def direct_image(folder: Path, seed: int, **kwargs: Any) -> Image.Image:
    """diffusers' combined pipeline on the same folders, called as its documentation shows."""
    import torch
    from diffusers import KandinskyV22CombinedPipeline, KandinskyV22Pipeline, KandinskyV22PriorPipeline

    prior = KandinskyV22PriorPipeline.from_pretrained(folder / "prior")
    decoder = KandinskyV22Pipeline.from_pretrained(folder / "decoder")
    pipe = KandinskyV22CombinedPipeline(**decoder.components, **{f"prior_{k}": v for k, v in prior.components.items()})
    pipe.set_progress_bar_config(disable=True)
    with torch.inference_mode():
        return pipe(generator=torch.Generator("cpu").manual_seed(seed), **kwargs).images[0]


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


async def test_imagine_posts_the_pixels_diffusers_makes_with_the_same_options(simcord_env,
                                                                              tiny_kandinsky_dir: Path) -> None:
    w = make_world(simcord_env)
    result = await w.alice.slash(w.channel, "imagine", prompt="a red fox", negative="dark", seed=11, steps=3,
                                 width=64, height=96, guidance=5.0)
    message = await final(result)
    posted = await image_of(message)
    params = parse_parameters(posted.info["parameters"])
    assert params["prompt"] == "a red fox" and params["Seed"] == "11" and params["CFG scale"] == "5.0"
    assert params["Model"] == "kandy" and params["Sampler"] == "DDPM"
    expected = direct_image(tiny_kandinsky_dir, 11, prompt="a red fox", negative_prompt="dark", num_inference_steps=3,
                            guidance_scale=5.0, width=64, height=96)
    assert posted.size == (64, 96) and np.abs(pixels(posted) - pixels(expected)).max() <= 1
    assert any(i.startswith("easel:v:") for i in button_ids(message))


async def test_the_variation_button_on_a_kandinsky_result_makes_one(simcord_env) -> None:
    w = make_world(simcord_env)
    first = await final(await w.alice.slash(w.channel, "imagine", prompt="a lighthouse", seed=3))
    vary = next(i for i in button_ids(first) if i.startswith("easel:v:"))
    varied = await final(await w.bob.click(first, custom_id=vary))
    image = await image_of(varied)
    assert image.size == (64, 64) and "a lighthouse" in varied.content
    assert parse_parameters(image.info["parameters"])["Model"] == "kandy"  # the source's model
    assert np.abs(pixels(image) - pixels(await image_of(first))).max() > 0


async def test_vary_keeps_the_aspect_of_any_source_size(simcord_env) -> None:
    w = make_world(simcord_env)
    result = await w.alice.slash(w.channel, "vary", image=("src.png", png((300, 140))), prompt="a sunset",
                                 strength=0.7, seed=4)
    image = await image_of(await final(result))
    assert image.width > image.height  # landscape like its source (sizes clamp to the preset's 64-128 px)


async def test_paint_repaints_only_the_masked_part(simcord_env) -> None:
    w = make_world(simcord_env)
    source = Image.new("RGB", (64, 64), (10, 120, 200))
    buf = io.BytesIO()
    source.save(buf, format="PNG")
    result = await w.alice.slash(w.channel, "paint", image=("src.png", buf.getvalue()), prompt="a sun",
                                 region="right", seed=5)
    image = pixels(await image_of(await final(result)))
    assert np.abs(image[:, :24] - np.array([10, 120, 200])).max() <= 2
    assert np.abs(image[:, 40:] - np.array([10, 120, 200])).max() > 2


async def test_paint_with_a_strength_gets_a_clear_private_answer(simcord_env) -> None:
    w = make_world(simcord_env)
    result = await w.alice.slash(w.channel, "paint", image=("src.png", png((64, 64))), prompt="a sun",
                                 region="right", strength=0.5)
    assert INPAINT_STRENGTH in refusal(result)  # privately, before taking a queue place


async def test_the_stable_diffusion_model_still_serves_beside_it(simcord_env) -> None:
    w = make_world(simcord_env)
    message = await final(await w.alice.slash(w.channel, "imagine", prompt="a cat", model="tiny", seed=2))
    image = await image_of(message)
    assert image.size == (64, 64) and parse_parameters(image.info["parameters"])["Model"] == "tiny"


async def test_a_sampler_kandinsky_cannot_use_is_refused_privately(simcord_env) -> None:
    w = make_world(simcord_env)
    result = await w.alice.slash(w.channel, "imagine", prompt="a cat", scheduler="euler")
    assert "does not work with Kandinsky 2.2" in refusal(result)


async def test_an_eta_on_kandinsky_is_refused_privately(simcord_env) -> None:
    """The Kandinsky decoder has no eta argument: an eta the member sets would be dropped unseen."""
    w = make_world(simcord_env)
    result = await w.alice.slash(w.channel, "imagine", prompt="a cat", scheduler="ddim", eta=0.5)
    assert "take no eta" in refusal(result)

