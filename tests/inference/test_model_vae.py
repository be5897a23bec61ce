"""``model.vae``: a separate VAE replaces the model's own in every pipeline of that model.

The reference is diffusers doing what its docs show: ``from_pretrained(model, vae=AutoencoderKL...)``.
The VAE here is a second tiny one with other random weights, so the pixels must change, and change
exactly as diffusers changes them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from config import ConfigError, DeviceConfig, ModelConfig, load_config
from inference.generate import run_diffusion_batch
from inference.jobs import JobKind, TextToImageJob
from inference.loader import LoadedModel, ModelLoadError, load_model
from inference.prepare import PreparedJob
from tests.fixtures.single_file_sdxl import ldm_vae_state_dict, write_once

CPU = DeviceConfig(device="cpu")
SEEDS = (5, 6)


def bot_pixels(model: LoadedModel) -> np.ndarray:
    job = TextToImageJob(job_id="v", owner=1, prompt="a photo of a red fox", width=64, height=64, steps=3,
                         guidance=4.0, seed=SEEDS[0], count=len(SEEDS))
    results = run_diffusion_batch(model, [PreparedJob(job)], lambda *_: True)
    assert results is not None
    return np.stack([np.asarray(image, dtype=np.int16) for image in results[0].images])


def diffusers_pixels(model_dir: Path, vae_dir: Path | None) -> np.ndarray:
    from diffusers import AutoencoderKL, StableDiffusionXLPipeline

    extra: dict[str, Any] = {"vae": AutoencoderKL.from_pretrained(vae_dir)} if vae_dir else {}
    pipe = StableDiffusionXLPipeline.from_pretrained(model_dir, **extra)
    pipe.set_progress_bar_config(disable=True)
    with torch.inference_mode():
        images = pipe(prompt=["a photo of a red fox"] * len(SEEDS), num_inference_steps=3, guidance_scale=4.0,
                      width=64, height=64, generator=[torch.Generator("cpu").manual_seed(s) for s in SEEDS]).images
    return np.stack([np.asarray(image, dtype=np.int16) for image in images])


@pytest.fixture(scope="module")
def vae_model(tiny_sdxl_dir: Path, tiny_vae_dir: Path) -> LoadedModel:
    return load_model(ModelConfig(source=str(tiny_sdxl_dir), name="xl-vae", vae=str(tiny_vae_dir)), CPU)


@pytest.fixture(scope="module")
def vae_file(tiny_vae_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The second VAE as one file in the original key names, like a downloaded ``sdxl_vae.safetensors``."""
    out = tmp_path_factory.mktemp("vae-file") / "sdxl_vae.safetensors"
    return write_once(out, lambda: ldm_vae_state_dict(tiny_vae_dir))


def test_a_separate_vae_changes_the_pixels_exactly_as_diffusers_does(vae_model: LoadedModel, tiny_sdxl_dir: Path,
                                                                      tiny_vae_dir: Path) -> None:
    ours = bot_pixels(vae_model)
    expected = diffusers_pixels(tiny_sdxl_dir, tiny_vae_dir)
    assert np.abs(ours - expected).max() <= 1
    assert np.abs(ours - diffusers_pixels(tiny_sdxl_dir, None)).max() > 20  # the model's own VAE draws otherwise


def test_every_pipeline_of_the_model_shares_the_one_vae(vae_model: LoadedModel, tiny_vae_dir: Path) -> None:
    from diffusers import AutoencoderKL

    vae = vae_model.pipes[JobKind.IMAGINE].vae
    assert all(pipe.vae is vae for pipe in vae_model.pipes.values())
    reference = AutoencoderKL.from_pretrained(tiny_vae_dir).state_dict()
    assert all(torch.equal(reference[k], v) for k, v in vae.state_dict().items())


def test_a_single_file_vae_holds_the_same_weights(tiny_sdxl_dir: Path, vae_file: Path, vae_model: LoadedModel) -> None:
    model = load_model(ModelConfig(source=str(tiny_sdxl_dir), vae=str(vae_file)), CPU)
    ours, theirs = model.pipes[JobKind.VARY].vae.state_dict(), vae_model.pipes[JobKind.VARY].vae.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in theirs)


def test_a_model_folder_lends_its_vae(tiny_sdxl_dir: Path, tiny_model_dir: Path) -> None:
    model = load_model(ModelConfig(source=str(tiny_sdxl_dir), vae=str(tiny_model_dir)), CPU)
    assert model.pipes[JobKind.PAINT].vae.config.scaling_factor == 0.18215  # the SD 1.5 tiny model's VAE


def test_a_dedicated_inpainting_model_gets_the_vae_too(tiny_model_dir: Path, tiny_vae_dir: Path) -> None:
    model = load_model(ModelConfig(source=str(tiny_model_dir), inpaint_source=str(tiny_model_dir),
                                   vae=str(tiny_vae_dir)), CPU)
    assert model.pipes[JobKind.PAINT].vae is model.pipes[JobKind.IMAGINE].vae


def broken_vae(tmp_path: Path, case: str) -> str:
    if case == "missing":
        return str(tmp_path / "nowhere")
    if case == "not a vae folder":
        (tmp_path / "empty").mkdir()
        return str(tmp_path / "empty")
    if case == "damaged file":
        (tmp_path / "vae.safetensors").write_bytes(b"\x00" * 40)
        return str(tmp_path / "vae.safetensors")
    if case == "other shape":
        save_file({"encoder.conv_in.weight": torch.zeros(3, 3, 3, 3)}, str(tmp_path / "small.safetensors"))
        return str(tmp_path / "small.safetensors")
    return "someone/not-a-vae"


@pytest.mark.parametrize(("case", "expected"), [
    ("missing", "vae: no such folder: .*nowhere"),
    ("not a vae folder", "is not a VAE folder \\(no config.json"),
    ("damaged file", "vae .*vae.safetensors could not be loaded: "),
    ("other shape", "does not fit this model's VAE"),
    ("hub id", "vae someone/not-a-vae could not be loaded"),
])
def test_a_bad_vae_is_one_clear_line(tiny_sdxl_dir: Path, tmp_path: Path, case: str, expected: str) -> None:
    with pytest.raises(ModelLoadError, match=expected) as info:
        load_model(ModelConfig(source=str(tiny_sdxl_dir), name="xl", vae=broken_vae(tmp_path, case)), CPU)
    assert "\n" not in str(info.value) and str(info.value).startswith("model 'xl'")


def test_the_config_refuses_a_missing_vae_and_a_remote_one(tmp_path: Path, tiny_sdxl_dir: Path) -> None:
    toml = tmp_path / "easel.toml"
    toml.write_text(f'[model]\nsource = "{tiny_sdxl_dir}"\nvae = "vaes/mine.safetensors"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="model.vae: no such file: .*vaes/mine.safetensors"):
        load_config(toml, environ={})
    toml.write_text('backend = "remote"\n[model]\nsource = "org/model"\nvae = "org/vae"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="model.vae: only the local backend can use it"):
        load_config(toml, environ={})


def test_a_vae_on_a_kandinsky_model_is_refused(tiny_kandinsky_dir: Path, tiny_vae_dir: Path) -> None:
    cfg = ModelConfig(source=str(tiny_kandinsky_dir / "decoder"), prior_source=str(tiny_kandinsky_dir / "prior"),
                      name="k", vae=str(tiny_vae_dir))
    with pytest.raises(ModelLoadError, match="^model 'k': vae replaces the AutoencoderKL .* so remove vae$"):
        load_model(cfg, CPU)
