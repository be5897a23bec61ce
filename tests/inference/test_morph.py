"""Morph frames on the tiny model: each frame is the plain diffusers call it stands for."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from config import Config
from inference.engine import Engine
from inference.executor import GpuExecutor
from inference.jobs import Cancelled, Finished, JobError, JobKind, MorphJob, Progress, job_from_params
from inference.loader import LoadedModel, load_model
from inference.morph import NO_PROMPT_MORPH, encode, run_morph, sweep_batches
from inference.morph_plan import distinct_starts, mix_weights, steps_run, strengths
from inference.prepare import prepare
from tests.fixtures.recorder import Recorder

MAX_DIFF = 1  # of 255


@pytest.fixture(scope="module")
def model(tiny_config: Config) -> LoadedModel:
    return load_model(tiny_config.model, tiny_config.device, tiny_config.base_dir)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    rng = np.random.default_rng(5)
    path = tmp_path / "source.png"
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path)
    return path


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def sweep(source: Path, job_id: str = "m1", **kw: object) -> MorphJob:
    params = {"prompt": "a red fox", "width": 64, "height": 64, "steps": 10, "guidance": 0.0, "seed": 11,
              "model": "tiny", "init_image": str(source), "strength_from": 0.1, "strength_to": 0.9, "frames": 4}
    params.update(kw)
    return MorphJob(job_id=job_id, owner=1, **params)  # type: ignore[arg-type]


def prompt_morph(job_id: str = "p1", **kw: object) -> MorphJob:
    params = {"prompt": "a red fox", "to_prompt": "a blue owl at night", "width": 64, "height": 64, "steps": 3,
              "guidance": 0.0, "seed": 23, "model": "tiny", "frames": 5}
    params.update(kw)
    return MorphJob(job_id=job_id, owner=1, **params)  # type: ignore[arg-type]


def never_cancelled() -> bool:
    return True


def test_strengths_rise_evenly_from_the_first_to_the_last() -> None:
    plan = strengths(0.1, 0.9, 8)
    assert len(plan) == 8 and plan[0] == pytest.approx(0.1) and plan[-1] == pytest.approx(0.9)
    assert np.allclose(np.diff(plan), 0.8 / 7)
    assert mix_weights(5) == [0.0, 0.25, 0.5, 0.75, 1.0]


def test_steps_are_raised_until_every_frame_starts_at_its_own_timestep() -> None:
    steps = distinct_starts(4, 0.1, 0.9, 8, 20)
    runs = [steps_run(steps, s) for s in strengths(0.1, 0.9, 8)]
    assert steps == 10 and runs[0] >= 1 and len(set(runs)) == 8
    assert distinct_starts(4, 0.1, 0.9, 16, 12) == 12  # capped at the model's limit
    with pytest.raises(JobError, match="too low"):
        distinct_starts(1, 0.05, 0.5, 4, 8)


def test_a_morph_job_survives_the_job_log_round_trip(source: Path) -> None:
    for job in (sweep(source), prompt_morph()):
        again = job_from_params(job.job_id, job.owner, job.to_params())
        assert again == job and again.kind is JobKind.MORPH and again.batch_key() is None


@pytest.mark.parametrize(("scheduler", "guidance", "batch", "calls"), [
    ("", 0.0, 1, 4),  # one call per frame
    ("", 0.0, 4, 1),  # the tiny model's Euler: all four frames in one call, three of them joining it
    ("ddim", 3.0, 3, 2),  # DDIM, with classifier-free guidance: frames 1-3 together, then frame 4
    ("dpmpp_2m", 0.0, 4, 4),  # a multistep scheduler: frames cannot join a running call
])
def test_each_sweep_frame_equals_the_image_to_image_call_at_its_strength(
        model: LoadedModel, source: Path, scheduler: str, guidance: float, batch: int, calls: int) -> None:
    job = sweep(source, scheduler=scheduler, guidance=guidance)
    done: list[tuple[int, int]] = []
    result = run_morph(model, prepare(job), never_cancelled, lambda d, t, _im: done.append((d, t)), batch=batch)
    assert result is not None and len(result.images) == 4 and result.seeds == (11,) * 4
    assert done[-1] == (4, 4) and [d for d, _ in done] == sorted({d for d, _ in done})  # frames, rising
    pipe = model.pipes[JobKind.VARY]
    assert len(sweep_batches(pipe, 4, batch)) == calls  # with the scheduler the morph used
    pipe.scheduler = model.scheduler(scheduler)
    init = Image.open(source).convert("RGB")
    for image, strength in zip(result.images, strengths(0.1, 0.9, 4), strict=True):
        with torch.inference_mode():
            expected = pipe(prompt="a red fox", image=init, strength=strength, num_inference_steps=10,
                            guidance_scale=guidance, generator=torch.Generator("cpu").manual_seed(11)).images[0]
        assert np.abs(pixels(image) - pixels(expected)).max() <= MAX_DIFF
    assert not np.array_equal(pixels(result.images[0]), pixels(result.images[-1]))


@pytest.mark.parametrize("batch", [1, 4])
def test_a_prompt_morph_starts_and_ends_at_each_prompts_own_image(model: LoadedModel, batch: int) -> None:
    job = prompt_morph()
    result = run_morph(model, prepare(job), never_cancelled, lambda *_: None, batch=batch)
    assert result is not None and len(result.images) == 5
    pipe = model.pipes[JobKind.IMAGINE]
    for image, prompt in ((result.images[0], job.prompt), (result.images[-1], job.to_prompt)):
        with torch.inference_mode():
            expected = pipe(prompt=prompt, width=64, height=64, num_inference_steps=3, guidance_scale=0.0,
                            generator=torch.Generator("cpu").manual_seed(23)).images[0]
        assert np.abs(pixels(image) - pixels(expected)).max() <= MAX_DIFF
    middle = pixels(result.images[2])
    assert not np.array_equal(middle, pixels(result.images[0])) and not np.array_equal(middle, pixels(result.images[-1]))


def test_batched_prompt_morph_frames_match_frames_made_one_by_one(model: LoadedModel) -> None:
    job = prompt_morph(frames=4)
    alone = run_morph(model, prepare(job), never_cancelled, lambda *_: None, batch=1)
    together = run_morph(model, prepare(job), never_cancelled, lambda *_: None, batch=4)
    assert alone is not None and together is not None
    for a, b in zip(alone.images, together.images, strict=True):
        assert np.abs(pixels(a) - pixels(b)).max() <= MAX_DIFF


def test_cancelling_stops_between_frames(model: LoadedModel, source: Path) -> None:
    done: list[int] = []
    result = run_morph(model, prepare(sweep(source)), lambda: len(done) < 2, lambda d, _t, _im: done.append(d))
    assert result is None and done == [1, 2]


def test_a_pipeline_without_encode_prompt_cannot_prompt_morph(model: LoadedModel) -> None:
    class NoEncoder:
        pass

    with pytest.raises(JobError, match="two prompts"):
        encode(NoEncoder(), model, "a", "", 0.0)
    assert "two prompts" in NO_PROMPT_MORPH


async def test_a_morph_is_one_job_with_progress_per_frame_and_can_be_cancelled(tiny_config: Config,
                                                                              source: Path) -> None:
    engine = Engine(tiny_config, GpuExecutor(tiny_config, progress_interval_s=0))
    rec = Recorder()
    engine.add_listener(rec)
    await engine.start(warm_up=False)
    try:
        engine.submit(sweep(source, "m1"))
        finished = await rec.outcome("m1")
        assert isinstance(finished, Finished) and len(finished.result.images) == 4
        steps = [(e.step, e.total_steps) for e in rec.events if isinstance(e, Progress) and e.job_id == "m1"]
        assert steps == [(0, 4), (1, 4), (2, 4), (3, 4), (4, 4)]  # one call of 4 frames (max_batch 4), step by step

        cancelled = asyncio.Event()

        def cancel_after_first_frame(event: object) -> None:
            if isinstance(event, Progress) and event.job_id == "m2" and event.step == 1:
                engine.cancel("m2")
                cancelled.set()

        engine.add_listener(cancel_after_first_frame)
        engine.submit(sweep(source, "m2", frames=8))
        assert isinstance(await rec.outcome("m2"), Cancelled)
        assert cancelled.is_set()
        assert max(e.step for e in rec.events if isinstance(e, Progress) and e.job_id == "m2") < 8
    finally:
        await engine.stop()


def test_a_sweep_whose_source_was_forgotten_never_becomes_a_prompt_morph(source: Path) -> None:
    forgotten = job_from_params("m9", 1, {**sweep(source).to_params(), "init_image": ""})  # what /forget leaves
    assert isinstance(forgotten, MorphJob) and forgotten.init_image == ""
    with pytest.raises(JobError, match="could not be read"):
        prepare(forgotten)


def test_a_sweep_frame_takes_the_jobs_sampler_spacing_and_eta(model: LoadedModel, source: Path) -> None:
    """A 🎞️ morph of a DDIM-trailing result with eta makes each frame as that sampler would; with an
    eta above 0 no frame joins a running call late (DDIM then draws noise at every step)."""
    job = sweep(source, scheduler="ddim", spacing="trailing", eta=0.7, frames=3)
    result = run_morph(model, prepare(job), never_cancelled, lambda *_: None, batch=3)
    assert result is not None
    pipe = model.pipes[JobKind.VARY]
    pipe.scheduler = model.scheduler("ddim", "trailing")
    init = Image.open(source).convert("RGB")

    def alone(strength: float, eta: float) -> Image.Image:
        with torch.inference_mode():
            return pipe(prompt="a red fox", image=init, strength=strength, num_inference_steps=10, eta=eta,
                        guidance_scale=0.0, generator=torch.Generator("cpu").manual_seed(11)).images[0]

    for frame, strength in zip(result.images, (0.1, 0.5, 0.9), strict=True):
        assert np.abs(pixels(frame) - pixels(alone(strength, 0.7))).max() <= MAX_DIFF
    assert np.abs(pixels(alone(0.9, 0.7)) - pixels(alone(0.9, 0.0))).max() > MAX_DIFF  # eta does change pixels
