"""bench/gpu.py, the one-shot GPU benchmark, checked on the CPU: its dry run's smallest sections give
the JSON the GPU run will give, and a failing section is recorded while the others still run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(240)
def test_the_dry_run_proves_correctness_and_writes_the_json(tmp_path: Path) -> None:
    environ = {**os.environ, "HF_HUB_OFFLINE": "1", "OUT": str(tmp_path / "out")}
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu.py"), "--dry-run", "--only", "correctness,switch"],
                          cwd=tmp_path, env=environ, capture_output=True, text=True, timeout=220)
    assert done.returncode == 0, done.stderr[-3000:]
    printed = json.loads(done.stdout.strip().splitlines()[-1])
    written = list((tmp_path / "out").glob("*-dry-run.json"))
    assert len(written) == 1 and json.loads(written[0].read_text(encoding="utf-8")) == printed
    assert {"device_name", "torch", "diffusers", "dry_run", "sections", "sd15_512_50steps_s_per_image",
            "throughput_ratio_vs_raw", "sdxl_1024_30steps_s_per_image", "switch_ram_to_device_s"} <= set(printed)
    assert printed["dry_run"] is True and printed["torch"] and printed["diffusers"] == "0.42.1"
    assert set(printed["sections"]) == {"correctness", "switch"}
    correct = printed["sections"]["correctness"]
    assert "error" not in correct, correct
    assert correct["batched_vs_single_ok"] and correct["cancel_ok"] and correct["oom_ok"]
    assert correct["cancel_last_step"] < correct["cancel_total_steps"]
    assert printed["switch_disk_to_device_s"] > 0 and printed["switch_ram_to_device_s"] >= 0


def _import_gpu_bench() -> object:
    """bench/gpu.py, without leaving behind the offline/verbosity variables it sets for its own runs."""
    before = set(os.environ)
    from bench import gpu

    for key in set(os.environ) - before:
        del os.environ[key]
    return gpu


def test_a_failing_section_is_recorded_and_the_run_goes_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gpu: Any = _import_gpu_bench()
    from bench.gpu_common import DRY
    from bench.gpu_models import Models

    def broken(*args: Any) -> None:
        args[-1]["executor/batch1_s_per_image"] = 2.5  # measured before it broke: kept
        raise ValueError("no such kernel\nsecond line")

    monkeypatch.setitem(gpu.SECTIONS, "sdxl", broken)
    models = Models(tmp_path / "models", tiny=True, device="cpu", dtype=DRY.torch_dtype)
    figures = gpu.run_section("sdxl", DRY, models, tmp_path, left=5.0)
    assert figures["error"] == "ValueError: no such kernel" and figures["seconds"] >= 0
    out = gpu.summary(DRY, {"sdxl": figures})
    assert out["sdxl_1024_30steps_s_per_image"] == 2.5 and "goals" not in out


def test_a_section_out_of_time_skips_its_steps_and_says_so() -> None:
    _import_gpu_bench()
    from bench.gpu_common import Budget

    budget = Budget(0.0)
    assert not budget.allows("compile", 120)
    assert budget.skipped and budget.skipped[0].startswith("compile (needs ~120 s")


def test_the_full_size_models_have_the_published_parameter_counts() -> None:
    """Built on the meta device (shapes only): the UNets, VAE and text encoders of SD 1.5, SD 2.1
    (SD-Turbo) and SDXL (SDXL-Turbo) as the published checkpoints have them, in millions."""
    import torch

    _import_gpu_bench()
    from bench.gpu_models import full_pipeline

    published = {"sd15": {"unet": 859.5, "vae": 83.7, "text_encoder": 123.1},
                 "sd-turbo": {"unet": 865.9, "vae": 83.7, "text_encoder": 340.4},
                 "sdxl": {"unet": 2567.5, "vae": 83.7, "text_encoder": 123.1, "text_encoder_2": 694.7}}
    for kind, counts in published.items():
        pipe = full_pipeline(kind, "meta")
        built = {name: round(sum(p.numel() for p in module.parameters()) / 1e6, 1)
                 for name, module in pipe.components.items() if isinstance(module, torch.nn.Module)}
        assert built == counts, kind
