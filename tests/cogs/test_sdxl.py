"""SDXL through the bot: /imagine, /vary and /paint on a tiny SDXL, a LoRA switched on and off across
requests, and the 1-step Turbo preset; every posted PNG equals diffusers' own SDXL pipelines called
with the same inputs and seeds (at most 1/255 apart).

Here the server's default model is the tiny SDXL (``xl``, family detected from its folder), so /vary and
/paint use it; ``xl-turbo`` is the same weights configured as ``sdxl-turbo``, with the preset's 1 step and
guidance 0; ``tiny`` is the SD 1.5 model of the other tests.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from config import Config, LoraConfig, ModelConfig
from inference.imaging import parse_parameters
from inference.prepare import prepare
from tests.cogs.helpers import final, image_of, make_world

PROMPT = "a photo of a red fox in the forest"
LORA_WEIGHT = 0.8


@pytest.fixture
def bot_config(bot_config: Config, tiny_sdxl_dir: Path, tiny_sdxl_lora: Path) -> Config:
    sizes = {"size": 64, "min_size": 64, "max_size": 128}
    xl = ModelConfig(source=str(tiny_sdxl_dir), name="xl", steps=3, guidance=5.0, **sizes,
                     loras=(LoraConfig(name="xl-lora", source=str(tiny_sdxl_lora), weight=LORA_WEIGHT),))
    turbo = ModelConfig(source=str(tiny_sdxl_dir), name="xl-turbo", family="sdxl-turbo", **sizes)
    return dataclasses.replace(bot_config, model=xl, models=(turbo, bot_config.model))


@pytest.fixture(scope="module")
def direct(tiny_sdxl_dir: Path) -> dict[str, Any]:
    """diffusers' SDXL pipelines loaded straight from the folder: the reference for the bot's pixels."""
    from diffusers import (
        StableDiffusionXLImg2ImgPipeline,
        StableDiffusionXLInpaintPipeline,
        StableDiffusionXLPipeline,
    )

    base = StableDiffusionXLPipeline.from_pretrained(tiny_sdxl_dir)
    pipes = {"imagine": base, "vary": StableDiffusionXLImg2ImgPipeline.from_pipe(base),
             "paint": StableDiffusionXLInpaintPipeline.from_pipe(base)}
    for pipe in pipes.values():
        pipe.set_progress_bar_config(disable=True)
    return pipes


def call(pipe: Any, seeds: tuple[int, ...], **kwargs: Any) -> list[Image.Image]:
    generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]
    with torch.inference_mode():
        return pipe(prompt=[PROMPT] * len(seeds), generator=generators, **kwargs).images


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def max_diff(a: Image.Image, b: Image.Image) -> int:
    assert a.size == b.size, (a.size, b.size)
    return int(np.abs(pixels(a) - pixels(b)).max())


async def posted(result: Any) -> tuple[Image.Image, dict[str, str], str]:
    """The result's image, its PNG parameters and its job id."""
    message = await final(result)
    assert message.attachments, message.content
    image = await image_of(message)
    job_id = re.search(r"job `(\w+)`", message.content)[1]
    return image, parse_parameters(image.info["parameters"]), job_id


