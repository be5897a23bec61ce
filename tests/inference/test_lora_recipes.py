"""``[[model.loras]]`` beyond one plain file: a file picked from a folder or hub repo by
``weight_name``, ``fuse = true``, and recipes (steps, guidance, sampler) a LoRA brings along.

Models load through the production loader from an ``easel.toml`` written the way an admin would,
and draw through the executor's generation code; the fused LoRA is checked pixel for pixel against
diffusers doing ``load_lora_weights`` + ``fuse_lora`` itself.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, StableDiffusionPipeline

from config import Config, DeviceConfig, LoraConfig, ModelConfig
from inference.generate import run_diffusion_batch
from inference.jobs import JobError, JobKind, TextToImageJob
from inference.loader import LoadedModel, ModelLoadError, load_model
from inference.prepare import PreparedJob
from inference.validation import build_imagine, describe_model
from tests.fixtures.tiny_lora import ensure_tiny_lora
from tests.inference.test_loader_formats import CPU, _wrong_shapes, draw, max_diff, user_config

PROMPT = "a photo of a red fox"


@pytest.fixture(scope="module")
def lora_folder(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding two different LoRAs, as a multi-file repo like ByteDance/Hyper-SD does."""
    folder = tmp_path_factory.mktemp("lora-repo")
    ensure_tiny_lora(tiny_model_dir, folder / "speed-a.safetensors", seed=0)
    ensure_tiny_lora(tiny_model_dir, folder / "speed-b.safetensors", seed=1)
    return folder


def _config(folder: Path, tiny_model_dir: Path, loras_toml: str, links: dict[str, Path]) -> Config:
    return user_config(folder, f'[model]\nsource = "{tiny_model_dir}"\nname = "tiny"\nfamily = "sd15"\n'
                               f'size = 64\nmin_size = 64\nmax_size = 128\n{loras_toml}', links)


