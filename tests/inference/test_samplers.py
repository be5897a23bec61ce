"""Samplers, timestep spacing and eta on the tiny model, through the production loader and the
GPU thread's pipeline call (inference/generate.py)."""

from __future__ import annotations

import asyncio
import functools
from pathlib import Path
from typing import Any

import diffusers
import numpy as np
import pytest
from PIL import Image

from config import DeviceConfig, ModelConfig
from inference.generate import run_diffusion_batch
from inference.jobs import ImageToImageJob, InpaintJob, JobError, TextToImageJob
from inference.loader import LoadedModel, ModelLoadError, load_model
from inference.prepare import PreparedJob
from inference.presets import PRESETS
from inference.samplers import SAMPLERS, call_eta, label_for
from inference.validation import ModelInfo, build_imagine

NEW = ("tcd", "lcm", "ddpm", "kdpm2", "kdpm2_a", "deis")


@pytest.fixture(scope="module")
def tiny(tiny_model_dir: Path) -> LoadedModel:
    return load_model(ModelConfig(source=str(tiny_model_dir), name="tiny", size=64, min_size=64),
                      DeviceConfig(device="cpu"))


def run(model: LoadedModel, job: Any, init: Image.Image | None = None, mask: Image.Image | None = None) -> Image.Image:
    results = run_diffusion_batch(model, [PreparedJob(job, init, mask)], lambda *_: True)
    assert results is not None
    return results[0].images[0]


def t2i(**kw: Any) -> TextToImageJob:
    kw = {"job_id": "j", "owner": 1, "prompt": "a red fox", "width": 64, "height": 64, "steps": 3, "seed": 3,
          "model": "tiny", **kw}
    return TextToImageJob(**kw)


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


@pytest.mark.parametrize("name", NEW)
def test_each_new_sampler_makes_images_for_every_kind_of_job(tiny: LoadedModel, name: str) -> None:
    source = Image.new("RGB", (64, 64), (200, 40, 40))
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (0, 0, 32, 64))
    made = run(tiny, t2i(scheduler=name))
    varied = run(tiny, ImageToImageJob(job_id="v", owner=1, prompt="a fox", width=64, height=64, steps=4,
                                       strength=0.6, seed=1, model="tiny", scheduler=name), source)
    painted = run(tiny, InpaintJob(job_id="p", owner=1, prompt="a fox", width=64, height=64, steps=3, seed=1,
                                   model="tiny", scheduler=name), source, mask)
    assert made.size == varied.size == painted.size == (64, 64)
    assert type(tiny.scheduler(name)).__name__ == SAMPLERS[name].class_name
    # A different sampler is a different image from the same seed (it really was swapped in).
    assert np.abs(pixels(made) - pixels(run(tiny, t2i()))).max() > 0


def test_trailing_spacing_gives_the_timesteps_diffusers_gives(tiny: LoadedModel) -> None:
    config = tiny.default_scheduler.config
    ours = tiny.scheduler("ddim", "trailing")
    theirs = diffusers.DDIMScheduler.from_config(config, timestep_spacing="trailing")
    leading = diffusers.DDIMScheduler.from_config(config, timestep_spacing="leading")
    for scheduler in (ours, theirs, leading):
        scheduler.set_timesteps(4)
    assert ours.timesteps.tolist() == theirs.timesteps.tolist() == [999, 749, 499, 249]
    assert ours.timesteps.tolist() != leading.timesteps.tolist()
    assert tiny.scheduler("ddim", "trailing") is ours  # built once per (name, spacing)
    assert tiny.scheduler("ddim") is not ours and tiny.scheduler("", "") is tiny.default_scheduler
    # The model's own scheduler with another spacing keeps its class.
    assert type(tiny.scheduler("", "trailing")) is type(tiny.default_scheduler)
    assert tiny.scheduler("", "trailing").config.timestep_spacing == "trailing"


