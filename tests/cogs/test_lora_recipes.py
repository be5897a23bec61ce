"""/imagine lora:<a LoRA with a recipe> as a member uses it: the result is drawn with the recipe's
steps, guidance and sampler (its PNG parameters say so) unless the member set them; a fused LoRA is
always on, so it is neither offered nor accepted in the lora option."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from config import Config, LoraConfig, LoraRecipe
from inference.imaging import parse_parameters
from tests.cogs.helpers import final, image_of, make_world, refusal
from tests.fixtures.tiny_lora import ensure_tiny_lora


@pytest.fixture(scope="module")
def lora_files(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("recipe-loras")
    ensure_tiny_lora(tiny_model_dir, folder / "speed.safetensors", seed=0)
    ensure_tiny_lora(tiny_model_dir, folder / "quick.safetensors", seed=1)
    return folder


@pytest.fixture
def bot_config(bot_config: Config, lora_files: Path) -> Config:
    loras = (
        LoraConfig("speed", str(lora_files / "speed.safetensors"), weight=0.5, fuse=True),
        LoraConfig("quick", str(lora_files), weight_name="quick.safetensors", weight=1.0,
                   recipe=LoraRecipe(steps=3, guidance=1.5, scheduler="ddim")),
    )
    return dataclasses.replace(bot_config, model=dataclasses.replace(bot_config.model, loras=loras))


async def _parameters(result) -> dict[str, str]:  # type: ignore[no-untyped-def]
    image = await image_of(await final(result))
    return parse_parameters(image.info["parameters"])


async def test_a_recipe_lora_brings_its_steps_guidance_and_sampler(simcord_env) -> None:
    w = make_world(simcord_env)
    params = await _parameters(await w.alice.slash(w.channel, "imagine", prompt="a red fox", lora="quick", seed=3))
    assert (params["Steps"], params["Sampler"], params["CFG scale"]) == ("3", "DDIM", "1.5")
    plain = await _parameters(await w.alice.slash(w.channel, "imagine", prompt="a red fox", seed=3))
    assert (plain["Steps"], plain["Sampler"], plain["CFG scale"]) == ("4", "Euler", "0.0")


async def test_the_members_own_steps_and_sampler_win_over_the_recipe(simcord_env) -> None:
    w = make_world(simcord_env)
    result = await w.alice.slash(w.channel, "imagine", prompt="a red fox", lora="quick", steps=2, scheduler="euler_a")
    params = await _parameters(result)
    assert (params["Steps"], params["Sampler"], params["CFG scale"]) == ("2", "Euler a", "1.5")


async def test_a_fused_lora_is_not_offered_and_picking_it_is_explained(simcord_env) -> None:
    w = make_world(simcord_env)
    offered = await w.alice.autocomplete(w.channel, "imagine", "lora", "", prompt="x")
    assert [c["value"] for c in offered] == ["quick"]
    assert "'speed' is always on" in refusal(await w.alice.slash(w.channel, "imagine", prompt="x", lora="speed"))
