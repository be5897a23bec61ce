"""ControlNet jobs on the tiny models: pipelines sharing the base weights, pictures equal to raw
diffusers', batches equal to each job alone, the control map carried with the result."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from config import ControlNetConfig, DeviceConfig, ModelConfig
from inference.control.preprocess import canny
from inference.generate import run_diffusion_batch
from inference.jobs import JobKind, TextToImageJob
from inference.loader import ModelLoadError, load_model
from inference.prepare import PreparedJob

CPU = DeviceConfig(device="cpu")


def square(offset: int = 16) -> Image.Image:
    image = Image.new("RGB", (64, 64), "black")
    ImageDraw.Draw(image).rectangle((offset, offset, offset + 28, offset + 28), fill="white")
    return image


def control_job(job_id: str, *, seed: int = 3, count: int = 1, strength: float = 1.0, model: str = "tiny",
                guidance: float = 5.0) -> TextToImageJob:
    return TextToImageJob(job_id=job_id, owner=1, prompt="a red house", width=64, height=64, steps=3,
                          guidance=guidance, seed=seed, count=count, model=model, control_image="in.png",
                          control_mode="canny", control_strength=strength)


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


@pytest.fixture(scope="module")
def sd_model(tiny_model_dir: Path, tiny_controlnet_dir: Path):
    cfg = ModelConfig(source=str(tiny_model_dir), name="tiny", family="sd15",
                      controlnets=(ControlNetConfig(source=str(tiny_controlnet_dir), mode="canny", strength=0.8),))
    return load_model(cfg, CPU)


def test_the_controlnet_pipeline_shares_the_base_weights(sd_model) -> None:
    control = sd_model.controls["canny"]
    base = sd_model.pipes[JobKind.IMAGINE]
    assert type(control.pipe).__name__ == "StableDiffusionControlNetPipeline"
    assert control.pipe.unet is base.unet
    assert control.pipe.vae is base.vae
    assert control.pipe.text_encoder is base.text_encoder
    assert control.strength == 0.8 and control.estimator is None



def test_the_controlnet_moves_with_the_model_when_it_is_parked(sd_model) -> None:
    """Residency (inference/residency.py) moves every module of ``all_pipes``: the ControlNet is one."""
    from inference.residency import modules_of

    control = sd_model.controls["canny"]
    assert control.pipe in sd_model.all_pipes()
    assert any(module is control.pipe.controlnet for module in modules_of(sd_model))


def test_a_control_job_is_the_picture_raw_diffusers_makes(sd_model, tiny_model_dir: Path,
                                                         tiny_controlnet_dir: Path) -> None:
    import torch
    from diffusers import ControlNetModel, StableDiffusionControlNetPipeline

    job = control_job("a", strength=0.7)
    results = run_diffusion_batch(sd_model, [PreparedJob(job, control_image=square())], lambda *_: True)
    assert results is not None
    raw = StableDiffusionControlNetPipeline.from_pretrained(
        tiny_model_dir, controlnet=ControlNetModel.from_pretrained(tiny_controlnet_dir), safety_checker=None,
        requires_safety_checker=False, local_files_only=True)
    raw.set_progress_bar_config(disable=True)
    expected = raw(prompt="a red house", image=canny(square(), (64, 64)), width=64, height=64, num_inference_steps=3,
                   guidance_scale=5.0, controlnet_conditioning_scale=0.7,
                   generator=torch.Generator().manual_seed(3)).images[0]
    assert np.abs(pixels(results[0].images[0]) - pixels(expected)).max() <= 1


def test_the_result_carries_the_preprocessed_control_map(sd_model) -> None:
    results = run_diffusion_batch(sd_model, [PreparedJob(control_job("a"), control_image=square())], lambda *_: True)
    assert results is not None
    [(label, picture)] = results[0].extras
    assert label == "control"
    assert np.array_equal(np.asarray(picture), np.asarray(canny(square(), (64, 64))))


def test_a_flagged_map_makes_the_whole_result_nsfw(sd_model, monkeypatch: pytest.MonkeyPatch) -> None:
    """The map is posted with the result (cogs/utils/extras.py), so the result's gate must cover it."""
    from inference.control import run

    monkeypatch.setattr(run, "map_flags", lambda pipe, maps: [True] * len(maps))
    results = run_diffusion_batch(sd_model, [PreparedJob(control_job("a", count=2), control_image=square())],
                                  lambda *_: True)
    assert results is not None and results[0].nsfw == (True, True)


