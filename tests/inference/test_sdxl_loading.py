"""The tiny SDXL through the production loader: pipelines, a single-file SDXL, the safety checker
choice SDXL cannot honour, and SDXL's own latent previews."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from config import DeviceConfig, ModelConfig
from inference.generate import latent_preview, run_diffusion_batch
from inference.jobs import JobKind, TextToImageJob
from inference.loader import LoadedModel, ModelLoadError, load_model
from inference.prepare import PreparedJob

CPU = DeviceConfig(device="cpu")


def draw(model: LoadedModel) -> np.ndarray:
    job = TextToImageJob(job_id="x", owner=1, prompt="a photo of a red fox", width=64, height=64, steps=3,
                         guidance=5.0, seed=2, count=2)
    results = run_diffusion_batch(model, [PreparedJob(job)], lambda *_: True)
    assert results is not None
    return np.stack([np.asarray(image, dtype=np.int16) for image in results[0].images])


@pytest.fixture(scope="module")
def sdxl(tiny_sdxl_dir: Path) -> LoadedModel:
    return load_model(ModelConfig(source=str(tiny_sdxl_dir), name="xl"), CPU)


def test_an_sdxl_folder_loads_as_sdxl_with_shared_pipelines(sdxl: LoadedModel) -> None:
    assert sdxl.family == "sdxl" and sdxl.preset.size == 1024
    names = {kind: type(pipe).__name__ for kind, pipe in sdxl.pipes.items()}
    assert names == {JobKind.IMAGINE: "StableDiffusionXLPipeline", JobKind.VARY: "StableDiffusionXLImg2ImgPipeline",
                     JobKind.PAINT: "StableDiffusionXLInpaintPipeline"}
    base = sdxl.pipes[JobKind.IMAGINE]
    assert all(p.text_encoder_2 is base.text_encoder_2 and p.unet is base.unet for p in sdxl.pipes.values())


def test_an_sdxl_single_file_draws_the_folder_models_pictures(sdxl: LoadedModel, tiny_sdxl_single_file: Path,
                                                              tiny_sdxl_dir: Path) -> None:
    single = load_model(ModelConfig(source=str(tiny_sdxl_single_file), single_file_config=str(tiny_sdxl_dir)), CPU)
    for component in ("unet", "vae", "text_encoder", "text_encoder_2"):
        ours = getattr(single.pipes[JobKind.IMAGINE], component).state_dict()
        theirs = getattr(sdxl.pipes[JobKind.IMAGINE], component).state_dict()
        assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in theirs), component
    assert np.abs(draw(single) - draw(sdxl)).max() <= 1


def test_a_safety_checker_on_sdxl_is_refused_rather_than_silently_missing(tiny_sdxl_dir: Path) -> None:
    with pytest.raises(ModelLoadError, match="safety_checker = true, but StableDiffusionXLPipeline has no safety "
                                             "checker; set it to false") as info:
        load_model(ModelConfig(source=str(tiny_sdxl_dir), name="xl", safety_checker=True), CPU)
    assert "\n" not in str(info.value)


def test_sdxl_previews_use_sdxls_own_latent_colours() -> None:
    latents = torch.randn(2, 4, 8, 6, generator=torch.Generator().manual_seed(0))
    xl, sd = latent_preview(latents, 1, "sdxl-turbo"), latent_preview(latents, 1, "sd15")
    assert xl.size == sd.size == (6, 8)
    assert np.abs(np.asarray(xl, dtype=int) - np.asarray(sd, dtype=int)).max() > 10
    assert latent_preview(latents, 1).tobytes() == sd.tobytes()  # SD's factors stay the default