def test_spacing_changes_the_image(tiny: LoadedModel) -> None:
    leading = run(tiny, t2i(scheduler="ddim", spacing="leading"))
    trailing = run(tiny, t2i(scheduler="ddim", spacing="trailing"))
    assert np.abs(pixels(leading) - pixels(trailing)).max() > 0


@pytest.mark.parametrize(("eta", "expected"), [(-1.0, 0.3), (0.7, 0.7)])
def test_tcd_eta_reaches_the_scheduler_step(tiny: LoadedModel, monkeypatch: pytest.MonkeyPatch, eta: float,
                                            expected: float) -> None:
    seen: list[float] = []
    step = diffusers.TCDScheduler.step

    @functools.wraps(step)  # the same signature: pipelines pass eta only to a step that names it
    def recording(self: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs["eta"])
        return step(self, *args, **kwargs)

    monkeypatch.setattr(diffusers.TCDScheduler, "step", recording)
    run(tiny, t2i(scheduler="tcd", eta=eta))
    assert seen and all(value == expected for value in seen)


def test_ddim_eta_is_passed_only_when_set(tiny: LoadedModel, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[float] = []
    step = diffusers.DDIMScheduler.step

    @functools.wraps(step)
    def recording(self: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs["eta"])
        return step(self, *args, **kwargs)

    monkeypatch.setattr(diffusers.DDIMScheduler, "step", recording)
    run(tiny, t2i(scheduler="ddim"))
    assert set(seen) == {0.0}  # the pipeline's own default
    seen.clear()
    run(tiny, t2i(scheduler="ddim", eta=0.5))
    assert set(seen) == {0.5}
    assert call_eta("euler", 0.5, "EulerDiscreteScheduler") is None  # a step without eta never gets one


def test_labels_name_the_sampler_and_the_spacing_it_uses() -> None:
    assert label_for("ddim", "EulerDiscreteScheduler", "trailing") == "DDIM trailing"
    assert label_for("", "EulerDiscreteScheduler", "trailing") == "Euler trailing"
    assert label_for("tcd", "EulerDiscreteScheduler", "trailing") == "TCD"  # TCD picks its own timesteps
    assert label_for("kdpm2_a", "EulerDiscreteScheduler") == "DPM2 a"
    assert label_for("", "SomethingScheduler") == "Something"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"spacing": "sideways"}, "Unknown spacing 'sideways'. Choose one of: trailing, leading, linspace."),
        ({"scheduler": "tcd", "spacing": "trailing"}, "The tcd sampler picks its own timesteps"),
        ({"scheduler": "euler", "eta": 0.3}, "`eta` does nothing with the euler sampler; it is used by the ddim, tcd"),
        ({"eta": 0.3}, "`eta` does nothing with this model's own sampler"),
        ({"scheduler": "ddim", "eta": 1.5}, "Eta must be between 0 and 1."),
    ],
)
def test_bad_spacing_and_eta_get_a_clear_message(options: dict[str, Any], message: str) -> None:
    info = ModelInfo("sd15", PRESETS["sd15"], scheduler_class="EulerDiscreteScheduler")
    with pytest.raises(JobError) as caught:
        build_imagine("j", 1, info, prompt="a fox", **options)
    assert message in str(caught.value)


def test_spacing_and_eta_are_kept_on_the_job() -> None:
    info = ModelInfo("sd15", PRESETS["sd15"], scheduler_class="PNDMScheduler")
    job = build_imagine("j", 1, info, prompt="a fox", scheduler="tcd", eta=0.5).job
    assert (job.scheduler, job.spacing, job.eta) == ("tcd", "", 0.5)
    job = build_imagine("j", 1, info, prompt="a fox", scheduler="ddim", spacing="Trailing").job
    assert (job.spacing, job.eta) == ("trailing", -1.0)


