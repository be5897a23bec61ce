"""The captioning model through the production loader, the suggestions it writes, and the
executor running describe jobs (tiny random-weight BLIP: structure, not meaning)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from PIL import Image

from config import Config
from inference.describe import CaptionSource, DescribeUnavailable
from inference.describe.captioner import clean, load_captioner
from inference.describe.source import NOT_CONFIGURED, NOT_READY
from inference.executor import GpuExecutor
from inference.jobs import DescribeJob, Failed, Finished, job_from_params
from inference.prepare import prepare


def test_a_florence_checkpoint_in_the_remote_code_layout_is_refused_clearly(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "florence2", "auto_map": {"AutoConfig": "x.Config"}}')
    with pytest.raises(DescribeUnavailable) as err:
        load_captioner(tmp_path, torch.device("cpu"))
    assert "florence-community/Florence-2-base" in err.value.detail


def test_the_families_use_their_own_prompts(tiny_blip_dir: Path, tiny_florence_dir: Path) -> None:
    from inference.describe.captioner import FLORENCE_TASKS, PREFIXES

    assert load_captioner(tiny_blip_dir, torch.device("cpu")).prompts == PREFIXES
    assert load_captioner(tiny_florence_dir, torch.device("cpu")).prompts == FLORENCE_TASKS


def test_cleaning_trims_dedupes_and_caps_suggestions() -> None:
    raw = ["  a cat  on a   mat. ", "A cat on a mat", "", " , ", "a very long caption indeed", "x" * 30, "a dog"]
    assert clean(raw, limit=4, max_chars=12) == ["a cat on a", "a very long", "x" * 12, "a dog"]
    assert clean(raw, limit=2, max_chars=100) == ["a cat on a mat", "a very long caption indeed"]


@pytest.mark.parametrize("family", ["blip", "florence"])
@pytest.mark.parametrize("count", [1, 2, 4])
def test_a_tiny_model_gives_distinct_clean_suggestions(request: pytest.FixtureRequest, family: str, count: int) -> None:
    captioner = load_captioner(request.getfixturevalue(f"tiny_{family}_dir"), torch.device("cpu"))
    found = captioner.suggest(Image.new("RGB", (48, 40), (200, 40, 40)), count, max_chars=60)
    assert 1 <= len(found) <= count
    assert len({t.lower() for t in found}) == len(found)
    assert all(t == " ".join(t.split()) and 0 < len(t) <= 60 for t in found)


def test_a_model_that_is_not_blip_is_refused_clearly(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "llava"}')
    with pytest.raises(DescribeUnavailable, match="not a BLIP or Florence-2 captioning model") as err:
        load_captioner(tmp_path, torch.device("cpu"))
    assert "llava" in err.value.detail


def test_sources_that_are_missing_or_not_set_say_so(tmp_path: Path) -> None:
    assert CaptionSource("").refusal() == NOT_CONFIGURED
    assert CaptionSource(str(tmp_path / "nowhere")).refusal() == NOT_READY
    # A hub id not in the (empty) cache: never downloaded for a request.
    hub = CaptionSource("Salesforce/blip-image-captioning-base", base_dir=tmp_path, cache_dir=str(tmp_path / "hf"))
    assert hub.refusal() == NOT_READY
    assert not (tmp_path / "hf").exists() or not any((tmp_path / "hf").rglob("*.safetensors"))


def test_a_describe_job_round_trips_through_its_parameters() -> None:
    job = DescribeJob(job_id="j1", owner=5, init_image="/x.png", count=3, max_chars=200, nsfw=True)
    params = {**job.to_params(), "result": ["a", "b"]}  # the stored result is not a field
    assert job_from_params("j1", 5, params) == job and params["kind"] == "describe"


def test_the_executor_runs_a_describe_job(tiny_config: Config, tiny_blip_dir: Path, tmp_path: Path) -> None:
    config = dataclasses.replace(tiny_config, describe=dataclasses.replace(
        tiny_config.describe, source=str(tiny_blip_dir), device="cpu", suggestions=3))
    Image.new("RGB", (64, 48), (10, 120, 200)).save(tmp_path / "in.png")
    executor = GpuExecutor(config)
    try:
        job = DescribeJob(job_id="d1", owner=1, init_image=str(tmp_path / "in.png"), count=3, max_chars=80)
        [outcome] = executor.run_batch([prepare(job)], lambda e: None).result(timeout=120)
        assert isinstance(outcome, Finished) and outcome.result.images == ()
        assert 1 <= len(outcome.result.texts) <= 3
        unset = GpuExecutor(tiny_config)  # no describe.source: a clear message, not a crash
        try:
            [failed] = unset.run_batch([prepare(job)], lambda e: None).result(timeout=60)
        finally:
            unset.shutdown()
        assert isinstance(failed, Failed) and failed.message == NOT_CONFIGURED
    finally:
        executor.shutdown()


def test_fetching_a_hub_model_never_happens_with_downloads_off_and_says_why(tmp_path: Path) -> None:
    hub = CaptionSource("Salesforce/blip-image-captioning-base", base_dir=tmp_path, cache_dir=str(tmp_path / "hf"),
                        download=False)
    assert "describe.download is off" in (hub.fetch() or "")
    assert hub.fetch_in_background() is False
    assert CaptionSource(str(tmp_path)).fetch_in_background() is False  # a local folder is never fetched
