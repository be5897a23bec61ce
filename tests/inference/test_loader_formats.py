"""The loader's other model formats on tiny models, offline: one ``.safetensors`` checkpoint and LoRAs.

Models are configured the way an admin writes ``easel.toml`` (relative paths resolved against the
config file's folder) and run through the same generation code the executor uses.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from config import Config, DeviceConfig, LoraConfig, ModelConfig, load_config
from inference.generate import run_diffusion_batch
from inference.jobs import ImageToImageJob, JobKind, TextToImageJob
from inference.loader import LoadedModel, ModelLoadError, load_model
from inference.prepare import PreparedJob
from inference.presets import PRESETS, preset_for
from tests.fixtures.single_file import ensure_tiny_single_file, unet_key, vae_key
from tests.fixtures.tiny_lora import ensure_tiny_lora, lora_state_dict

CPU = DeviceConfig(device="cpu")
LORA = "tiny-lora"
LORA_PEFT = "tiny-lora-peft"
INIT = Image.fromarray(np.linspace(0, 255, 64 * 64 * 3).reshape(64, 64, 3).astype(np.uint8), "RGB")


def user_config(folder: Path, model_toml: str, links: dict[str, Path]) -> Config:
    """An ``easel.toml`` in ``folder`` with the given ``[model]`` body; ``links`` become files there."""
    for name, target in links.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).symlink_to(target)
    (folder / "easel.toml").write_text(f'{model_toml}\n[device]\ndevice = "cpu"\n', encoding="utf-8")
    return load_config(folder / "easel.toml", environ={})


def draw(model: LoadedModel, loras: tuple[tuple[str, float], ...] = (), kind: JobKind = JobKind.IMAGINE) -> np.ndarray:
    """Run one two-image job through the executor's generation code; pixels as int16."""
    params = {"job_id": "j", "owner": 1, "prompt": "a photo of a red fox", "width": 64, "height": 64,
              "steps": 3, "guidance": 0.0, "seed": 11, "count": 2, "loras": loras}
    if kind is JobKind.IMAGINE:
        prepared = PreparedJob(TextToImageJob(**params))
    else:
        prepared = PreparedJob(ImageToImageJob(**params, strength=0.7), init_image=INIT)
    results = run_diffusion_batch(model, [prepared], lambda *_: True)
    assert results is not None
    return np.stack([np.asarray(image, dtype=np.int16) for image in results[0].images])


def max_diff(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a - b).max())


@pytest.fixture(scope="module")
def folder_model(tiny_model_dir: Path) -> LoadedModel:
    return load_model(ModelConfig(source=str(tiny_model_dir), name="folder"), CPU)


