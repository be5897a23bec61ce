"""``[[model.controlnets]]``: read per model, and every mistake named with its key."""

from __future__ import annotations

from pathlib import Path

import pytest

from config import ConfigError, load_config


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "cn").mkdir(exist_ok=True)
    path = tmp_path / "easel.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_controlnets_are_read_for_the_default_model_and_for_extra_models(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, """
[model]
source = "org/sd15"
[[model.controlnets]]
source = "lllyasviel/control_v11p_sd15_canny"
mode = "canny"
strength = 0.7
[[model.controlnets]]
source = "./cn"
mode = "depth"
preprocessor = "Intel/dpt-hybrid-midas"

[[models]]
source = "org/sdxl"
[[models.controlnets]]
source = "diffusers/controlnet-canny-sdxl-1.0"
mode = "canny"
"""), environ={})
    canny, depth = cfg.model.controlnets
    assert (canny.mode, canny.strength, canny.display_name) == ("canny", 0.7, "canny")
    assert (depth.mode, depth.preprocessor, depth.strength) == ("depth", "Intel/dpt-hybrid-midas", 1.0)
    assert [c.source for c in cfg.models[0].controlnets] == ["diffusers/controlnet-canny-sdxl-1.0"]


@pytest.mark.parametrize(("entries", "head", "expected"), [
    ('source = "org/cn"\nmode = "sketchy"', "", "model.controlnets[0].mode: 'sketchy' is not one of canny, scribble"),
    ('source = "org/cn"\nmode = "depth"', "", "model.controlnets[0].preprocessor: depth needs a depth-estimation model"),
    ('source = "org/cn"\nmode = "pose"', "", "model.controlnets[0].preprocessor: easel has no pose estimator"),
    ('source = "org/cn"\nmode = "canny"\npreprocessor = "org/dpt"', "",
     "model.controlnets[0].preprocessor: canny maps are made with OpenCV"),
    ('source = "org/cn"\nmode = "canny"\nstrength = 3', "", "model.controlnets[0].strength: 3 is outside 0..2"),
    ('source = "./nowhere"\nmode = "canny"', "", "model.controlnets[0].source: no such folder"),
    ('source = "org/cn"\nmode = "depth"\npreprocessor = "./no-dpt"', "",
     "model.controlnets[0].preprocessor: no such folder"),
    ('source = "org/cn"\nmode = "canny"', 'family = "kandinsky22"\n', "model.controlnets: Kandinsky 2.2 models take no"),
    ('source = "org/cn"\nmode = "canny"', "", "model.controlnets: only the local backend"),
])
def test_a_wrong_controlnet_entry_is_named(tmp_path: Path, entries: str, head: str, expected: str) -> None:
    backend = 'backend = "remote"\n' if "local backend" in expected else ""
    text = f'{backend}[model]\nsource = "org/model"\n{head}[[model.controlnets]]\n{entries}\n'
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text), environ={})
    assert expected in str(err.value)


def test_two_controlnets_of_one_mode_are_refused(tmp_path: Path) -> None:
    text = ('[model]\nsource = "org/model"\n[[model.controlnets]]\nsource = "org/a"\nmode = "canny"\n'
            '[[model.controlnets]]\nsource = "org/b"\nmode = "canny"\n')
    with pytest.raises(ConfigError, match=r"model.controlnets\[1\].mode: this model has two ControlNets for 'canny'"):
        load_config(write(tmp_path, text), environ={})


def test_ready_maps_take_preprocessor_none(tmp_path: Path) -> None:
    text = ('[model]\nsource = "org/model"\n[[model.controlnets]]\nsource = "org/pose"\nmode = "pose"\n'
            'preprocessor = "none"\n[[model.controlnets]]\nsource = "org/depth"\nmode = "depth"\npreprocessor = "none"\n')
    cfg = load_config(write(tmp_path, text), environ={})
    assert [c.mode for c in cfg.model.controlnets] == ["pose", "depth"]
