"""A model's family comes from its own configs or tensor names; its name decides only what they cannot.

Folders and files here mimic real downloads (their ``model_index.json`` and configs, or their tensor
names with tiny tensors); detection reads nothing else, so no weights are needed except where a
model is loaded.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from safetensors.torch import save_file

from config import DeviceConfig, ModelConfig
from inference.families import detect_family, resolve_family
from inference.jobs import JobKind
from inference.loader import load_model

SD_INDEX = {"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"],
            "text_encoder": ["transformers", "CLIPTextModel"], "safety_checker": [None, None]}


def mimic_folder(folder: Path, index: dict, *, prediction: str = "epsilon", unet: dict | None = None) -> Path:
    """A diffusers folder's configs (no weights): enough for detection."""
    (folder / "scheduler").mkdir(parents=True)
    (folder / "unet").mkdir()
    (folder / "model_index.json").write_text(json.dumps(index), encoding="utf-8")
    (folder / "scheduler" / "scheduler_config.json").write_text(
        json.dumps({"_class_name": "EulerDiscreteScheduler", "prediction_type": prediction}), encoding="utf-8")
    (folder / "unet" / "config.json").write_text(json.dumps(unet or {"sample_size": 96}), encoding="utf-8")
    return folder


def checkpoint_with(path: Path, *keys: str) -> Path:
    """A .safetensors file holding tiny tensors under these names, as a real checkpoint's header names them."""
    import torch

    save_file({key: torch.zeros(2) for key in keys}, str(path))
    return path


def test_stable_diffusion_2_is_told_by_its_v_prediction_scheduler(tmp_path: Path) -> None:
    folder = mimic_folder(tmp_path / "stable-diffusion-2", SD_INDEX, prediction="v_prediction")
    assert detect_family(str(folder)) == "sd21"
    renamed = mimic_folder(tmp_path / "my-favourite", SD_INDEX, prediction="v_prediction")
    assert detect_family(str(renamed)) == "sd21"


def test_a_hub_id_with_nothing_local_is_guessed_from_its_name() -> None:
    assert detect_family("stabilityai/stable-diffusion-2") == "sd21"
    assert detect_family("stabilityai/stable-diffusion-2-1") == "sd21"
    assert detect_family("stabilityai/stable-diffusion-2-base") == "sd15"  # 512 px, SD 1.5's sizes
    assert detect_family("stabilityai/sdxl-turbo") == "sdxl-turbo"
    assert detect_family("stabilityai/sd-turbo") == "sd-turbo"
    assert detect_family("stable-diffusion-v1-5/stable-diffusion-v1-5") == "sd15"
    assert detect_family("kandinsky-community/kandinsky-2-2-decoder") == "kandinsky22"


def test_an_sdxl_folder_is_sdxl_whatever_its_name(tiny_sdxl_dir: Path, tmp_path: Path) -> None:
    plain = tmp_path / "photoreal-v3"
    shutil.copytree(tiny_sdxl_dir, plain)
    assert detect_family(str(plain)) == "sdxl"
    assert detect_family(str(tiny_sdxl_dir)) == "sdxl"


def test_an_sd15_folder_named_like_xl_stays_sd15(tiny_model_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "my-xl-v2-1").symlink_to(tiny_model_dir)
    assert detect_family(str(tmp_path / "my-xl-v2-1")) == "sd15"


@pytest.mark.parametrize(("index", "unet"), [
    ({"_class_name": "SomeCustomPipeline", "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"]}, None),
    ({"_class_name": "SomeCustomPipeline"}, {"addition_embed_type": "text_time"}),
])
def test_sdxl_is_told_by_its_second_text_encoder_or_text_time_unet(tmp_path: Path, index: dict,
                                                                   unet: dict | None) -> None:
    assert detect_family(str(mimic_folder(tmp_path / "m", index, unet=unet))) == "sdxl"


def test_turbo_in_the_name_turns_a_detected_family_into_its_turbo_preset(tiny_sdxl_dir: Path,
                                                                         tiny_model_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "sdxl-turbo").symlink_to(tiny_sdxl_dir)
    (tmp_path / "sd-turbo").symlink_to(tiny_model_dir)
    assert detect_family(str(tmp_path / "sdxl-turbo")) == "sdxl-turbo"
    assert detect_family(str(tmp_path / "sd-turbo")) == "sd-turbo"


@pytest.mark.parametrize("class_name", ["KandinskyV22Pipeline", "KandinskyV22CombinedPipeline"])
def test_a_kandinsky_folder_is_kandinsky22(tmp_path: Path, class_name: str) -> None:
    assert detect_family(str(mimic_folder(tmp_path / "k", {"_class_name": class_name}))) == "kandinsky22"


def test_single_files_are_told_by_their_tensor_names(tmp_path: Path) -> None:
    sdxl = checkpoint_with(tmp_path / "juggernaut_v9.safetensors", "model.diffusion_model.label_emb.0.0.weight",
                           "conditioner.embedders.0.transformer.text_model.final_layer_norm.weight",
                           "conditioner.embedders.1.model.ln_final.weight")
    sd2 = checkpoint_with(tmp_path / "v1-merge.safetensors", "model.diffusion_model.out.0.weight",
                          "cond_stage_model.model.ln_final.weight")
    sd1 = checkpoint_with(tmp_path / "dreamxl.safetensors", "model.diffusion_model.out.0.weight",
                          "cond_stage_model.transformer.text_model.final_layer_norm.weight")
    assert [detect_family(str(p)) for p in (sdxl, sd2, sd1)] == ["sdxl", "sd21", "sd15"]


def test_an_unreadable_file_falls_back_to_its_name(tmp_path: Path) -> None:
    (tmp_path / "sdxl-turbo-damaged.safetensors").write_bytes(b"not a safetensors file")
    (tmp_path / "old.ckpt").write_bytes(b"pickle")
    assert detect_family(str(tmp_path / "sdxl-turbo-damaged.safetensors")) == "sdxl-turbo"
    assert detect_family(str(tmp_path / "old.ckpt")) == "sd15"


def test_relative_sources_are_read_from_the_config_folder(tiny_sdxl_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "house-style").symlink_to(tiny_sdxl_dir)
    assert resolve_family("auto", "models/house-style", tmp_path) == "sdxl"
    assert resolve_family("sd15", "models/house-style", tmp_path) == "sd15"  # a configured family wins


def test_the_loader_takes_an_sdxl_single_file_for_sdxl(tiny_sdxl_single_file: Path, tiny_sdxl_dir: Path) -> None:
    assert tiny_sdxl_single_file.name == "juggernaut_v9.safetensors"
    model = load_model(ModelConfig(source=str(tiny_sdxl_single_file), single_file_config=str(tiny_sdxl_dir)),
                       DeviceConfig(device="cpu"))
    assert model.family == "sdxl" and model.preset.size == 1024
    assert type(model.pipes[JobKind.IMAGINE]).__name__ == "StableDiffusionXLPipeline"
