"""``device.fast_draft``: DeepCache step caching runs the UNet's deep blocks every N-th step only, for
the one pipeline call it is on; the next call (another size, or a model without it) is untouched;
each result says what changed its pixels; the config refuses values it cannot honour."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from config import Config, ConfigError, load_config
from inference.generate import run_diffusion_batch
from inference.jobs import JobResult
from inference.loader import LoadedModel, load_model
from inference.prepare import PreparedJob
from inference.step_cache import caches, fast_path_label
from studio_results import parameters_text
from tests.inference.engine_helpers import t2i


def _load(config: Config, fast_draft: int) -> LoadedModel:
    return load_model(config.model, dataclasses.replace(config.device, fast_draft=fast_draft), config.base_dir)


def _deep_runs(model: LoadedModel) -> list[int]:
    """Counts how often the UNet's middle block really runs (its inner resnet is not wrapped by DeepCache,
    so a skipped step does not reach it)."""
    runs = [0]
    unet = model.pipes["imagine"].unet  # type: ignore[index]
    unet.mid_block.resnets[0].register_forward_hook(lambda *_: runs.__setitem__(0, runs[0] + 1))
    return runs


def _run(model: LoadedModel, **job: Any) -> JobResult:
    results = run_diffusion_batch(model, [PreparedJob(t2i("j", seed=5, **job))], lambda *_: True)
    assert results is not None
    return results[0]


def _pixels(result: JobResult) -> np.ndarray:
    return np.asarray(result.images[0], np.int16)


def test_the_deep_blocks_run_every_third_step_and_the_picture_stays_close(tiny_config: Config) -> None:
    plain_model, cached_model = _load(tiny_config, 0), _load(tiny_config, 3)
    plain_runs, cached_runs = _deep_runs(plain_model), _deep_runs(cached_model)
    plain, cached = _run(plain_model, steps=9), _run(cached_model, steps=9)
    assert plain_runs[0] == 9 and cached_runs[0] == 3  # steps 0, 3 and 6
    assert (plain.fast_path, cached.fast_path) == ("", "DeepCache every 3 steps")
    diff = np.abs(_pixels(plain) - _pixels(cached))
    assert diff.max() > 0  # a draft: not the plain pixels (and the PNG says so)
    assert diff.mean() < 40  # but the same picture, not noise


def test_no_cache_reaches_the_next_call_and_the_unet_is_left_as_it_was(tiny_config: Config) -> None:
    model = _load(tiny_config, 3)
    unet = model.pipes["imagine"].unet  # type: ignore[index]
    first = _run(model, steps=6, width=64, height=64)
    assert not [m for m in unet.modules() if "forward" in vars(m)]  # DeepCache's wrappers are gone
    second = _run(model, steps=5, width=96, height=96)  # another size: a stale cache would not even fit
    assert second.images[0].size == (96, 96)
    fresh = _load(tiny_config, 3)
    assert np.array_equal(_pixels(second), _pixels(_run(fresh, steps=5, width=96, height=96)))
    assert np.array_equal(_pixels(first), _pixels(_run(fresh, steps=6, width=64, height=64)))


def test_a_model_without_fast_draft_is_untouched_by_one_with_it(tiny_config: Config) -> None:
    plain = _load(tiny_config, 0)
    before = _pixels(_run(plain, steps=6))
    _run(_load(tiny_config, 3), steps=6)
    assert np.array_equal(before, _pixels(_run(plain, steps=6)))


def test_only_unet_families_with_steps_to_skip_are_cached() -> None:
    assert caches("sd15", 3, 20) and caches("sdxl", 2, 8) and caches("sd21", 4, 30)
    assert not caches("kandinsky22", 3, 20)  # its decoder passes the timestep by name
    assert not caches("sd15", 0, 20) and not caches("sd15", 3, 1)  # off; a one-step Turbo image
    assert not caches("sd15", 3, 20, scheduler_order=2)  # Heun, DPM2: two UNet calls per step


@pytest.mark.parametrize("sampler", ["heun", "kdpm2"])
def test_a_sampler_with_two_unet_calls_a_step_is_not_cached_nor_labelled(tiny_config: Config, sampler: str) -> None:
    plain = _run(_load(tiny_config, 0), steps=6, scheduler=sampler)
    model = _load(tiny_config, 3)
    runs = _deep_runs(model)
    drafted = _run(model, steps=6, scheduler=sampler)
    assert runs[0] == 11 and drafted.fast_path == ""  # every UNet call of 6 steps (Heun: 2 per step but the first)
    assert np.array_equal(_pixels(plain), _pixels(drafted))


def test_the_png_says_which_speed_ups_changed_its_pixels() -> None:
    assert fast_path_label("", 0) == "" and fast_path_label("int8", 0) == "int8"
    assert fast_path_label("fp8", 4) == "fp8, DeepCache every 4 steps"
    job = t2i("j1", seed=5)
    assert "Fast path" not in parameters_text(job, 5, 64, 64, "Euler")
    text = parameters_text(job, 5, 64, 64, "Euler", fast_path="int8, DeepCache every 3 steps")
    assert text.splitlines()[-1].endswith('Fast path: "int8, DeepCache every 3 steps"')


def _config(tmp_path: Path, device: str) -> Config:
    path = tmp_path / "easel.toml"
    path.write_text(f'[model]\nsource = "stabilityai/sd-turbo"\n[device]\n{device}\n', encoding="utf-8")
    return load_config(path, environ={})


@pytest.mark.parametrize("value", [1, 11, -2])
def test_a_fast_draft_interval_out_of_range_is_refused(tmp_path: Path, value: int) -> None:
    with pytest.raises(ConfigError, match=r"device.fast_draft: .* 0 \(off\) or .* every 2 to 10 steps"):
        _config(tmp_path, f"fast_draft = {value}")
    assert _config(tmp_path, "fast_draft = 3").device.fast_draft == 3


def test_fast_draft_beside_compile_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"device.fast_draft: .*compile = false or fast_draft = 0"):
        _config(tmp_path, "fast_draft = 3\ncompile = true")