@pytest.fixture(scope="module")
def single_file_config(tiny_single_file: Path, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Config:
    return user_config(
        tmp_path_factory.mktemp("single-file-user"),
        '[model]\nsource = "models/tiny-sd.safetensors"\nsingle_file_config = "models/tiny-sd"\nsteps = 3\n',
        {"models/tiny-sd.safetensors": tiny_single_file, "models/tiny-sd": tiny_model_dir},
    )


@pytest.fixture(scope="module")
def single_file_model(single_file_config: Config) -> LoadedModel:
    return load_model(single_file_config.model, single_file_config.device, single_file_config.base_dir)


@pytest.fixture(scope="module")
def lora_model(tiny_model_dir: Path, tiny_lora: Path, tiny_lora_peft: Path,
               tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    cfg = user_config(
        tmp_path_factory.mktemp("lora-user"),
        f'[model]\nsource = "{tiny_model_dir}"\nname = "tiny"\n'
        f'[[model.loras]]\nname = "{LORA}"\nsource = "loras/tiny-lora.safetensors"\nweight = 1.0\n'
        f'[[model.loras]]\nname = "{LORA_PEFT}"\nsource = "loras/tiny-lora-peft.safetensors"\n',
        {"loras/tiny-lora.safetensors": tiny_lora, "loras/tiny-lora-peft.safetensors": tiny_lora_peft},
    )
    return load_model(cfg.model, cfg.device, cfg.base_dir)


# --------------------------------------------------------------------------- single file


def test_a_single_file_loads_from_a_user_config(single_file_config: Config, single_file_model: LoadedModel) -> None:
    model = single_file_model
    assert model.name == "tiny-sd" and model.family == "sd15"
    assert model.preset == preset_for(single_file_config.model, "sd15") and model.preset.steps == 3
    base = model.pipes[JobKind.IMAGINE]
    assert type(base).__name__ == "StableDiffusionPipeline" and base.safety_checker is None
    assert model.pipes[JobKind.VARY].unet is base.unet
    assert model.pipes[JobKind.PAINT].text_encoder is base.text_encoder
    assert model.tokenizer.model_max_length == 77


def test_a_single_file_holds_exactly_the_folder_weights(folder_model: LoadedModel,
                                                        single_file_model: LoadedModel) -> None:
    for component in ("unet", "vae", "text_encoder"):
        ours = getattr(single_file_model.pipes[JobKind.IMAGINE], component).state_dict()
        theirs = getattr(folder_model.pipes[JobKind.IMAGINE], component).state_dict()
        assert ours.keys() == theirs.keys(), component
        assert all(torch.equal(ours[k], theirs[k]) for k in theirs), component


@pytest.mark.parametrize("kind", [JobKind.IMAGINE, JobKind.VARY])
def test_a_single_file_draws_the_folder_models_pictures(folder_model: LoadedModel, single_file_model: LoadedModel,
                                                        kind: JobKind) -> None:
    assert max_diff(draw(single_file_model, kind=kind), draw(folder_model, kind=kind)) <= 1


@pytest.mark.parametrize(
    ("file_name", "family", "expected"),
    [("tiny-sd-turbo.safetensors", "auto", "sd-turbo"), ("tiny-sd.safetensors", "sd21", "sd21")],
)
def test_a_single_files_family_comes_from_its_name_or_the_config(
    tiny_single_file: Path, tiny_model_dir: Path, tmp_path: Path, file_name: str, family: str, expected: str
) -> None:
    (tmp_path / file_name).symlink_to(tiny_single_file)
    cfg = ModelConfig(source=str(tmp_path / file_name), family=family, single_file_config=str(tiny_model_dir))
    model = load_model(cfg, CPU)
    assert model.family == expected
    assert model.preset.steps == PRESETS[expected].steps and model.preset.guidance == PRESETS[expected].guidance


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("corrupt", "could not be loaded from .*corrupt.safetensors"),
        ("unet only", "missing in the checkpoint"),
        ("config missing", "single_file_config .*nowhere does not exist"),
        ("config not a model", "single_file_config .* not a diffusers model folder"),
        ("no config offline", "set single_file_config to the diffusers folder"),
    ],
)
def test_a_bad_single_file_is_one_clear_line(tiny_single_file: Path, tiny_model_dir: Path, tmp_path: Path,
                                             case: str, expected: str) -> None:
    source, config = tiny_single_file, str(tiny_model_dir)
    if case == "corrupt":
        source = tmp_path / "corrupt.safetensors"
        source.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json" + bytes(range(256)))
    elif case == "unet only":
        source = tmp_path / "unet.safetensors"
        shutil.copy(tiny_model_dir / "unet" / "diffusion_pytorch_model.safetensors", source)
    elif case == "config missing":
        config = str(tmp_path / "nowhere")
    elif case == "config not a model":
        config = str(tmp_path)
    else:
        config = ""
    with pytest.raises(ModelLoadError, match=expected) as info:
        load_model(ModelConfig(source=str(source), single_file_config=config), CPU)
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------- LoRA


def test_configured_loras_load_as_adapters_of_unet_and_text_encoder(lora_model: LoadedModel) -> None:
    assert lora_model.loras == {LORA: "lora0", LORA_PEFT: "lora1"}
    adapters = lora_model.pipes[JobKind.IMAGINE].get_list_adapters()
    assert adapters == {"unet": ["lora0", "lora1"], "text_encoder": ["lora0", "lora1"]}


def test_a_job_without_loras_draws_what_the_plain_model_draws(lora_model: LoadedModel,
                                                              folder_model: LoadedModel) -> None:
    draw(lora_model, ((LORA, 1.0),))
    assert max_diff(draw(lora_model), draw(folder_model)) <= 1


def test_a_lora_at_weight_one_changes_the_picture_and_at_zero_does_not(lora_model: LoadedModel) -> None:
    plain = draw(lora_model)
    with_lora = draw(lora_model, ((LORA, 1.0),))
    assert np.abs(with_lora - plain).mean() > 2.0  # a visible change, not rounding noise
    assert max_diff(draw(lora_model, ((LORA, 0.0),)), plain) <= 1


