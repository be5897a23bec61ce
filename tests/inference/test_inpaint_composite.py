"""Inpainting keeps the unmasked area exactly: the original is pasted back after generation."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from config import Config
from inference.engine import Engine
from inference.executor import GpuExecutor
from inference.generate import keep_unmasked, run_diffusion_batch
from inference.imaging import feather, region_mask
from inference.jobs import Failed, Finished, InpaintJob, JobEvent
from inference.loader import LoadedModel, load_model
from inference.prepare import PreparedJob, prepare


@pytest.fixture(scope="module")
def model(tiny_config: Config) -> LoadedModel:
    return load_model(tiny_config.model, tiny_config.device, tiny_config.base_dir)


def noise_image(path: Path, size: tuple[int, int], seed: int = 3) -> Path:
    """A busy picture: any pixel the VAE round trip touched would show."""
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def feathered_left_half(path: Path, size: tuple[int, int]) -> Path:
    """The mask the /paint cog would store for ``region: left``."""
    feather(region_mask("left", size)).save(path)
    return path


def paint_job(tmp_path: Path, *, source_size: tuple[int, int], count: int = 1, job_id: str = "paint") -> InpaintJob:
    init = noise_image(tmp_path / f"{job_id}-init.png", source_size)
    mask = feathered_left_half(tmp_path / f"{job_id}-mask.png", source_size)
    return InpaintJob(job_id=job_id, owner=1, prompt="a red fox", init_image=str(init), mask_image=str(mask),
                      width=64, height=64, steps=4, guidance=0.0, model="tiny", seed=11, count=count)


def split(prepared: PreparedJob, image: Image.Image) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(result, init, mask) as arrays at the job's size."""
    assert prepared.init_image is not None and prepared.mask_image is not None
    return (np.asarray(image.convert("RGB"), dtype=np.int16), np.asarray(prepared.init_image, dtype=np.int16),
            np.asarray(prepared.mask_image))


def test_pixels_outside_the_mask_equal_the_init_image_exactly(model: LoadedModel, tmp_path: Path) -> None:
    prepared = prepare(paint_job(tmp_path, source_size=(64, 64)))
    results = run_diffusion_batch(model, [prepared], lambda *_: True)
    assert results is not None
    out, init, mask = split(prepared, results[0].images[0])
    kept, painted = mask == 0, mask == 255
    assert kept.any() and painted.any()
    assert np.array_equal(out[kept], init[kept])
    changed = np.abs(out[painted] - init[painted]).max(axis=-1) > 0
    assert changed.mean() > 0.9


def test_an_init_image_of_another_size_is_kept_at_the_generated_size(model: LoadedModel, tmp_path: Path) -> None:
    job = paint_job(tmp_path, source_size=(96, 80))
    prepared = prepare(job)
    assert prepared.init_image is not None and prepared.init_image.size == (64, 64)
    results = run_diffusion_batch(model, [prepared], lambda *_: True)
    assert results is not None
    out, init, mask = split(prepared, results[0].images[0])
    assert out.shape[:2] == (64, 64)
    assert np.array_equal(out[mask == 0], init[mask == 0])
    assert (np.abs(out[mask == 255] - init[mask == 255]).max(axis=-1) > 0).mean() > 0.9


def test_every_image_of_a_grid_and_of_a_batch_keeps_its_own_original(model: LoadedModel, tmp_path: Path) -> None:
    grid = prepare(paint_job(tmp_path, source_size=(64, 64), count=2, job_id="grid"))
    other = prepare(paint_job(tmp_path, source_size=(80, 64), job_id="other"))
    results = run_diffusion_batch(model, [grid, other], lambda *_: True)
    assert results is not None and [len(r.images) for r in results] == [2, 1]
    for prepared, result in ((grid, results[0]), (other, results[1])):
        for image in result.images:
            out, init, mask = split(prepared, image)
            assert np.array_equal(out[mask == 0], init[mask == 0])


def test_the_feathered_band_blends_original_and_generated(model: LoadedModel, tmp_path: Path) -> None:
    prepared = prepare(paint_job(tmp_path, source_size=(64, 64)))
    generated = Image.new("RGB", (64, 64), (0, 0, 0))
    (out_image,) = keep_unmasked(prepared, [generated])
    out, init, mask = split(prepared, out_image)
    band = (mask > 0) & (mask < 255)
    assert band.any()
    # Generated is black here, so each band pixel is the original scaled by how much is kept.
    assert np.all(out[band] <= init[band])
    assert np.array_equal(out[mask == 255], np.zeros_like(out[mask == 255]))


def test_images_without_a_mask_are_returned_untouched() -> None:
    image = Image.new("RGB", (8, 8), (1, 2, 3))
    prepared = PreparedJob(InpaintJob(job_id="x", owner=1), init_image=image.copy(), mask_image=None)
    assert keep_unmasked(prepared, [image])[0] is image


async def test_a_paint_job_whose_mask_is_gone_fails_with_a_clear_message(tiny_config: Config, tmp_path: Path) -> None:
    engine = Engine(tiny_config, GpuExecutor(tiny_config))
    outcomes: asyncio.Queue[JobEvent] = asyncio.Queue()
    engine.add_listener(lambda e: outcomes.put_nowait(e) if isinstance(e, Finished | Failed) else None)
    await engine.start(warm_up=False)
    try:
        good = paint_job(tmp_path, source_size=(64, 64), job_id="good")
        gone = InpaintJob(job_id="gone", owner=2, prompt="a fox", init_image=good.init_image,
                          mask_image=str(tmp_path / "missing-mask.png"), width=64, height=64, steps=4, model="tiny")
        engine.submit(gone)
        engine.submit(good)
        events = {e.job_id: e for e in [await asyncio.wait_for(outcomes.get(), 60) for _ in range(2)]}
    finally:
        await engine.stop()
    assert isinstance(events["gone"], Failed) and "mask" in events["gone"].message
    assert "could not be read" in events["gone"].message
    assert isinstance(events["good"], Finished)