def test_a_configured_default_sampler_is_the_models_own(tiny_model_dir: Path) -> None:
    model = load_model(ModelConfig(source=str(tiny_model_dir), name="tiny", scheduler="deis"), DeviceConfig(device="cpu"))
    assert type(model.default_scheduler).__name__ == "DEISMultistepScheduler"
    with pytest.raises(ModelLoadError, match="scheduler 'magic' is not one of"):
        load_model(ModelConfig(source=str(tiny_model_dir), name="tiny", scheduler="magic"), DeviceConfig(device="cpu"))


def test_jobs_batch_only_with_the_same_spacing_and_eta() -> None:
    base = t2i(scheduler="ddim")
    assert base.batch_key() == t2i(scheduler="ddim", job_id="k", seed=9).batch_key()
    assert base.batch_key() != t2i(scheduler="ddim", spacing="trailing").batch_key()
    assert base.batch_key() != t2i(scheduler="ddim", eta=0.2).batch_key()


def test_a_job_stored_before_spacing_eta_and_styles_loads_without_them() -> None:
    from inference.jobs import job_from_params

    old = {"kind": "imagine", "prompt": "a fox", "negative_prompt": "", "width": 64, "height": 64, "steps": 3,
           "guidance": 0.0, "seed": 1, "count": 1, "model": "tiny", "scheduler": "ddim", "loras": []}
    job = job_from_params("j", 1, old)
    assert (job.spacing, job.eta, job.style) == ("", -1.0, "")
    again = job_from_params("j", 1, t2i(spacing="trailing", eta=0.4, style="ink").to_params())
    assert (again.spacing, again.eta, again.style) == ("trailing", 0.4, "ink")


def test_the_members_spacing_and_eta_win_over_a_loras_recipe() -> None:
    from config import LoraRecipe

    info = ModelInfo("sd15", PRESETS["sd15"], loras=("hyper",), scheduler_class="PNDMScheduler",
                     recipes={"hyper": LoraRecipe(steps=8, scheduler="ddim", spacing="leading", eta=0.2)})
    job = build_imagine("j", 1, info, prompt="a fox", loras=[("hyper", 1.0)]).job
    assert (job.scheduler, job.spacing, job.eta, job.steps) == ("ddim", "leading", 0.2, 8)
    job = build_imagine("j", 1, info, prompt="a fox", loras=[("hyper", 1.0)], spacing="trailing", eta=0.9).job
    assert (job.scheduler, job.spacing, job.eta) == ("ddim", "trailing", 0.9)
    with pytest.raises(JobError, match="`eta` does nothing with the euler sampler"):
        build_imagine("j", 1, info, prompt="a fox", loras=[("hyper", 1.0)], scheduler="euler", eta=0.5)


def test_an_eta_the_models_own_sampler_cannot_take_fails_the_job_instead_of_vanishing(tiny_model_dir: Path) -> None:
    """Validation checks eta against the model's sampler once it has seen the model loaded; a job
    validated before that (or restored) must not silently lose it at run time."""
    from inference.prepare import prepare

    model = load_model(ModelConfig(source=str(tiny_model_dir), name="tiny"), DeviceConfig(device="cpu"))
    job = t2i(eta=0.5, width=64, height=64, steps=2, model="tiny")
    with pytest.raises(JobError, match="takes no eta"):
        run_diffusion_batch(model, [prepare(job)], lambda *_: True)


async def test_validation_knows_a_models_sampler_after_it_was_unloaded(tiny_config) -> None:  # type: ignore[no-untyped-def]
    """Only one model stays resident on a GPU: a model loaded once and unloaded since is still
    validated with what its own configs said (family, sampler), not guessed from its name."""
    from inference.engine import Engine
    from inference.executor import GpuExecutor

    executor = GpuExecutor(tiny_config)
    engine = Engine(tiny_config, executor)
    try:
        await asyncio.wrap_future(executor.submit(executor.model, ""))
        executor._models.drop_all()  # as when another model took the GPU
        info = engine.model_info("")
        assert info.scheduler_class and info.preset.family == "sd15"
        with pytest.raises(JobError, match="eta"):
            build_imagine("j", 1, info, prompt="a cat", eta=0.5)
    finally:
        executor.shutdown()