def test_switching_loras_on_and_off_repeats_each_picture(lora_model: LoadedModel) -> None:
    settings = [((), JobKind.IMAGINE), (((LORA, 1.0),), JobKind.IMAGINE), (((LORA, 0.5),), JobKind.IMAGINE),
                ((), JobKind.VARY), (((LORA, 1.0),), JobKind.VARY)]
    first: dict[int, np.ndarray] = {}
    for index in [0, 1, 0, 3, 4, 2, 1, 3, 0, 4, 2]:
        loras, kind = settings[index]
        image = draw(lora_model, loras, kind)
        if index in first:
            assert max_diff(image, first[index]) <= 1, settings[index]
        first.setdefault(index, image)
    assert np.abs(first[1] - first[0]).mean() > 2.0 and np.abs(first[4] - first[3]).mean() > 2.0
    assert max_diff(first[1], first[2]) > 1  # the weight is honoured, not just on/off


def test_kohya_and_peft_files_of_one_lora_agree_and_weights_add_up(lora_model: LoadedModel) -> None:
    kohya = draw(lora_model, ((LORA, 1.0),))
    assert max_diff(draw(lora_model, ((LORA_PEFT, 1.0),)), kohya) <= 1
    assert max_diff(draw(lora_model, ((LORA, 0.5), (LORA_PEFT, 0.5))), kohya) <= 1


def _wrong_shapes(path: Path) -> Path:
    prefix = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q"
    save_file({f"{prefix}.lora_down.weight": torch.randn(4, 320), f"{prefix}.lora_up.weight": torch.randn(320, 4),
               f"{prefix}.alpha": torch.tensor(4.0)}, str(path))
    return path


def _absent_layers(path: Path) -> Path:
    prefix = "lora_unet_down_blocks_3_attentions_0_transformer_blocks_0_attn1_to_q"
    save_file({f"{prefix}.lora_down.weight": torch.randn(4, 64), f"{prefix}.lora_up.weight": torch.randn(64, 4),
               f"{prefix}.alpha": torch.tensor(4.0)}, str(path))
    return path


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing", "does not exist"),
        ("corrupt", "could not be loaded from"),
        ("full model", "holds no LoRA weights"),
        ("wrong shapes", "does not fit this model"),
        ("absent layers", "does not fit this model"),
    ],
)
def test_a_bad_lora_is_one_clear_line(tiny_model_dir: Path, tmp_path: Path, case: str, expected: str) -> None:
    path = tmp_path / "lora.safetensors"
    if case == "corrupt":
        path.write_bytes(b"\xff" * 64)
    elif case == "full model":
        shutil.copy(tiny_model_dir / "unet" / "diffusion_pytorch_model.safetensors", path)
    elif case == "wrong shapes":
        _wrong_shapes(path)
    elif case == "absent layers":
        _absent_layers(path)
    cfg = ModelConfig(source=str(tiny_model_dir), loras=(LoraConfig(name="style", source=str(path)),))
    with pytest.raises(ModelLoadError, match=f"LoRA 'style'.*{expected}") as info:
        load_model(cfg, CPU)
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------- the fixtures themselves


def test_built_files_are_reused_and_rebuilt_when_stale(tiny_model_dir: Path, tmp_path: Path) -> None:
    single = ensure_tiny_single_file(tiny_model_dir, tmp_path / "m.safetensors")
    lora = ensure_tiny_lora(tiny_model_dir, tmp_path / "l.safetensors")
    stamps = (single.stat().st_mtime_ns, lora.stat().st_mtime_ns)
    assert ensure_tiny_single_file(tiny_model_dir, single) == single
    assert ensure_tiny_lora(tiny_model_dir, lora) == lora
    assert (single.stat().st_mtime_ns, lora.stat().st_mtime_ns) == stamps
    for stale in (single, lora):
        save_file({"x": torch.zeros(1)}, str(stale), metadata={"easel-tiny": "old"})
    assert len(ensure_tiny_single_file(tiny_model_dir, single).read_bytes()) > 100_000
    assert len(ensure_tiny_lora(tiny_model_dir, lora, style="peft").read_bytes()) > 10_000


@pytest.mark.parametrize(
    ("convert", "key"),
    [(lambda k: unet_key(k, 1, set()), "add_embedding.linear_1.weight"),
     (lambda k: unet_key(k, 1, set()), "down_blocks.0.resnets.0.nonsense.weight"),
     (lambda k: vae_key(k, 4), "decoder.mid_block.attentions.0.to_x.weight"),
     (lambda k: lora_state_dict({("unet", "m"): (torch.zeros(1), torch.zeros(1))}, k), "lycoris")],
)
def test_fixture_builders_refuse_what_they_cannot_map(convert, key: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError):
        convert(key)