def test_the_map_steers_the_picture(sd_model) -> None:
    """Without this the batching test below could pass with a ControlNet that does nothing."""
    a = run_diffusion_batch(sd_model, [PreparedJob(control_job("a"), control_image=square(8))], lambda *_: True)
    b = run_diffusion_batch(sd_model, [PreparedJob(control_job("b"), control_image=square(30))], lambda *_: True)
    assert a is not None and b is not None
    assert np.abs(pixels(a[0].images[0]) - pixels(b[0].images[0])).max() > 8


def test_a_batch_with_different_maps_equals_each_job_alone(sd_model) -> None:
    jobs = [PreparedJob(control_job("a", seed=1, count=2), control_image=square(8)),
            PreparedJob(control_job("b", seed=5), control_image=square(30))]
    batched = run_diffusion_batch(sd_model, jobs, lambda *_: True)
    assert batched is not None
    for prepared, result in zip(jobs, batched, strict=True):
        alone = run_diffusion_batch(sd_model, [prepared], lambda *_: True)
        assert alone is not None and len(result.images) == prepared.job.count
        for got, want in zip(result.images, alone[0].images, strict=True):
            assert np.abs(pixels(got) - pixels(want)).max() <= 1
        assert np.array_equal(np.asarray(result.extras[0][1]), np.asarray(alone[0].extras[0][1]))


def test_a_plain_job_after_a_control_job_is_unchanged(sd_model) -> None:
    plain = TextToImageJob(job_id="p", owner=1, prompt="a red house", width=64, height=64, steps=3, guidance=5.0,
                           seed=3, model="tiny")
    before = run_diffusion_batch(sd_model, [PreparedJob(plain)], lambda *_: True)
    run_diffusion_batch(sd_model, [PreparedJob(control_job("a"), control_image=square())], lambda *_: True)
    after = run_diffusion_batch(sd_model, [PreparedJob(plain)], lambda *_: True)
    assert before is not None and after is not None and before[0].extras == ()
    assert np.array_equal(pixels(before[0].images[0]), pixels(after[0].images[0]))


def test_a_control_job_reports_steps_and_can_be_cancelled(sd_model) -> None:
    steps: list[tuple[int, int]] = []

    def on_step(step: int, total: int, latents) -> bool:
        steps.append((step, total))
        return step < 2

    result = run_diffusion_batch(sd_model, [PreparedJob(control_job("a"), control_image=square())], on_step)
    assert result is None
    assert steps == [(1, 3), (2, 3)]


def test_sdxl_control_job_is_the_picture_raw_diffusers_makes(tiny_sdxl_dir: Path,
                                                            tiny_sdxl_controlnet_dir: Path) -> None:
    import torch
    from diffusers import ControlNetModel, StableDiffusionXLControlNetPipeline

    cfg = ModelConfig(source=str(tiny_sdxl_dir), name="xl",
                      controlnets=(ControlNetConfig(source=str(tiny_sdxl_controlnet_dir), mode="canny"),))
    model = load_model(cfg, CPU)
    control = model.controls["canny"]
    assert type(control.pipe).__name__ == "StableDiffusionXLControlNetPipeline"
    assert control.pipe.unet is model.pipes[JobKind.IMAGINE].unet
    job = control_job("x", model="xl", strength=0.9)
    results = run_diffusion_batch(model, [PreparedJob(job, control_image=square())], lambda *_: True)
    assert results is not None
    raw = StableDiffusionXLControlNetPipeline.from_pretrained(
        tiny_sdxl_dir, controlnet=ControlNetModel.from_pretrained(tiny_sdxl_controlnet_dir), local_files_only=True)
    raw.set_progress_bar_config(disable=True)
    expected = raw(prompt="a red house", image=canny(square(), (64, 64)), width=64, height=64, num_inference_steps=3,
                   guidance_scale=5.0, controlnet_conditioning_scale=0.9,
                   generator=torch.Generator().manual_seed(3)).images[0]
    assert np.abs(pixels(results[0].images[0]) - pixels(expected)).max() <= 1


