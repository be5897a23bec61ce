"""Self-tests of the easel end-to-end harness (conftest): the config it writes, the traceback check."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from config import load_config
from tests.e2e.conftest import NSFW_WORD, Easel, default_settings, render_toml, toml_value
from tests.e2e.fake_discord import FakeDiscord
from tests.e2e.launcher import TRACEBACK, BotProcess


def test_the_written_config_is_what_easel_reads(tmp_path: Path) -> None:
    model, weights = tmp_path / "tiny model", tmp_path / 'we"ights.pt'
    model.mkdir()
    settings = default_settings(model, weights)
    settings["queue"]["max_batch"] = 1
    path = tmp_path / "easel.toml"
    path.write_text(render_toml(settings), encoding="utf-8")
    config = load_config(path, environ={})
    assert config.model.source == str(model) and (config.model.min_size, config.model.max_size) == (64, 256)
    assert config.device.threads == 1
    assert config.device.device == "cpu" and config.queue.max_batch == 1
    assert config.path(config.storage.database) == tmp_path / "easel.db"
    assert config.anime.weights == {"face_paint_512_v2": str(weights)}
    assert (config.discord.progress_interval_s, config.discord.nsfw_words) == (0.2, (NSFW_WORD,))


def test_toml_values_refuse_what_they_cannot_write() -> None:
    assert toml_value({"a": [1, 2.5, True]}) == "{ a = [1, 2.5, true] }"
    with pytest.raises(TypeError, match="no TOML"):
        toml_value(None)


def test_a_traceback_after_the_mark_fails_the_check(tmp_path: Path) -> None:
    log = tmp_path / "bot-1.log"
    log.write_text(f"{TRACEBACK}\n  earlier trouble\n", encoding="utf-8")
    easel = Easel(FakeDiscord(), tmp_path, tmp_path / "easel.toml", [BotProcess(_no_process(), log)])
    marks = easel.log_marks()
    easel.assert_no_traceback(marks)  # what was logged before the mark belongs to an earlier test
    with pytest.raises(AssertionError, match="earlier trouble"):
        easel.assert_no_traceback()
    with log.open("a", encoding="utf-8") as f:
        f.write(f"INFO fine\n{TRACEBACK}\nValueError: new trouble\n")
    with pytest.raises(AssertionError, match="new trouble"):
        easel.assert_no_traceback(marks)


def _no_process() -> Any:
    """The log check reads only the log file; no process is needed."""
    return None
