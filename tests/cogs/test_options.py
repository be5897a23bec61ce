"""Samplers, spacing, eta, style presets and every shared option on /imagine, /vary and /paint, and
varying across models (two tiny models here: "tiny", with a LoRA, and "tiny-b", other weights)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from config import Config, LoraConfig, StyleConfig
from inference.imaging import parse_parameters
from tests.cogs.conftest import eventually
from tests.cogs.helpers import final, image_of, is_final, job_posted_as, make_world, png, refusal

VARY = "\U0001f3a8"
STYLES = (StyleConfig("ink", "ink drawing of {prompt}", "colour"), StyleConfig("gloom", "dark, moody", "bright"))


@pytest.fixture(scope="session")
def tiny_b(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.fixtures.tiny_models import build_tiny_sd

    return build_tiny_sd(tmp_path_factory.mktemp("models-b") / "tiny-b", seed=1)


@pytest.fixture(scope="session")
def pixel_lora(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.fixtures.tiny_lora import ensure_tiny_lora

    return ensure_tiny_lora(tiny_model_dir, tmp_path_factory.mktemp("loras") / "pixel.safetensors")


@pytest.fixture
def bot_config(bot_config: Config, tiny_b: Path, pixel_lora: Path) -> Config:
    model = dataclasses.replace(bot_config.model, loras=(LoraConfig("pixel", str(pixel_lora), 0.8),))
    other = dataclasses.replace(bot_config.model, source=str(tiny_b), name="tiny-b")
    return dataclasses.replace(bot_config, model=model, models=(other,), styles=STYLES)


def rgb(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def diffusers_pipe(folder: Path, kind: str = "text") -> Any:
    from diffusers import AutoPipelineForImage2Image, StableDiffusionPipeline

    cls = StableDiffusionPipeline if kind == "text" else AutoPipelineForImage2Image
    pipe = cls.from_pretrained(folder, safety_checker=None, requires_safety_checker=False, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


async def job_of(bot: Any, message: Any) -> Any:
    return await job_posted_as(bot, message)


async def params_of(message: Any) -> dict[str, str]:
    return parse_parameters((await image_of(message)).info["parameters"])


async def test_imagine_with_ddim_trailing_equals_diffusers_with_the_same_scheduler(simcord_env, tiny_model_dir) -> None:
    from diffusers import DDIMScheduler

    w = make_world(simcord_env)
    message = await final(await w.alice.slash(w.channel, "imagine", prompt="a red fox", seed=11, steps=3,
                                              scheduler="ddim", spacing="trailing"))
    posted = await image_of(message)
    params = parse_parameters(posted.info["parameters"])
    assert params["Sampler"] == "DDIM trailing" and "Eta" not in params
    pipe = diffusers_pipe(tiny_model_dir)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config, timestep_spacing="trailing")
    with torch.inference_mode():
        direct = pipe("a red fox", num_inference_steps=3, guidance_scale=0.0, width=64, height=64,
                      generator=torch.Generator("cpu").manual_seed(11)).images[0]
    assert np.abs(rgb(posted) - rgb(direct)).max() <= 1


async def test_vary_takes_every_shared_option(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    result = await w.alice.slash(w.channel, "vary", image=("src.png", png((64, 64))), prompt="a fox", seed=4,
                                 strength=0.7, negative="blurry", guidance=2.5, steps=5, model="tiny",
                                 scheduler="tcd", eta=0.5, lora="pixel:0.5", style="ink")
    message = await final(result)
    row = await job_of(simcord_bot, message)
    p = row.params
    assert (p["model"], p["scheduler"], p["eta"], p["steps"], p["guidance"], p["style"]) == (
        "tiny", "tcd", 0.5, 5, 2.5, "ink")
    assert p["prompt"] == "ink drawing of a fox" and p["negative_prompt"] == "blurry, colour"
    assert [tuple(x) for x in p["loras"]] == [("pixel", 0.5)]
    params = await params_of(message)
    assert params["prompt"] == "ink drawing of a fox" and params["negative_prompt"] == "blurry, colour"
    assert (params["Sampler"], params["Eta"], params["Style"], params["Lora"], params["CFG scale"]) == (
        "TCD", "0.5", "ink", "pixel:0.5", "2.5")


async def test_paint_takes_every_shared_option_and_keeps_the_unmasked_area(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    colour = (10, 120, 200)
    result = await w.alice.slash(w.channel, "paint", image=("src.png", png((64, 64), colour)), prompt="a sun",
                                 region="right", seed=5, negative="rain", guidance=1.5, steps=3, model="tiny-b",
                                 scheduler="ddim", spacing="trailing", style="gloom")
    message = await final(result)
    p = (await job_of(simcord_bot, message)).params
    assert (p["model"], p["scheduler"], p["spacing"], p["steps"], p["guidance"], p["style"]) == (
        "tiny-b", "ddim", "trailing", 3, 1.5, "gloom")
    assert p["prompt"] == "a sun, dark, moody" and p["negative_prompt"] == "rain, bright"
    params = await params_of(message)
    assert (params["Sampler"], params["Model"], params["Style"]) == ("DDIM trailing", "tiny-b", "gloom")
    image = rgb(await image_of(message))
    assert np.abs(image[:, :24] - np.array(colour)).max() <= 2


async def test_paint_takes_a_lora(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    message = await final(await w.alice.slash(w.channel, "paint", image=("src.png", png((64, 64))), prompt="a sun",
                                              region="left", lora="pixel"))
    p = (await job_of(simcord_bot, message)).params
    assert [tuple(x) for x in p["loras"]] == [("pixel", 0.8)]  # the configured weight


@pytest.mark.parametrize("command", ["imagine", "vary", "paint"])
async def test_an_unknown_style_is_refused_privately(simcord_env, command: str) -> None:
    w = make_world(simcord_env)
    options: dict[str, Any] = {"prompt": "a fox", "style": "neon"}
    if command != "imagine":
        options["image"] = ("src.png", png((64, 64)))
    if command == "paint":
        options["region"] = "left"
    result = await w.alice.slash(w.channel, command, **options)
    assert refusal(result) == "Unknown style 'neon'. Choose one of: ink, gloom."


@pytest.mark.parametrize(("options", "message"), [
    ({"scheduler": "lcm", "spacing": "trailing"}, "The lcm sampler picks its own timesteps"),
    ({"scheduler": "euler", "eta": 0.4}, "`eta` does nothing with the euler sampler"),
    ({"scheduler": "magic"}, "Unknown sampler 'magic'"),
    ({"model": "nope"}, "There is no model called 'nope'"),
    ({"model": "tiny-b", "lora": "pixel"}, "Unknown LoRA 'pixel' for model tiny-b"),
])
async def test_bad_vary_options_are_refused_privately(simcord_env, options: dict[str, Any], message: str) -> None:
    w = make_world(simcord_env)
    result = await w.alice.slash(w.channel, "vary", image=("src.png", png((64, 64))), **options)
    assert message in refusal(result)


async def test_a_variation_on_another_model_gives_that_models_pixels(simcord_env, simcord_bot, tiny_b) -> None:
    w = make_world(simcord_env)
    first = await final(await w.alice.slash(w.channel, "imagine", prompt="a red fox", seed=2, aspect="landscape"))
    source = await image_of(first)
    assert (await params_of(first))["Model"] == "tiny"
    data = await first.attachments[0].read()
    message = await final(await w.alice.slash(w.channel, "vary", image=("fox.png", data), prompt="a blue fox",
                                              model="tiny-b", strength=0.5, steps=4, seed=9))
    varied = await image_of(message)
    assert source.size == (80, 64) and varied.size == (72, 64)  # the source's aspect, about the model's area
    assert (await params_of(message))["Model"] == "tiny-b"
    pipe = diffusers_pipe(tiny_b, "image")
    init = source.convert("RGB").resize(varied.size, Image.Resampling.LANCZOS)  # as easel sizes a source
    with torch.inference_mode():
        direct = pipe("a blue fox", image=init, strength=0.5, num_inference_steps=4,
                      guidance_scale=0.0, generator=torch.Generator("cpu").manual_seed(9)).images[0]
    assert np.abs(rgb(varied) - rgb(direct)).max() <= 1


async def test_buttons_reactions_and_menus_vary_on_the_servers_default_model(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    original = await final(await w.alice.slash(w.channel, "imagine", prompt="a red fox", seed=2, steps=2))
    job_id = (await job_of(simcord_bot, original)).job_id
    by_button = await final(await w.alice.click(original, custom_id=f"easel:v:{job_id}:0"))
    assert (await job_of(simcord_bot, by_button)).params["model"] == "tiny"  # no server default: the source's
    settings = await w.admin.slash(w.channel, "easel settings", default_model="tiny-b")
    assert settings.response is not None
    by_button = await final(await w.alice.click(original, custom_id=f"easel:v:{job_id}:0"))
    by_menu = await final(await w.bob.context_menu(w.channel, "Vary image", original))
    before = max(m.id for m in w.channel.history())
    await w.bob.react(original, VARY)
    by_reaction = await eventually(lambda: next((m for m in reversed(w.channel.history()) if m.id > before
                                                 and m.author.bot and is_final(m.content, m)), None))
    for message in (by_button, by_menu, by_reaction):
        row = await job_of(simcord_bot, message)
        assert row.kind == "vary" and row.params["model"] == "tiny-b"
        assert (await params_of(message))["Model"] == "tiny-b"


async def test_a_result_of_another_model_is_varied_on_that_model(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    original = await final(await w.alice.slash(w.channel, "imagine", prompt="a red fox", model="tiny-b", steps=2))
    job_id = (await job_of(simcord_bot, original)).job_id
    varied = await final(await w.alice.click(original, custom_id=f"easel:v:{job_id}:0"))
    assert (await job_of(simcord_bot, varied)).params["model"] == "tiny-b"


async def test_autocomplete_offers_styles_samplers_and_the_picked_models_loras(simcord_env) -> None:
    w = make_world(simcord_env)
    image = ("src.png", png((64, 64)))
    styles = await w.alice.autocomplete(w.channel, "paint", "style", "", image=image, prompt="x")
    assert [c["value"] for c in styles] == ["ink", "gloom"]
    samplers = await w.alice.autocomplete(w.channel, "vary", "scheduler", "kdpm", image=image)
    assert [c["value"] for c in samplers] == ["kdpm2", "kdpm2_a"]
    loras = await w.alice.autocomplete(w.channel, "vary", "lora", "", image=image)
    assert [c["value"] for c in loras] == ["pixel"]
    loras = await w.alice.autocomplete(w.channel, "vary", "lora", "", image=image, model="tiny-b")
    assert loras == []
    models = await w.alice.autocomplete(w.channel, "paint", "model", "b", image=image, prompt="x")
    assert [c["value"] for c in models] == ["tiny-b"]


async def test_spacing_is_a_choice_on_every_image_command(simcord_env, simcord_bot) -> None:
    for name in ("imagine", "vary", "paint"):
        command = simcord_bot.tree.get_command(name)
        spacing = next(p for p in command.parameters if p.name == "spacing")
        assert [c.value for c in spacing.choices] == ["trailing", "leading", "linspace"]
        assert {"negative", "guidance", "steps", "scheduler", "eta", "model", "lora", "style"} <= {
            p.name for p in command.parameters}


async def test_a_styled_job_done_again_keeps_its_style(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    original = await final(await w.alice.slash(w.channel, "imagine", prompt="a fox", style="ink", steps=2))
    job_id = (await job_of(simcord_bot, original)).job_id
    again = await final(await w.alice.click(original, custom_id=f"easel:r:{job_id}"))
    p = (await job_of(simcord_bot, again)).params
    assert (p["prompt"], p["style"]) == ("ink drawing of a fox", "ink")
    listing = (await w.alice.slash(w.channel, "history")).response.embeds[0].fields[0].value
    assert "ink drawing of a fox" in listing and "style `ink`" in listing
