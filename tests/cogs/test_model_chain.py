"""The chaining recipe of the source material: text-to-image with SDXL-Turbo, then image-to-image of
that result with Kandinsky 2.2, through the bot as members do it (/vary with ``model:``, and V1 on the
server's default model)."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from config import Config, ModelConfig
from inference.imaging import parse_parameters
from tests.cogs.helpers import button_ids, final, image_of, make_world


@pytest.fixture
def bot_config(bot_config: Config, tiny_sdxl_dir: Path, tiny_kandinsky_dir: Path) -> Config:
    sizes = {"size": 64, "min_size": 64, "max_size": 128}
    turbo = ModelConfig(source=str(tiny_sdxl_dir), name="xl-turbo", family="sdxl-turbo", **sizes)
    kandy = ModelConfig(source=str(tiny_kandinsky_dir / "decoder"), prior_source=str(tiny_kandinsky_dir / "prior"),
                        name="kandy", steps=3, max_steps=20, **sizes)
    return dataclasses.replace(bot_config, model=turbo, models=(kandy,))


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


async def test_an_sdxl_turbo_result_is_varied_with_kandinsky_keeping_its_aspect(simcord_env) -> None:
    w = make_world(simcord_env)
    first = await image_of(await final(await w.alice.slash(w.channel, "imagine", prompt="a red fox", seed=7,
                                                           width=64, height=128)))
    made = parse_parameters(first.info["parameters"])
    assert (made["Model"], made["Steps"], made["CFG scale"]) == ("xl-turbo", "1", "0.0")  # the Turbo preset
    varied_message = await final(await w.alice.slash(w.channel, "vary", image=("fox.png", png_bytes(first)),
                                                     prompt="a red fox, oil painting", model="kandy",
                                                     strength=0.6, seed=7))
    varied = await image_of(varied_message)
    assert parse_parameters(varied.info["parameters"])["Model"] == "kandy"
    assert varied.height > varied.width  # portrait like its source (sizes clamp to the preset's 64-128 px)
    source = np.asarray(first.convert("RGB").resize(varied.size), dtype=np.int16)
    assert np.abs(np.asarray(varied.convert("RGB"), dtype=np.int16) - source).max() > 2  # Kandinsky repainted it


async def test_v1_on_a_turbo_result_uses_the_servers_default_kandinsky(simcord_env) -> None:
    w = make_world(simcord_env)
    settings = await w.admin.slash(w.channel, "easel settings", default_model="kandy")
    assert settings.response is not None
    first = await final(await w.alice.slash(w.channel, "imagine", prompt="a lighthouse", model="xl-turbo", seed=3))
    vary = next(i for i in button_ids(first) if i.startswith("easel:v:"))
    varied = await image_of(await final(await w.alice.click(first, custom_id=vary)))
    assert parse_parameters(varied.info["parameters"])["Model"] == "kandy"