def upload(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


async def test_imagine_on_sdxl_equals_the_sdxl_pipeline(simcord_env, direct) -> None:
    w = make_world(simcord_env)
    result = await w.alice.slash(w.channel, "imagine", prompt=PROMPT, negative="blurry", model="xl", seed=21,
                                 width=96, height=64)
    image, params, _ = await posted(result)
    assert (params["Model"], params["Steps"], params["CFG scale"], params["Size"]) == ("xl", "3", "5.0", "96x64")
    expected = await asyncio.to_thread(call, direct["imagine"], (21,), negative_prompt=["blurry"],
                                       num_inference_steps=3, guidance_scale=5.0, width=96, height=64)
    assert max_diff(image, expected[0]) <= 1


async def test_vary_on_sdxl_equals_the_sdxl_image_to_image_pipeline(simcord_env, simcord_bot, direct) -> None:
    w = make_world(simcord_env)
    source = Image.fromarray(np.linspace(0, 255, 64 * 64 * 3).reshape(64, 64, 3).astype(np.uint8), "RGB")
    result = await w.alice.slash(w.channel, "vary", image=("src.png", upload(source)), prompt=PROMPT,
                                 strength=0.7, seed=8)
    image, params, job_id = await posted(result)
    assert params["Model"] == "xl"
    prepared = prepare(await simcord_bot.studio.job(job_id))
    assert prepared.init_image.tobytes() == source.tobytes()
    expected = await asyncio.to_thread(call, direct["vary"], (8,), image=[prepared.init_image], strength=0.7,
                                       num_inference_steps=3, guidance_scale=5.0)
    assert max_diff(image, expected[0]) <= 1
    assert max_diff(image, source) > 10  # it did change the picture


async def test_paint_on_sdxl_equals_the_sdxl_inpainting_pipeline_inside_the_mask(simcord_env, simcord_bot,
                                                                                   direct) -> None:
    w = make_world(simcord_env)
    source = Image.new("RGB", (64, 64), (10, 120, 200))
    result = await w.alice.slash(w.channel, "paint", image=("src.png", upload(source)), prompt=PROMPT,
                                 region="right", strength=0.9, seed=4)
    image, params, job_id = await posted(result)
    assert params["Model"] == "xl"
    prepared = prepare(await simcord_bot.studio.job(job_id))
    expected = (await asyncio.to_thread(call, direct["paint"], (4,), image=[prepared.init_image],
                                        mask_image=[prepared.mask_image], strength=0.9, width=64, height=64,
                                        num_inference_steps=3, guidance_scale=5.0))[0]
    mask = np.asarray(prepared.mask_image)
    painted, kept = mask == 255, mask == 0
    assert painted.any() and kept.any()
    # Inside the mask: diffusers' pixels. Outside it the bot pastes the source back (the VAE round trip
    # would shift every pixel slightly); that is the source exactly.
    assert np.abs(pixels(image) - pixels(expected))[painted].max() <= 1
    assert np.abs(pixels(image) - pixels(source))[kept].max() == 0


async def test_an_sdxl_lora_switches_on_and_off_across_requests(simcord_env, direct, tiny_sdxl_lora) -> None:
    w = make_world(simcord_env)
    options = {"prompt": PROMPT, "model": "xl", "seed": 3}
    with_lora, _, _ = await posted(await w.alice.slash(w.channel, "imagine", lora="xl-lora", **options))
    without, params, _ = await posted(await w.alice.slash(w.channel, "imagine", **options))
    again, _, _ = await posted(await w.alice.slash(w.channel, "imagine", lora="xl-lora", **options))
    assert "Lora" not in params and "xl-lora" not in str(params)

    def reference() -> tuple[Image.Image, Image.Image]:
        plain = call(direct["imagine"], (3,), num_inference_steps=3, guidance_scale=5.0, width=64, height=64)[0]
        pipe = type(direct["imagine"]).from_pipe(direct["imagine"])
        pipe.load_lora_weights(str(tiny_sdxl_lora), adapter_name="xl-lora")
        pipe.set_adapters(["xl-lora"], [LORA_WEIGHT])
        try:
            lora = call(pipe, (3,), num_inference_steps=3, guidance_scale=5.0, width=64, height=64)[0]
        finally:
            pipe.unload_lora_weights()
        return plain, lora

    plain, lora = await asyncio.to_thread(reference)
    assert max_diff(without, plain) <= 1
    assert max_diff(with_lora, lora) <= 1 and max_diff(again, lora) <= 1
    assert max_diff(with_lora, without) > 10  # the LoRA does change the picture


async def test_sdxl_turbo_draws_in_one_step_without_guidance(simcord_env, direct) -> None:
    w = make_world(simcord_env)
    image, params, _ = await posted(await w.alice.slash(w.channel, "imagine", prompt=PROMPT, model="xl-turbo",
                                                        seed=12))
    assert (params["Model"], params["Steps"], params["CFG scale"], params["Size"]) == ("xl-turbo", "1", "0.0", "64x64")
    expected = await asyncio.to_thread(call, direct["imagine"], (12,), num_inference_steps=1, guidance_scale=0.0,
                                       width=64, height=64)
    assert max_diff(image, expected[0]) <= 1


async def test_the_sd15_model_still_serves_beside_sdxl(simcord_env) -> None:
    w = make_world(simcord_env)
    image, params, _ = await posted(await w.alice.slash(w.channel, "imagine", prompt="a cat", model="tiny", seed=1))
    assert params["Model"] == "tiny" and image.size == (64, 64)