@pytest.fixture(scope="module")
def fused_config(tiny_model_dir: Path, lora_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Config:
    """speed-a fused at 0.8 with an 3-step DDIM recipe; speed-b switchable with no recipe."""
    return _config(
        tmp_path_factory.mktemp("fused-user"), tiny_model_dir,
        '[[model.loras]]\nname = "speed"\nsource = "loras/speed-a.safetensors"\nweight = 0.8\nfuse = true\n'
        'recipe = { steps = 3, guidance = 1.5, scheduler = "ddim" }\n'
        '[[model.loras]]\nname = "style"\nsource = "loras"\nweight_name = "speed-b.safetensors"\n',
        {"loras": lora_folder},
    )


@pytest.fixture(scope="module")
def fused_model(fused_config: Config) -> LoadedModel:
    return load_model(fused_config.model, fused_config.device, fused_config.base_dir)


def _run(model: LoadedModel, job: TextToImageJob) -> np.ndarray:
    results = run_diffusion_batch(model, [PreparedJob(job)], lambda *_: True)
    assert results is not None
    return np.asarray(results[0].images[0], dtype=np.int16)


# --------------------------------------------------------------------------- where the file comes from


def test_weight_name_picks_one_file_of_a_folder(tiny_model_dir: Path, lora_folder: Path) -> None:
    def model_with(source: Path, weight_name: str = "") -> LoadedModel:
        lora = LoraConfig(name="style", source=str(source), weight_name=weight_name)
        return load_model(ModelConfig(source=str(tiny_model_dir), loras=(lora,)), CPU)

    picked = draw(model_with(lora_folder, "speed-b.safetensors"), (("style", 1.0),))
    assert max_diff(picked, draw(model_with(lora_folder / "speed-b.safetensors"), (("style", 1.0),))) <= 1
    assert np.abs(picked - draw(model_with(lora_folder / "speed-a.safetensors"), (("style", 1.0),))).mean() > 2.0


def test_a_folder_with_one_lora_file_needs_no_weight_name(tiny_model_dir: Path, lora_folder: Path,
                                                          tmp_path: Path) -> None:
    shutil.copy(lora_folder / "speed-a.safetensors", tmp_path / "only.safetensors")
    (tmp_path / "README.md").write_text("a LoRA", encoding="utf-8")
    folder = load_model(ModelConfig(source=str(tiny_model_dir), loras=(LoraConfig("s", str(tmp_path)),)), CPU)
    single = load_model(ModelConfig(source=str(tiny_model_dir),
                                    loras=(LoraConfig("s", str(lora_folder / "speed-a.safetensors")),)), CPU)
    assert max_diff(draw(folder, (("s", 1.0),)), draw(single, (("s", 1.0),))) <= 1


def test_a_hub_repo_and_weight_name_reach_load_lora_weights(tiny_model_dir: Path, lora_folder: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """No hub here: the call is recorded and served from a local file, the loading code stays real."""
    calls: list[tuple[tuple, dict]] = []
    real = StableDiffusionPipeline.load_lora_weights

    def recorded(self, source, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(((source,), dict(kwargs)))
        if source == "ByteDance/Hyper-SD":
            source = str(tmp_path / kwargs.pop("weight_name"))
        return real(self, source, **kwargs)

    monkeypatch.setattr(StableDiffusionPipeline, "load_lora_weights", recorded)
    lora = LoraConfig(name="hyper", source="ByteDance/Hyper-SD", weight=1.0, fuse=True,
                      weight_name="Hyper-SDXL-8steps-CFG-lora.safetensors")
    (tmp_path / lora.weight_name).symlink_to(lora_folder / "speed-a.safetensors")
    model = load_model(ModelConfig(source=str(tiny_model_dir), loras=(lora,)), CPU)
    assert calls == [(("ByteDance/Hyper-SD",), {"adapter_name": "fused0",
                                                "weight_name": "Hyper-SDXL-8steps-CFG-lora.safetensors"})]
    assert model.loras == {}


# --------------------------------------------------------------------------- fuse


def test_a_fused_lora_with_its_recipe_draws_what_diffusers_draws(fused_config: Config, fused_model: LoadedModel,
                                                                 tiny_model_dir: Path, lora_folder: Path) -> None:
    info = describe_model(fused_config.model, fused_model.preset, fused_model.tokenizer)
    job = build_imagine("j", 1, info, prompt=PROMPT, seed=5).job
    assert (job.steps, job.guidance, job.scheduler, job.loras) == (3, 1.5, "ddim", ())
    ours = _run(fused_model, job)

    pipe = StableDiffusionPipeline.from_pretrained(str(tiny_model_dir), safety_checker=None,
                                                   requires_safety_checker=False)
    pipe.load_lora_weights(str(lora_folder / "speed-a.safetensors"))
    pipe.fuse_lora(lora_scale=0.8)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe(PROMPT, num_inference_steps=3, guidance_scale=1.5, width=64, height=64,
                  generator=torch.Generator().manual_seed(5)).images[0]
    assert max_diff(ours, np.asarray(theirs, dtype=np.int16)) <= 1


def test_a_fused_lora_is_not_offered_and_its_recipe_is_the_models_default(fused_config: Config,
                                                                          fused_model: LoadedModel) -> None:
    assert fused_model.loras == {"style": "lora1"}
    assert fused_model.pipes[JobKind.IMAGINE].get_list_adapters() == {
        "unet": ["lora1"], "text_encoder": ["lora1"]}
    assert (fused_model.preset.steps, fused_model.preset.guidance) == (3, 1.5)
    info = describe_model(fused_config.model, fused_model.preset)
    assert info.loras == ("style",) and info.fused == ("speed",)
    with pytest.raises(JobError, match="'speed' is always on"):
        build_imagine("j", 1, info, prompt="x", loras=[("speed", 1.0)])


def test_per_request_loras_switch_cleanly_next_to_a_fused_one(fused_model: LoadedModel, tiny_model_dir: Path,
                                                              lora_folder: Path) -> None:
    fused_only = load_model(ModelConfig(source=str(tiny_model_dir), loras=(
        LoraConfig("speed", str(lora_folder / "speed-a.safetensors"), weight=0.8, fuse=True),)), CPU)
    plain = load_model(ModelConfig(source=str(tiny_model_dir)), CPU)
    off = draw(fused_model)
    assert max_diff(off, draw(fused_only)) <= 1  # the switchable LoRA is off: only the fused one draws
    assert np.abs(off - draw(plain)).mean() > 2.0  # and the fused one really is on
    on = draw(fused_model, (("style", 1.0),))
    assert np.abs(on - off).mean() > 2.0
    for loras, expected in [((), off), ((("style", 1.0),), on), ((), off), ((("style", 1.0),), on)]:
        assert max_diff(draw(fused_model, loras), expected) <= 1


# --------------------------------------------------------------------------- one clear line when it fails


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("weight_name not in folder", r"weight_name 'nope.safetensors' is not in .* \(it holds: speed-a.safetensors, "
                                      r"speed-b.safetensors\)"),
        ("folder of several", r"holds several LoRA files \(speed-a.safetensors, speed-b.safetensors\); set weight_name"),
        ("hub offline", r"ByteDance/Hyper-SD \(Hyper-SDXL-8steps-CFG-lora.safetensors\) is not in the Hugging Face "
                        r"cache and HF_HUB_OFFLINE is set, so it cannot be downloaded"),
        ("fuse that does not fit", "LoRA 'speed' could not be loaded from .*: it does not fit this model"),
    ],
)
def test_a_lora_that_cannot_be_had_is_one_clear_line(tiny_model_dir: Path, lora_folder: Path, tmp_path: Path,
                                                     case: str, expected: str) -> None:
    lora = {
        "weight_name not in folder": LoraConfig("speed", str(lora_folder), weight_name="nope.safetensors"),
        "folder of several": LoraConfig("speed", str(lora_folder)),
        "hub offline": LoraConfig("speed", "ByteDance/Hyper-SD", fuse=True,
                                  weight_name="Hyper-SDXL-8steps-CFG-lora.safetensors"),
        "fuse that does not fit": LoraConfig("speed", str(_wrong_shapes(tmp_path / "x.safetensors")), fuse=True),
    }[case]
    with pytest.raises(ModelLoadError, match=expected) as info:
        load_model(ModelConfig(source=str(tiny_model_dir), loras=(lora,)), CPU)
    assert "\n" not in str(info.value)


def test_a_dedicated_inpainting_model_can_paint_with_a_members_lora(tiny_model_dir: Path, tiny_lora: Path,
                                                                   tmp_path: Path) -> None:
    """/paint offers ``lora:``; with ``inpaint_source`` the painting pipeline is a model of its own and
    needs the adapters too (it failed with an internal error after queueing)."""
    from PIL import Image

    from inference.jobs import InpaintJob
    from inference.prepare import prepare

    cfg = ModelConfig(source=str(tiny_model_dir), name="tiny", inpaint_source=str(tiny_model_dir),
                      loras=(LoraConfig("style", str(tiny_lora), weight=1.0),))
    model = load_model(cfg, DeviceConfig(device="cpu"))
    Image.new("RGB", (64, 64), (200, 40, 40)).save(tmp_path / "in.png")
    Image.new("L", (64, 64), 255).save(tmp_path / "mask.png")

    def paint(loras: tuple[tuple[str, float], ...]) -> np.ndarray:
        job = InpaintJob(job_id="p", owner=1, prompt="a cat", width=64, height=64, steps=2, seed=1, model="tiny",
                         init_image=str(tmp_path / "in.png"), mask_image=str(tmp_path / "mask.png"), loras=loras)
        results = run_diffusion_batch(model, [prepare(job)], lambda *_: True)
        assert results is not None
        return np.asarray(results[0].images[0], dtype=np.int16)

    with_lora, without = paint((("style", 1.0),)), paint(())
    assert np.abs(with_lora - without).max() > 0
