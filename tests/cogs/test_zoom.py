"""Zoom out and Pan under results through the bot: the grown canvas is inpainted with the result's
prompt and seed, the original's pixels outside the feathered band come back exactly, a canvas
over the model's limit is scaled down (and said so), and a withheld source is refused."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from inference.imaging import composite_unmasked, parse_parameters
from inference.imaging.outpaint import band_width, plan_pan, plan_zoom
from inference.jobs import InpaintJob
from tests.cogs.helpers import button_ids, final, image_of, make_world, refusal
from tests.cogs.test_nsfw_gate import WORD, checker, imagine, policy  # noqa: F401 - checker is a fixture

ZOOM_2X, ZOOM_15X, PAN_LEFT = "easel:z2:", "easel:z15:", "easel:pl:"


def button(message: Any, prefix: str) -> str:
    return next(i for i in button_ids(message) if i.startswith(prefix))


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def job_id_of(message: Any) -> str:
    return re.search(r"job `(\w+)`", message.content)[1]


async def zoom_job(bot: Any, message: Any) -> InpaintJob:
    job = await bot.studio.job(job_id_of(message))
    assert isinstance(job, InpaintJob)
    return job


async def border_was_painted(bot: Any, message: Any) -> bool:
    """Whether the outer 8 rows of a zoom result differ from the filled canvas it started from."""
    canvas = Image.open((await zoom_job(bot, message)).init_image)
    return bool(np.abs(pixels(await image_of(message))[:8] - pixels(canvas)[:8]).max() > 8)


async def test_zoom_out_2x_on_a_single_result_grows_it_around_the_untouched_original(simcord_env,
                                                                                    simcord_bot) -> None:
    w = make_world(simcord_env)
    source = await imagine(w, "a lighthouse on a cliff", seed=41)
    ids = button_ids(source)
    assert all(any(i.startswith(f"easel:{a}:") for i in ids) for a in ("z15", "z2", "pl", "pr", "pu", "pd"))
    zoomed = await final(await w.bob.click(source, custom_id=button(source, ZOOM_2X)))
    image, original = await image_of(zoomed), await image_of(source)
    assert image.size == (128, 128)
    assert "Zoomed out 2x." in zoomed.content and "scaled down" not in zoomed.content
    assert "seed `41`" in zoomed.content and "lighthouse" in zoomed.content and f"<@{w.bob.id}>" in zoomed.content
    params = parse_parameters(image.info["parameters"])
    assert params["prompt"] == "a lighthouse on a cliff" and params["Model"] == "tiny"
    plan = plan_zoom((64, 64), 2.0, 128)
    band = band_width(plan)
    inner = pixels(image)[32 + band:96 - band, 32 + band:96 - band]
    assert (inner == pixels(original)[band:64 - band, band:64 - band]).all()  # exactly the original
    assert await border_was_painted(simcord_bot, zoomed)
    assert any(i.startswith("easel:z2:") for i in button_ids(zoomed))  # and can be zoomed again


async def test_pan_left_on_a_picked_cell_keeps_the_cell_exactly_on_the_right(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    grid = await imagine(w, "a forest path", seed=5, count=2)
    clicked = await w.alice.click(grid, label="U2")
    picked = await final(clicked)
    assert any(i.startswith(PAN_LEFT) for i in button_ids(picked))
    panned = await final(await w.alice.click(picked, custom_id=button(picked, PAN_LEFT)))
    image, cell = await image_of(panned), await image_of(picked)
    assert image.size == (96, 64) and "Panned left." in panned.content and "seed `6`" in panned.content
    band = band_width(plan_pan((64, 64), "left", 128))
    assert (pixels(image)[:, 32 + band:] == pixels(cell)[:, band:]).all()
    job = await zoom_job(simcord_bot, panned)
    assert (job.width, job.height, job.seed, job.strength) == (96, 64, 6, 1.0)


async def test_a_canvas_over_the_models_limit_is_scaled_down_first_and_the_result_says_so(simcord_env) -> None:
    w = make_world(simcord_env)
    source = await imagine(w, "a red barn", seed=3, width=128, height=128)
    zoomed = await final(await w.alice.click(source, custom_id=button(source, ZOOM_2X)))
    image = await image_of(zoomed)
    assert image.size == (128, 128)  # the tiny model's limit
    assert "scaled down to 128x128" in zoomed.content and "256x256" in zoomed.content


async def test_zoom_of_a_result_the_channel_now_withholds_is_refused_privately(simcord_env, simcord_bot,
                                                                              checker) -> None:  # noqa: F811
    w = make_world(simcord_env)
    await policy(simcord_bot, w, "spoiler")
    source = await imagine(w, "a cat", seed=2)  # flagged by the (stand-in) safety checker: spoilered here
    await policy(simcord_bot, w, "block")
    stored = set(simcord_bot.studio.outputs.folder.rglob("*"))
    clicked = await w.bob.click(source, custom_id=button(source, ZOOM_15X))
    assert "not shown in this channel (NSFW)" in refusal(clicked)
    assert (await simcord_bot.studio.database.jobs.history(user_id=w.bob.id)).total == 0
    assert set(simcord_bot.studio.outputs.folder.rglob("*")) == stored  # no canvas or mask was stored


async def test_a_zoom_inherits_the_spoiler_of_its_source(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    await policy(simcord_bot, w, "spoiler")
    source = await imagine(w, WORD, seed=2)
    zoomed = await final(await w.bob.click(source, custom_id=button(source, ZOOM_15X)))
    assert zoomed.attachments[0].filename.startswith("SPOILER_")
    job = await zoom_job(simcord_bot, zoomed)
    assert job.nsfw_word


@pytest.fixture(scope="module")
def direct_inpaint(tiny_model_dir: Path) -> Any:
    from diffusers import StableDiffusionInpaintPipeline, StableDiffusionPipeline

    base = StableDiffusionPipeline.from_pretrained(tiny_model_dir, safety_checker=None, requires_safety_checker=False)
    pipe = StableDiffusionInpaintPipeline.from_pipe(base)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def call_direct(pipe: Any, job: InpaintJob) -> Image.Image:
    canvas, mask = Image.open(job.init_image).convert("RGB"), Image.open(job.mask_image).convert("L")
    with torch.inference_mode():
        out = pipe(prompt=[job.prompt], image=[canvas], mask_image=[mask], width=job.width, height=job.height,
                   strength=1.0, num_inference_steps=job.steps, guidance_scale=job.guidance,
                   generator=[torch.Generator("cpu").manual_seed(job.seed)]).images[0]
    return composite_unmasked(canvas, out, mask)


async def test_the_zoomed_png_equals_diffusers_inpainting_of_the_same_canvas_and_mask(simcord_env, simcord_bot,
                                                                                      direct_inpaint) -> None:
    w = make_world(simcord_env)
    source = await imagine(w, "a quiet harbour", seed=17)
    zoomed = await final(await w.alice.click(source, custom_id=button(source, ZOOM_15X)))
    job = await zoom_job(simcord_bot, zoomed)
    assert (job.width, job.height) == (96, 96)
    expected = await asyncio.to_thread(call_direct, direct_inpaint, job)
    assert np.abs(pixels(await image_of(zoomed)) - pixels(expected)).max() <= 1


async def test_only_a_still_made_from_a_prompt_can_be_zoomed(simcord_env, simcord_bot) -> None:
    """Anime results and animations carry no Zoom buttons; a crafted click on one is still refused."""
    from cogs.utils.outpaint import outpaint_result
    from inference.jobs import JobError
    from inference.outpaint_options import NOT_A_STILL
    from tests.cogs.helpers import png

    w = make_world(simcord_env)
    anime = await final(await w.alice.slash(w.channel, "anime", image=("me.png", png((64, 64)))))
    assert not any(i.startswith(("easel:z2:", "easel:pl:")) for i in button_ids(anime))
    with pytest.raises(JobError, match=NOT_A_STILL):
        await outpaint_result(simcord_bot, None, job_id_of(anime), 0, "z2")  # type: ignore[arg-type]
