"""Upscaling on the inference side: spandrel loads tiny ESRGAN/SwinIR files through the production
loader, tiles match an untiled run away from the seams, cancelling stops between tiles, the shared
weights module checks, caches and fetches upscaler files atomically, and the options refuse clearly."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from config import UpscalerConfig
from inference.jobs import (
    Cancelled,
    Finished,
    JobError,
    Progress,
    TextToImageJob,
    UpscaleJob,
    job_from_params,
)
from inference.prepare import PreparedJob
from inference.upscale import NOT_SET_UP, UpscalerUnavailable, UpscalerWeights
from inference.upscale.loading import UpscalerModels
from inference.upscale.options import build_upscale
from inference.upscale.runner import UpscaleRunner, fit_to_model
from inference.upscale.tiling import tile_starts, upscale_tiled
from tests.fixtures.loopback import FileServer
from tests.fixtures.tiny_upscalers import tiny_esrgan, tiny_swinir

CPU = torch.device("cpu")


def picture(size: int = 80) -> Image.Image:
    noise = (np.random.RandomState(0).rand(size, size, 3) * 255).astype(np.uint8)
    return Image.fromarray(noise).filter(ImageFilter.GaussianBlur(2))


def models_for(path: Path, name: str = "tiny", scale: int = 2) -> UpscalerModels:
    store = UpscalerWeights(path.parent / "cache", (UpscalerConfig(name, str(path), scale=scale),))
    return UpscalerModels(store, CPU)


@pytest.mark.parametrize("builder,suffix", [(tiny_esrgan, ".pth"), (tiny_swinir, ".safetensors"),
                                            (tiny_esrgan, ".safetensors"), (tiny_swinir, ".pth")])
def test_upscaler_files_load_through_spandrel_with_their_architecture(tmp_path: Path, builder, suffix) -> None:
    loaded = models_for(builder(tmp_path / f"m{suffix}")).get("tiny")
    assert loaded.scale == 2 and loaded.dtype == torch.float32
    assert loaded.architecture == ("ESRGAN" if builder is tiny_esrgan else "SwinIR")
    assert models_for(tmp_path / f"m{suffix}").get("tiny") is not loaded  # a new store loads anew...
    models = models_for(tmp_path / f"m{suffix}")
    assert models.get("tiny") is models.get("tiny")  # ...and keeps it resident


@pytest.mark.parametrize("builder", [tiny_esrgan, tiny_swinir])
def test_tiled_output_equals_untiled_away_from_the_seams(tmp_path: Path, builder) -> None:
    loaded = models_for(builder(tmp_path / "m.pth")).get("tiny")
    image = picture(80)
    whole = np.asarray(upscale_tiled(loaded.descriptor, image, 2, tile=1000)).astype(int)
    tiles: list[tuple[int, int]] = []
    tiled = np.asarray(upscale_tiled(loaded.descriptor, image, 2, tile=48, overlap=16,
                                     on_tile=lambda done, total: tiles.append((done, total)))).astype(int)
    assert tile_starts(80, 48, 16) == [0, 32]
    assert tiles == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert tiled.shape == whole.shape == (160, 160, 3)
    away = np.ones((160, 160), bool)  # the overlap band (input 32-48) and 12 px either side
    away[2 * 20:2 * 60, :] = False
    away[:, 2 * 20:2 * 60] = False
    diff = np.abs(tiled - whole).max(axis=2)
    assert diff[away].max() <= 1
    assert diff.mean() < 8  # the seams are feathered, not hard edges


def test_cancelling_stops_between_tiles(tmp_path: Path) -> None:
    loaded = models_for(tiny_esrgan(tmp_path / "m.pth")).get("tiny")
    done: list[int] = []
    out = upscale_tiled(loaded.descriptor, picture(80), 2, tile=48, overlap=16, keep_going=lambda: len(done) < 2,
                        on_tile=lambda d, _t: done.append(d))
    assert out is None and done == [1, 2]


def test_the_runner_reports_progress_per_tile_and_resizes_to_the_factor(tmp_path: Path) -> None:
    runner = UpscaleRunner(models_for(tiny_esrgan(tmp_path / "m.pth", scale=4), scale=4), tile=48, overlap=16)
    job = UpscaleJob(job_id="j", owner=1, init_image="x", upscaler="tiny", factor=2)
    events: list[object] = []
    outcome = runner.run(PreparedJob(job, init_image=picture(80)), events.append, lambda: True, lambda _: None)
    assert isinstance(outcome, Finished) and outcome.result.images[0].size == (160, 160)
    assert [(e.step, e.total_steps) for e in events if isinstance(e, Progress)] == [(0, 4), (1, 4), (2, 4), (3, 4),
                                                                                    (4, 4)]
    cancelled = runner.run(PreparedJob(job, init_image=picture(80)), events.append, lambda: False, lambda _: None)
    assert isinstance(cancelled, Cancelled)


def test_a_file_that_is_not_an_upscaler_or_of_another_scale_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pth"
    torch.save({"weight": torch.zeros(3)}, junk)
    with pytest.raises(UpscalerUnavailable) as err:
        models_for(junk).get("tiny")
    assert "not an upscaler" in str(err.value) and str(junk) not in str(err.value) and str(junk) in err.value.detail
    with pytest.raises(UpscalerUnavailable) as err:
        models_for(tiny_esrgan(tmp_path / "m.pth", scale=2), scale=4).get("tiny")
    assert "2x model, but its scale is set to 4" in err.value.detail
    assert junk.exists()  # a configured file is never deleted


def test_upscaler_weights_from_an_url_are_fetched_once_atomically_and_checked(tmp_path: Path,
                                                                              file_server: FileServer) -> None:
    data = tiny_esrgan(tmp_path / "m.pth").read_bytes()
    file_server.files["/x2.pth"] = data
    good = UpscalerConfig("web", file_server.url("/x2.pth"), sha256=hashlib.sha256(data).hexdigest(), scale=2)
    store = UpscalerWeights(tmp_path / "cache", (good,))
    assert store.refusal("web") is not None  # never downloads for a request
    assert store.fetch_missing() == {"web": None}
    assert store.fetch("web") == tmp_path / "cache" / "web.pth" and file_server.hits["/x2.pth"] == 1
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["web.pth"]  # no partial file left
    assert UpscalerModels(store, CPU).get("web").scale == 2
    bad = UpscalerWeights(tmp_path / "cache2", (UpscalerConfig("web", good.source, sha256="ab" * 32, scale=2),))
    with pytest.raises(UpscalerUnavailable) as err:
        bad.fetch("web")
    assert "does not match the sha256" in err.value.detail and not list((tmp_path / "cache2").iterdir())


def test_options_refuse_clearly() -> None:
    tiny = (UpscalerConfig("tiny", "x.pth", scale=2),)
    with pytest.raises(JobError, match="not set up"):
        build_upscale("j", 1, (), init_image="x", source_size=(64, 64))
    assert NOT_SET_UP.startswith("Upscaling is not set up")
    with pytest.raises(JobError, match="go up to 2x"):
        build_upscale("j", 1, tiny, init_image="x", source_size=(64, 64), factor=4)
    with pytest.raises(JobError, match="at most 4096 px"):
        build_upscale("j", 1, tiny, init_image="x", source_size=(3000, 64), factor=2)
    with pytest.raises(JobError, match="mode"):
        build_upscale("j", 1, tiny, init_image="x", source_size=(64, 64), mode="wild")


def test_a_creative_job_takes_the_sources_prompt_seed_and_model_and_survives_a_restart() -> None:
    source = TextToImageJob(job_id="s", owner=1, prompt="a red fox", seed=7, model="tiny", steps=2, guidance=1.5)
    job = build_upscale("j", 2, (UpscalerConfig("tiny", "x.pth", scale=2),), init_image="in.png",
                        source_size=(64, 64), mode="creative", source=source, seed=8).job
    assert (job.prompt, job.seed, job.model, job.strength, job.guidance) == ("a red fox", 8, "tiny", 0.3, 1.5)
    assert job.steps * job.strength >= 1
    assert job_from_params("j", 2, job.to_params()) == job


def test_the_creative_pass_is_clamped_to_the_models_largest_size() -> None:
    assert fit_to_model((2048, 1024), 1024) == (1024, 512)
    assert fit_to_model((256, 256), 1024) == (256, 256)
