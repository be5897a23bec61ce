"""Style presets: the member's prompt wrapped or extended, the negative extended, names checked."""

from __future__ import annotations

import pytest

from config import DEFAULT_STYLES, StyleConfig
from inference.jobs import JobError
from inference.presets import PRESETS
from inference.styles import apply_style, find_style
from inference.validation import ModelInfo, build_imagine, build_vary

STYLES = (StyleConfig("ink", "ink drawing of {prompt}, by Hokusai", "colour"),
          StyleConfig("Gloom", "dark, moody"))
INFO = ModelInfo("sd15", PRESETS["sd15"])


def test_a_placeholder_wraps_the_prompt_and_the_negative_is_added() -> None:
    assert apply_style(STYLES[0], "a fox", "blurry") == ("ink drawing of a fox, by Hokusai", "blurry, colour")


def test_without_a_placeholder_the_style_is_appended() -> None:
    assert apply_style(STYLES[1], "a fox", "") == ("a fox, dark, moody", "")


def test_an_empty_prompt_leaves_no_dangling_commas() -> None:
    assert apply_style(STYLES[0], "", "") == ("ink drawing of, by Hokusai", "colour")
    assert apply_style(STYLES[1], "", "") == ("dark, moody", "")


def test_the_job_keeps_the_final_texts_and_the_style_name() -> None:
    job = build_imagine("j", 1, INFO, prompt="a  fox", negative="blurry", style="INK", styles=STYLES).job
    assert (job.prompt, job.negative_prompt, job.style) == ("ink drawing of a fox, by Hokusai", "blurry, colour", "ink")
    job = build_vary("j", 1, INFO, init_image="x.png", source_size=(64, 64), style="gloom", styles=STYLES).job
    assert (job.prompt, job.style) == ("dark, moody", "Gloom")
    assert build_imagine("j", 1, INFO, prompt="a fox", styles=STYLES).job.style == ""


def test_an_unknown_style_names_the_ones_there_are() -> None:
    with pytest.raises(JobError, match="Unknown style 'neon'. Choose one of: ink, Gloom."):
        build_imagine("j", 1, INFO, prompt="a fox", style="neon", styles=STYLES)
    with pytest.raises(JobError, match="No styles are configured"):
        find_style("ink", ())


def test_the_built_in_styles_all_wrap_the_prompt() -> None:
    assert len(DEFAULT_STYLES) >= 5
    for style in DEFAULT_STYLES:
        assert "a fox" in apply_style(style, "a fox", "")[0]
