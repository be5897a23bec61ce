"""A LoRA's recipe in easel.toml, and what it does to a member's request: the recipe's steps,
guidance and sampler are the defaults when the member picks that LoRA, what the member sets
explicitly wins, and a fused LoRA's recipe is the model's own default."""

from __future__ import annotations

from pathlib import Path

import pytest

from config import ConfigError, LoraConfig, LoraRecipe, ModelConfig, load_config
from inference.presets import PRESETS, preset_for
from inference.validation import build_imagine, build_vary, describe_model

HYPER = LoraRecipe(steps=8, guidance=0.0, scheduler="ddim", spacing="trailing", eta=0.3)
MODEL = ModelConfig(source="org/sdxl", name="xl", family="sdxl", loras=(
    LoraConfig("pixel", "loras/pixel.safetensors"),
    LoraConfig("hyper", "ByteDance/Hyper-SD", weight_name="Hyper-SDXL-8steps-lora.safetensors", recipe=HYPER),
    LoraConfig("soft", "loras/soft.safetensors", recipe=LoraRecipe(steps=12, guidance=3.0)),
))
INFO = describe_model(MODEL, preset_for(MODEL, "sdxl"))


def imagine(info=INFO, **kw: object):  # type: ignore[no-untyped-def]
    kw.setdefault("prompt", "a red fox")
    return build_imagine("j1", 1, info, **kw).job  # type: ignore[arg-type]


def test_picking_a_recipe_lora_brings_its_steps_guidance_and_sampler() -> None:
    job = imagine(loras=[("hyper", 1.0)])
    assert (job.steps, job.guidance, job.scheduler, job.spacing, job.eta) == (8, 0.0, "ddim", "trailing", 0.3)
    plain = imagine(loras=[("pixel", 0.8)])
    assert (plain.steps, plain.guidance, plain.scheduler, plain.spacing, plain.eta) == (30, 6.0, "", "", -1.0)


def test_what_the_member_sets_wins_over_the_recipe() -> None:
    job = imagine(loras=[("hyper", 1.0)], steps=6, guidance=2.0)
    assert (job.steps, job.guidance, job.scheduler, job.spacing, job.eta) == (6, 2.0, "ddim", "trailing", 0.3)
    own = imagine(loras=[("hyper", 1.0)], scheduler="euler")
    assert (own.steps, own.scheduler, own.spacing, own.eta) == (8, "euler", "", -1.0)  # spacing, eta go with DDIM


def test_with_two_recipe_loras_the_first_picked_sets_each_value() -> None:
    job = imagine(loras=[("soft", 1.0), ("hyper", 1.0)])
    assert (job.steps, job.guidance, job.scheduler, job.spacing) == (12, 3.0, "ddim", "trailing")
    assert imagine(loras=[("hyper", 1.0), ("soft", 1.0)]).steps == 8


def test_a_recipe_applies_to_variations_too() -> None:
    job = build_vary("j", 1, INFO, init_image="in.png", source_size=(64, 64), loras=[("hyper", 1.0)]).job
    assert (job.steps, job.guidance, job.scheduler) == (8, 0.0, "ddim")


def test_a_fused_loras_recipe_is_the_models_default() -> None:
    fused = ModelConfig(source="org/sdxl", family="sdxl", steps=0, loras=(
        LoraConfig("hyper", "ByteDance/Hyper-SD", weight=1.0, fuse=True, recipe=HYPER),
        LoraConfig("pixel", "loras/pixel.safetensors", recipe=LoraRecipe(scheduler="euler")),
    ))
    preset = preset_for(fused, "sdxl")
    assert (preset.steps, preset.guidance, preset.max_steps) == (8, 0.0, PRESETS["sdxl"].max_steps)
    info = describe_model(fused, preset)
    assert info.loras == ("pixel",) and info.fused == ("hyper",)
    job = imagine(info)
    assert (job.steps, job.guidance, job.scheduler, job.spacing, job.eta) == (8, 0.0, "ddim", "trailing", 0.3)
    assert imagine(info, loras=[("pixel", 1.0)]).scheduler == "euler"
    # the model's own explicit steps still win over its fused LoRA's
    assert preset_for(ModelConfig(source="m", steps=5, loras=fused.loras), "sdxl").steps == 5
    # and a recipe longer than the family allows raises the cap rather than being cut
    long = ModelConfig(source="m", loras=(LoraConfig("x", "x.safetensors", fuse=True, recipe=LoraRecipe(steps=12)),))
    assert (preset_for(long, "sd-turbo").steps, preset_for(long, "sd-turbo").max_steps) == (12, 12)