def test_a_controlnet_of_another_family_is_one_clear_line(tiny_model_dir: Path,
                                                          tiny_sdxl_controlnet_dir: Path) -> None:
    cfg = ModelConfig(source=str(tiny_model_dir), name="tiny", family="sd15",
                      controlnets=(ControlNetConfig(source=str(tiny_sdxl_controlnet_dir), mode="canny"),))
    with pytest.raises(ModelLoadError) as err:
        load_model(cfg, CPU)
    assert "ControlNet 'canny'" in str(err.value) and "\n" not in str(err.value)


def test_a_missing_controlnet_folder_is_one_clear_line(tiny_model_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    cfg = ModelConfig(source=str(tiny_model_dir), name="tiny", family="sd15",
                      controlnets=(ControlNetConfig(source=str(tmp_path / "empty"), mode="canny"),))
    with pytest.raises(ModelLoadError, match="not a ControlNet folder"):
        load_model(cfg, CPU)


def test_a_depth_controlnet_makes_its_map_with_the_configured_estimator(tiny_model_dir: Path,
                                                                         tiny_controlnet_dir: Path,
                                                                         tiny_depth_dir: Path) -> None:
    from inference.control.preprocess import depth

    cfg = ModelConfig(source=str(tiny_model_dir), name="tiny", family="sd15", controlnets=(
        ControlNetConfig(source=str(tiny_controlnet_dir), mode="depth", preprocessor=str(tiny_depth_dir)),))
    model = load_model(cfg, CPU)
    estimator = model.controls["depth"].estimator
    assert estimator is not None
    job = TextToImageJob(job_id="d", owner=1, prompt="a red house", width=64, height=48, steps=2, seed=1,
                         model="tiny", control_image="in.png", control_mode="depth")
    results = run_diffusion_batch(model, [PreparedJob(job, control_image=square())], lambda *_: True)
    assert results is not None and results[0].images[0].size == (64, 48)
    [(label, picture)] = results[0].extras
    assert label == "control"
    assert np.array_equal(np.asarray(picture), np.asarray(depth(estimator, square(), (64, 48))))


def test_a_missing_depth_preprocessor_is_one_clear_line(tiny_model_dir: Path, tiny_controlnet_dir: Path,
                                                        tmp_path: Path) -> None:
    (tmp_path / "not-a-model").mkdir()
    cfg = ModelConfig(source=str(tiny_model_dir), name="tiny", family="sd15", controlnets=(
        ControlNetConfig(source=str(tiny_controlnet_dir), mode="depth", preprocessor=str(tmp_path / "not-a-model")),))
    with pytest.raises(ModelLoadError, match="depth preprocessor .* could not be loaded") as err:
        load_model(cfg, CPU)
    assert "\n" not in str(err.value)


def test_controlnets_on_a_kandinsky_folder_are_refused_in_one_line(tiny_kandinsky_dir: Path,
                                                                   tiny_controlnet_dir: Path) -> None:
    """Config checks catch family = "kandinsky22"; a folder detected as Kandinsky at load time is caught here."""
    cfg = ModelConfig(source=str(tiny_kandinsky_dir / "decoder"), prior_source=str(tiny_kandinsky_dir / "prior"),
                      name="kandy", controlnets=(ControlNetConfig(source=str(tiny_controlnet_dir), mode="canny"),))
    with pytest.raises(ModelLoadError, match="Kandinsky 2.2 models take no ControlNet"):
        load_model(cfg, CPU)


def test_a_single_file_controlnet_offline_says_to_use_its_folder(tiny_model_dir: Path, tiny_controlnet_dir: Path,
                                                                 tmp_path: Path) -> None:
    from diffusers import ControlNetModel
    from safetensors.torch import save_file

    net = ControlNetModel.from_pretrained(tiny_controlnet_dir)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, tmp_path / "canny.safetensors")
    cfg = ModelConfig(source=str(tiny_model_dir), name="tiny", family="sd15",
                      controlnets=(ControlNetConfig(source=str(tmp_path / "canny.safetensors"), mode="canny"),))
    with pytest.raises(ModelLoadError, match="offline, use its diffusers folder") as err:
        load_model(cfg, CPU)
    assert "\n" not in str(err.value)
