"""The production loader on local tiny models, and its one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from config import DeviceConfig, ModelConfig
from inference.families import detect_family
from inference.jobs import JobKind
from inference.loader import ModelLoadError, load_model
from inference.presets import PRESETS


def test_a_local_folder_loads_with_shared_pipelines(tiny_model_dir: Path) -> None:
    model = load_model(ModelConfig(source=str(tiny_model_dir), name="tiny", size=64, min_size=64), DeviceConfig(device="cpu"))
    assert model.name == "tiny" and model.family == "sd15"
    assert str(model.device) == "cpu" and str(model.dtype) == "torch.float32"
    base = model.pipes[JobKind.IMAGINE]
    assert model.pipes[JobKind.VARY].unet is base.unet
    assert model.pipes[JobKind.PAINT].text_encoder is base.text_encoder
    assert base.safety_checker is None  # off unless configured
    assert model.tokenizer.model_max_length == 77


def test_a_hub_id_goes_through_diffusers_and_fails_in_one_line_offline() -> None:
    with pytest.raises(ModelLoadError) as info:
        load_model(ModelConfig(source="someone/not-a-model"), DeviceConfig(device="cpu"))
    message = str(info.value)
    assert "someone/not-a-model" in message and "\n" not in message


def test_a_missing_path_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=f"no such folder: {tmp_path / 'nothing'}$"):
        load_model(ModelConfig(source=str(tmp_path / "nothing")), DeviceConfig(device="cpu"))


def test_a_folder_that_is_not_a_model_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="not a diffusers model"):
        load_model(ModelConfig(source=str(tmp_path)), DeviceConfig(device="cpu"))


def test_an_unavailable_gpu_is_reported() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ModelLoadError, match="no CUDA GPU"):
        load_model(ModelConfig(source="org/x"), DeviceConfig(device="cuda"))


def test_a_scheduler_is_picked_by_name(tiny_model_dir: Path) -> None:
    model = load_model(ModelConfig(source=str(tiny_model_dir)), DeviceConfig(device="cpu"))
    assert type(model.scheduler("")).__name__ == "EulerDiscreteScheduler"
    dpm = model.scheduler("dpmpp_2m_karras")
    assert type(dpm).__name__ == "DPMSolverMultistepScheduler" and dpm.config.use_karras_sigmas
    assert model.scheduler("dpmpp_2m_karras") is dpm


@pytest.mark.parametrize(
    ("source", "cls", "family"),
    [
        ("stabilityai/sd-turbo", "", "sd-turbo"),
        ("stabilityai/sdxl-turbo", "", "sdxl-turbo"),
        ("stabilityai/stable-diffusion-xl-base-1.0", "", "sdxl"),
        ("/models/mine", "StableDiffusionXLPipeline", "sdxl"),
        ("stabilityai/stable-diffusion-2-1", "", "sd21"),
        ("stable-diffusion-v1-5/stable-diffusion-v1-5", "", "sd15"),
    ],
)
def test_model_families_are_detected(source: str, cls: str, family: str) -> None:
    assert detect_family(source, cls) == family


def test_turbo_presets_use_few_steps_and_no_guidance() -> None:
    for name in ("sd-turbo", "sdxl-turbo"):
        assert PRESETS[name].steps <= 4 and PRESETS[name].guidance == 0.0
    assert PRESETS["sd15"].steps >= 20 and PRESETS["sd15"].guidance > 5
    w, h = PRESETS["sd15"].aspect_size("landscape")
    assert w > h and w % 8 == 0 and h % 8 == 0