def test_a_recipe_in_easel_toml_is_read(tmp_path: Path) -> None:
    (tmp_path / "easel.toml").write_text(
        '[model]\nsource = "stabilityai/stable-diffusion-xl-base-1.0"\n'
        '[[model.loras]]\nname = "hyper"\nsource = "ByteDance/Hyper-SD"\n'
        'weight_name = "Hyper-SDXL-1step-lora.safetensors"\nweight = 1.0\nfuse = true\n'
        '[model.loras.recipe]\nsteps = 8\nguidance = 0\nscheduler = "ddim"\nspacing = "trailing"\n', encoding="utf-8")
    (lora,) = load_config(tmp_path / "easel.toml", environ={}).model.loras
    assert lora == LoraConfig("hyper", "ByteDance/Hyper-SD", 1.0, "Hyper-SDXL-1step-lora.safetensors", True,
                              LoraRecipe(steps=8, guidance=0.0, scheduler="ddim", spacing="trailing"))


@pytest.mark.parametrize(
    ("lora_toml", "expected"),
    [
        ('recipe = { scheduler = "warp" }', r"model.loras\[0\].recipe.scheduler: 'warp' is not a sampler easel knows "
                                            r"\(one of euler, euler_a, .*ddim"),
        ('recipe = { spacing = "sideways" }', "recipe.spacing: 'sideways' is not one of trailing, leading, linspace"),
        ("recipe = { eta = 2 }", "recipe.eta: 2 must be between 0 and 1"),
        ("recipe = { steps = 500 }", "recipe.steps: 500 must be between 1 and 200"),
        ("recipe = { guidance = 40 }", "recipe.guidance: 40 must be between 0 and 30"),
        ("recipe = { sampler = 'ddim' }", "recipe.sampler: unknown key .*known keys: eta, guidance, scheduler"),
        ('weight_name = "b.safetensors"', "weight_name: loras/a.safetensors is already one file"),
        ("weight = 3", "loras\\[0\\].weight: 3.0 is outside 0..2"),
    ],
)
def test_a_bad_lora_entry_names_the_key(tmp_path: Path, lora_toml: str, expected: str) -> None:
    (tmp_path / "easel.toml").write_text(
        f'[model]\nsource = "org/model"\n[[model.loras]]\nname = "a"\nsource = "loras/a.safetensors"\n{lora_toml}\n',
        encoding="utf-8")
    with pytest.raises(ConfigError, match=expected):
        load_config(tmp_path / "easel.toml", environ={})


def test_two_loras_of_one_model_cannot_share_a_name(tmp_path: Path) -> None:
    (tmp_path / "easel.toml").write_text(
        '[model]\nsource = "org/model"\n' + '[[model.loras]]\nname = "a"\nsource = "a.safetensors"\n' * 2,
        encoding="utf-8")
    with pytest.raises(ConfigError, match=r"loras\[1\].name: 'a' is used by two LoRAs"):
        load_config(tmp_path / "easel.toml", environ={})


def test_the_models_own_steps_and_guidance_win_over_its_fused_loras_recipe_in_every_request() -> None:
    """README: ``model.steps``/``guidance`` still win. They did in the preset, and were lost again when
    the request took the fused recipe's values as its defaults."""
    own = ModelConfig(source="org/sdxl", family="sdxl", steps=4, guidance=1.5, loras=(
        LoraConfig("hyper", "ByteDance/Hyper-SD", weight=1.0, fuse=True, recipe=HYPER),
        LoraConfig("soft", "loras/soft.safetensors", recipe=LoraRecipe(steps=12, guidance=3.0)),
    ))
    info = describe_model(own, preset_for(own, "sdxl"))
    job = imagine(info)
    assert (job.steps, job.guidance, job.scheduler, job.spacing) == (4, 1.5, "ddim", "trailing")
    picked = imagine(info, loras=[("soft", 1.0)])  # a picked LoRA's recipe is still the request's default
    assert (picked.steps, picked.guidance) == (12, 3.0)
