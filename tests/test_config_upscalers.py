"""``[[upscalers]]`` in easel.toml: parsed into UpscalerConfig, with clear errors for bad entries."""

from __future__ import annotations

from pathlib import Path

import pytest

from config import ConfigError, UpscalerConfig, load_config


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "easel.toml"
    path.write_text('[model]\nsource = "org/model"\n\n' + body, encoding="utf-8")
    return path


def test_upscalers_are_read_from_a_file_and_an_url(tmp_path: Path) -> None:
    (tmp_path / "x2.safetensors").write_bytes(b"0")
    cfg = load_config(write(tmp_path, '[[upscalers]]\nname = "local"\nsource = "x2.safetensors"\nscale = 2\n\n'
                                      '[[upscalers]]\nname = "web"\nsource = "https://example.org/x4.pth"\n'
                                      f'sha256 = "{"ab" * 32}"\n'), environ={})
    assert cfg.upscalers == (UpscalerConfig("local", "x2.safetensors", "", 2),
                             UpscalerConfig("web", "https://example.org/x4.pth", "ab" * 32, 4))


@pytest.mark.parametrize("entry,message", [
    ('name = "a"\nsource = "missing.pth"', "upscalers[0].source: no such file"),
    ('name = "a"\nsource = "https://example.org/model.zip"', "must be a .pth or .safetensors"),
    ('name = "a"\nsource = "ftp://example.org/m.pth"', "only http(s) URLs"),
    ('name = "a"\nsource = "https://example.org/m.pth"\nscale = 9', "upscalers[0].scale"),
    ('name = "a"\nsource = "https://example.org/m.pth"\nsha256 = "abc"', "64 hexadecimal digits"),
    ('name = "a/b"\nsource = "https://example.org/m.pth"', "upscalers[0].name"),
])
def test_a_bad_upscaler_entry_names_its_key(tmp_path: Path, entry: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
                       .replace("]", r"\]").replace(".", r"\.")):
        load_config(write(tmp_path, f"[[upscalers]]\n{entry}\n"), environ={})


def test_two_upscalers_with_one_name_are_refused(tmp_path: Path) -> None:
    twice = '[[upscalers]]\nname = "a"\nsource = "https://e.org/m.pth"\n'
    with pytest.raises(ConfigError, match="used by two upscalers"):
        load_config(write(tmp_path, twice + "\n" + twice), environ={})
