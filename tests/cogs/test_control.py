"""ControlNet from Discord: /imagine control:<picture>, the *Use as control...* menu, and Describe
showing a picture's parameters (the menu slot it freed)."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw

from config import Config, ControlNetConfig
from inference.control.preprocess import canny
from inference.imaging import parse_parameters, read_parameters
from tests.cogs.helpers import assert_no_pings, button_ids, final, job_posted_as, make_world, refusal

PROMPT, MODE, STRENGTH = "easel:control:prompt", "easel:control:mode", "easel:control:strength"


@pytest.fixture
def bot_config(bot_config: Config, tiny_controlnet_dir: Path, tiny_blip_dir: Path) -> Config:
    model = dataclasses.replace(bot_config.model, controlnets=(
        ControlNetConfig(source=str(tiny_controlnet_dir), mode="canny", strength=0.9),
        ControlNetConfig(source=str(tiny_controlnet_dir), mode="scribble", name="sketch")))
    return dataclasses.replace(bot_config, model=model, describe=dataclasses.replace(
        bot_config.describe, source=str(tiny_blip_dir), device="cpu", suggestions=2))


def square_png() -> bytes:
    image = Image.new("RGB", (64, 64), "black")
    ImageDraw.Draw(image).rectangle((16, 16, 44, 44), fill="white")
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


async def job_of(bot: Any, message: Any) -> Any:
    row = await job_posted_as(bot, message)
    assert row is not None
    return row


async def parameters_of(message: Any) -> dict[str, str]:
    return parse_parameters(read_parameters(await message.attachments[0].read()))


async def test_imagine_with_a_control_picture_follows_it(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    result = await w.alice.slash(w.channel, "imagine", prompt="a red house", control=("edges.png", square_png()),
                                 control_mode="canny", control_strength=0.7, seed=5, steps=2)
    message = await final(result)
    row = await job_of(simcord_bot, message)
    assert (row.params["control_mode"], row.params["control_strength"]) == ("canny", 0.7)
    assert Path(row.params["control_image"]).is_file()  # stored as the job's input, like /vary's upload
    params = await parameters_of(message)
    assert (params["ControlNet"], params["Control strength"], params["Seed"]) == ("canny", "0.7", "5")
    assert_no_pings(simcord_env)


async def test_a_wide_control_picture_makes_a_wide_image_unless_a_size_is_asked(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    wide = io.BytesIO()
    Image.new("RGB", (128, 64), "white").save(wide, format="PNG")
    message = await final(await w.alice.slash(w.channel, "imagine", prompt="a red house", steps=1,
                                              control=("wide.png", wide.getvalue()), control_mode="canny"))
    row = await job_of(simcord_bot, message)
    assert (row.params["width"], row.params["height"]) == (88, 64)  # its shape at about the model's area
    message = await final(await w.alice.slash(w.channel, "imagine", prompt="a red house", steps=1, aspect="square",
                                              control=("wide.png", wide.getvalue()), control_mode="canny"))
    row = await job_of(simcord_bot, message)
    assert (row.params["width"], row.params["height"]) == (64, 64)


async def test_the_result_message_shows_the_control_map_it_followed(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    message = await final(await w.alice.slash(w.channel, "imagine", prompt="a red house",
                                              control=("edges.png", square_png()), control_mode="canny", steps=1))
    result, shown = message.attachments
    assert result.filename.startswith("easel-") and shown.filename == "control.png"
    control_map = Image.open(io.BytesIO(await shown.read())).convert("RGB")
    expected = canny(Image.open(io.BytesIO(square_png())), control_map.size)
    assert control_map.size == (64, 64) and np.array_equal(np.asarray(control_map), np.asarray(expected))
    assert "easel:u:" not in " ".join(button_ids(message))  # one image: the map gets no buttons


async def test_the_configured_strength_is_the_default(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    message = await final(await w.alice.slash(w.channel, "imagine", prompt="a fox", control=("e.png", square_png()),
                                              control_mode="canny", steps=1))
    assert (await job_of(simcord_bot, message)).params["control_strength"] == 0.9


@pytest.mark.parametrize(("options", "expected"), [
    ({"control_mode": "depth"}, "Model tiny has no ControlNet for 'depth'; its modes are: canny, scribble."),
    ({}, "pick a `control_mode` (canny, scribble)"),
])
async def test_a_mode_the_model_lacks_is_refused_privately(simcord_env, simcord_bot, options, expected) -> None:
    w = make_world(simcord_env)
    result = await w.alice.slash(w.channel, "imagine", prompt="a fox", control=("e.png", square_png()), **options)
    assert expected in refusal(result)
    assert (await simcord_bot.studio.database.jobs.history(user_id=w.alice.id)).total == 0


async def test_a_mode_without_a_picture_is_refused_privately(simcord_env) -> None:
    w = make_world(simcord_env)
    result = await w.alice.slash(w.channel, "imagine", prompt="a fox", control_mode="canny")
    assert "attach one with `control`" in refusal(result)


async def test_a_control_upload_that_is_no_image_is_refused_privately(simcord_env) -> None:
    w = make_world(simcord_env)
    result = await w.alice.slash(w.channel, "imagine", prompt="a fox", control=("e.png", b"not a picture"))
    assert "image" in refusal(result).lower()


async def test_control_mode_autocomplete_offers_the_models_modes(simcord_env) -> None:
    w = make_world(simcord_env)
    offered = await w.alice.autocomplete(w.channel, "imagine", "control_mode", "", prompt="x")
    assert [c["value"] for c in offered] == ["canny", "scribble"]


async def test_use_as_control_opens_a_modal_and_queues_imagine(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    picture = await w.alice.send(w.channel, "", attachments=[("sketch.png", square_png())])
    shown = await w.bob.context_menu(w.channel, "Use as control...", picture)
    assert shown.modal is not None and shown.modal["title"] == "Use this picture as control"
    result = await w.bob.submit_modal(shown, {PROMPT: "a blue boat", MODE: "scribble", STRENGTH: "1.2"})
    message = await final(result)
    row = await job_of(simcord_bot, message)
    assert row.kind == "imagine" and row.user_id == w.bob.id and row.request_message_id == picture.id
    assert (row.params["prompt"], row.params["control_mode"], row.params["control_strength"]) == \
        ("a blue boat", "scribble", 1.2)


@pytest.mark.parametrize(("values", "expected"), [
    ({PROMPT: "a boat", MODE: "depth", STRENGTH: ""}, "has no ControlNet for 'depth'"),
    ({PROMPT: "a boat", MODE: "canny", STRENGTH: "strong"}, "'strong' is not a control strength"),
    ({PROMPT: "a boat", MODE: "canny", STRENGTH: "3"}, "The control strength must be between 0 and 2."),
])
async def test_use_as_control_refusals_are_private(simcord_env, simcord_bot, values, expected) -> None:
    w = make_world(simcord_env)
    picture = await w.alice.send(w.channel, "", attachments=[("sketch.png", square_png())])
    shown = await w.bob.context_menu(w.channel, "Use as control...", picture)
    assert expected in refusal(await w.bob.submit_modal(shown, values))
    assert (await simcord_bot.studio.database.jobs.history(user_id=w.bob.id)).total == 0


async def test_use_as_control_on_a_message_without_an_image_shows_no_modal(simcord_env) -> None:
    w = make_world(simcord_env)
    text = await w.alice.send(w.channel, "just words")
    result = await w.bob.context_menu(w.channel, "Use as control...", text)
    assert result.modal is None and refusal(result) == "That message has no image I can follow."


async def test_describe_of_a_picture_with_parameters_shows_them_with_a_suggest_button(simcord_env,
                                                                                       simcord_bot) -> None:
    w = make_world(simcord_env)
    original = await final(await w.alice.slash(w.channel, "imagine", prompt="a red fox", seed=42, steps=2))
    result = await w.bob.context_menu(w.channel, "Describe", original)
    assert result.ephemeral
    text = result.response.content
    assert text.startswith("```\na red fox\n") and "Seed: 42" in text and "Steps: 2" in text
    assert button_ids(result.response) == ["easel:describe:anyway"]
    made = await final(await w.bob.click(result.response, custom_id="easel:describe:anyway"))
    row = await job_of(simcord_bot, made)
    assert row.kind == "describe" and row.user_id == w.bob.id


async def test_reroll_of_a_control_result_follows_the_same_picture(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    message = await final(await w.alice.slash(w.channel, "imagine", prompt="a red house",
                                              control=("edges.png", square_png()), control_mode="canny", steps=1))
    original = await job_of(simcord_bot, message)
    [reroll] = [i for i in button_ids(message) if i.startswith("easel:r:")]
    again = await job_of(simcord_bot, await final(await w.bob.click(message, custom_id=reroll)))
    assert again.job_id != original.job_id and again.user_id == w.bob.id
    for key in ("control_image", "control_mode", "control_strength"):
        assert again.params[key] == original.params[key]
