"""[[styles]] in easel.toml: a built-in list until the admin writes their own, checked at start-up."""

from __future__ import annotations

from pathlib import Path

import pytest

from config import DEFAULT_STYLES, ConfigError, StyleConfig, load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "easel.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_without_styles_the_built_in_ones_are_offered(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, ""), environ={}).styles == DEFAULT_STYLES


def test_configured_styles_replace_the_built_in_ones(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, '[[styles]]\nname = "ukiyo-e"\nprompt = "{prompt}, woodblock print by Hokusai"\n'
                                      'negative = "photo"\n'), environ={})
    assert cfg.styles == (StyleConfig("ukiyo-e", "{prompt}, woodblock print by Hokusai", "photo"),)
    assert load_config(write(tmp_path, "styles = []\n"), environ={}).styles == ()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[[styles]]\nname = ""\nprompt = "x"\n', "styles[0].name: '' must be 1-40 letters"),
        ('[[styles]]\nname = "a"\nprompt = "x"\n[[styles]]\nname = "A"\nprompt = "y"\n',
         "styles[1].name: 'A' is used by two styles"),
        ('[[styles]]\nname = "empty"\n', "styles[0]: style 'empty' adds nothing"),
        ('[[styles]]\nname = "twice"\nprompt = "{prompt} and {prompt}"\n', "styles[0].prompt: write {prompt} at most once"),
        ('[[styles]]\nname = "x"\nprompt = "y"\ncolour = "red"\n', "styles[0].colour: unknown key"),
    ],
)
def test_bad_styles_name_the_key_and_the_reason(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), environ={})
    assert expected in str(info.value)
