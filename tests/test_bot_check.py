"""``python bot.py --check``: the example config pointed at the tiny model passes, with or without a
Discord token (it never connects); a bad model path ends with one clear line and a non-zero exit,
never a traceback; the AnimeGAN2 weights are fetched when missing and reported with where they go."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from config import Config
from inference.anime import STYLES, WeightStore
from inference.check import check_anime
from tests.fixtures.loopback import FileServer

ROOT = Path(__file__).resolve().parents[1]


def run_check(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    shutil.copy(ROOT / "easel.example.toml", tmp_path / "easel.toml")
    environ = {k: v for k, v in os.environ.items() if k != "DISCORD_TOKEN" and not k.startswith("EASEL_")}
    environ.update({"HF_HUB_OFFLINE": "1", "EASEL_DEVICE__DEVICE": "cpu", "EASEL_MODEL__SIZE": "64",
                    "EASEL_MODEL__MIN_SIZE": "64", "EASEL_MODEL__FAMILY": "sd15",
                    "EASEL_ANIME__DOWNLOAD": "false", **env})  # tests never reach GitHub
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
    assert "  token  : present (not shown)" in out
    assert "  anime  : not set up; /anime is refused until the weights are in place:" in out
    for style in STYLES:  # where each file goes and how to get it
        assert f"AnimeGAN2 style {style}: no weights at {tmp_path / 'cache' / 'animegan2' / style}.pt; downloads are off" in out


def test_a_bad_model_path_is_one_clear_line(tmp_path: Path) -> None:
    done = run_check(tmp_path, DISCORD_TOKEN="x", EASEL_MODEL__SOURCE=str(tmp_path / "nowhere" / "model"))
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("easel:")]
    assert len(lines) == 1 and "nowhere" in lines[0]


@pytest.mark.timeout(300)
def test_check_needs_no_token(tmp_path: Path, tiny_model_dir: Path, anime_weights: Path) -> None:
    cache = tmp_path / "weights"
    cache.mkdir()
    shutil.copy(anime_weights, cache / "face_paint_512_v2.pt")
    done = run_check(tmp_path, EASEL_MODEL__SOURCE=str(tiny_model_dir), EASEL_ANIME__CACHE_DIR=str(cache))
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert "easel check: OK" in done.stdout
    assert "  token  : not set; running the bot needs DISCORD_TOKEN" in done.stdout
    assert "  anime  : face_paint_512_v2 ready; /anime refuses the other styles" in done.stdout
    assert f"AnimeGAN2 style paprika: no weights at {cache / 'paprika.pt'}" in done.stdout


def test_check_fetches_missing_anime_weights_and_reports_them(tiny_config: Config, tmp_path: Path,
                                                              file_server: FileServer, anime_weights: Path) -> None:
    file_server.files["/paprika.pt"] = anime_weights.read_bytes()
    config = dataclasses.replace(tiny_config, anime=dataclasses.replace(tiny_config.anime, cache_dir=str(tmp_path)))
    store = WeightStore.from_config(config)
    store.urls = {"paprika": (file_server.url("/paprika.pt"),), "celeba_distill": (file_server.url("/gone.pt"),)}
    report = check_anime(config, store)
    assert report.ready == ("paprika",) and (tmp_path / "paprika.pt").is_file()
    assert len(report.problems) == 3
    assert any(p.startswith("AnimeGAN2 style celeba_distill: its weights could not be downloaded") for p in report.problems)
    assert check_anime(config, WeightStore.from_config(config)).ready == ("paprika",)  # found on disk: no request
    assert file_server.hits["/paprika.pt"] == 1


@pytest.mark.timeout(300)
def test_check_reports_the_describe_model(tmp_path: Path, tiny_model_dir: Path, tiny_blip_dir: Path) -> None:
    done = run_check(tmp_path, EASEL_MODEL__SOURCE=str(tiny_model_dir), EASEL_DESCRIBE__SOURCE=str(tiny_blip_dir))
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert f"  describe: {tiny_blip_dir} ready" in done.stdout
    off = run_check(tmp_path, EASEL_MODEL__SOURCE=str(tiny_model_dir))
    assert "  describe: off (describe.source is not set)" in off.stdout
