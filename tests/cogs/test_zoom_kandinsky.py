"""Zoom out on Kandinsky 2.2 results: with its inpainting decoder it works like on Stable
Diffusion (the original kept exactly); without one the member is told privately why not."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from config import Config, ModelConfig
from inference.imaging.outpaint import band_width, plan_zoom
from inference.outpaint_options import NO_INPAINT
from tests.cogs.helpers import button_ids, final, image_of, make_world, refusal
from tests.cogs.test_zoom import ZOOM_2X, border_was_painted, button, pixels


@pytest.fixture
def bot_config(bot_config: Config, tiny_kandinsky_dir: Path) -> Config:
    common = {"source": str(tiny_kandinsky_dir / "decoder"), "prior_source": str(tiny_kandinsky_dir / "prior"),
              "size": 64, "min_size": 64, "max_size": 128, "steps": 3, "max_steps": 20}
    plain = ModelConfig(name="kandy", **common)
    painter = ModelConfig(name="kandy-paint", inpaint_source=str(tiny_kandinsky_dir / "decoder-inpaint"), **common)
    return dataclasses.replace(bot_config, model=plain, models=(painter,))


async def test_a_kandinsky_result_without_its_inpainting_decoder_offers_no_zoom_pan_or_morph(
        simcord_env, simcord_bot, monkeypatch) -> None:
    """No button that could only refuse; one posted before (another configuration) is refused privately."""
    w = make_world(simcord_env)
    source = await final(await w.alice.slash(w.channel, "imagine", prompt="a lighthouse", seed=3))
    assert not any(i.startswith(("easel:z15:", "easel:z2:", "easel:pl:", "easel:m:")) for i in button_ids(source))
    studio = simcord_bot.studio
    as_configured = studio.model_info
    with monkeypatch.context() as m:  # a result posted while the model had its inpainting decoder
        m.setattr(studio, "model_info", lambda name="": dataclasses.replace(as_configured(name), inpaint_model=True))
        stale = await final(await w.alice.slash(w.channel, "imagine", prompt="a lighthouse", seed=4))
    clicked = await w.alice.click(stale, custom_id=button(stale, ZOOM_2X))
    assert refusal(clicked) == NO_INPAINT
    assert (await simcord_bot.studio.database.jobs.history(user_id=w.alice.id)).total == 2


async def test_zoom_out_on_a_kandinsky_model_with_its_inpainting_decoder_keeps_the_original(simcord_env,
                                                                                              simcord_bot) -> None:
    w = make_world(simcord_env)
    source = await final(await w.alice.slash(w.channel, "imagine", prompt="a lighthouse", seed=3,
                                             model="kandy-paint"))
    zoomed = await final(await w.bob.click(source, custom_id=button(source, ZOOM_2X)))
    image, original = await image_of(zoomed), await image_of(source)
    assert image.size == (128, 128) and "Zoomed out 2x." in zoomed.content
    band = band_width(plan_zoom((64, 64), 2.0, 128))
    inner = pixels(image)[32 + band:96 - band, 32 + band:96 - band]
    assert (inner == pixels(original)[band:64 - band, band:64 - band]).all()
    assert await border_was_painted(simcord_bot, zoomed)
