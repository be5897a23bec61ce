"""``python bot.py --check``: the example config pointed at the tiny model passes; a bad model
path or a missing token ends with one clear line and a non-zero exit, never a traceback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_check(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    shutil.copy(ROOT / "easel.example.toml", tmp_path / "easel.toml")
    environ = {k: v for k, v in os.environ.items() if k != "DISCORD_TOKEN" and not k.startswith("EASEL_")}
    environ.update({"HF_HUB_OFFLINE": "1", "EASEL_DEVICE__DEVICE": "cpu", "EASEL_MODEL__SIZE": "64",
                    "EASEL_MODEL__MIN_SIZE": "64", "EASEL_MODEL__FAMILY": "sd15", **env})
    return subprocess.run([sys.executable, str(ROOT / "bot.py"), "--check", "--config", str(tmp_path / "easel.toml")],
                          cwd=tmp_path, env=environ, capture_output=True, text=True, timeout=240)


@pytest.mark.timeout(300)
def test_check_with_the_tiny_model_reports_device_model_and_time(tmp_path: Path, tiny_model_dir: Path) -> None:
    done = run_check(tmp_path, DISCORD_TOKEN="not-a-real-token", EASEL_MODEL__SOURCE=str(tiny_model_dir),
                     EASEL_MODEL__STEPS="2")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "easel check: OK" in out and "device : cpu" in out and "float32" in out
    assert "tiny-sd" in out and " s" in out and "not-a-real-token" not in out + done.stderr


def test_a_bad_model_path_is_one_clear_line(tmp_path: Path) -> None:
    done = run_check(tmp_path, DISCORD_TOKEN="x", EASEL_MODEL__SOURCE=str(tmp_path / "nowhere" / "model"))
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("easel:")]
    assert len(lines) == 1 and "nowhere" in lines[0]


def test_a_missing_token_is_one_clear_line(tmp_path: Path, tiny_model_dir: Path) -> None:
    done = run_check(tmp_path, EASEL_MODEL__SOURCE=str(tiny_model_dir))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "DISCORD_TOKEN" in done.stderr
