"""Configuring a model's IP-Adapter (``[model.ip_adapter]``, /imagine's style_ref): the keys it
takes, and one clear line for each mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from config import ConfigError, load_config

HUB = '[model.ip_adapter]\nsource = "h94/IP-Adapter"\nsubfolder = "models"\nweight_name = "ip-adapter_sd15.safetensors"\n'


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "easel.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_hub_adapter_with_its_default_strength(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, '[model]\nsource = "org/sd15"\n' + HUB + "strength = 0.5\n"), environ={})
    ip = cfg.model.ip_adapter
    assert (ip.source, ip.subfolder, ip.weight_name, ip.image_encoder, ip.strength) == (
        "h94/IP-Adapter", "models", "ip-adapter_sd15.safetensors", "", 0.5)
    assert load_config(write(tmp_path, '[model]\nsource = "org/sd15"\n'), environ={}).model.ip_adapter.source == ""


def test_each_extra_model_takes_its_own(tmp_path: Path) -> None:
    text = ('[model]\nsource = "org/a"\n[[models]]\nsource = "org/b"\n[models.ip_adapter]\nsource = "h94/IP-Adapter"\n'
            'subfolder = "sdxl_models"\nweight_name = "ip-adapter_sdxl.safetensors"\n')
    cfg = load_config(write(tmp_path, text), environ={})
    assert cfg.model.ip_adapter.source == "" and cfg.models[0].ip_adapter.subfolder == "sdxl_models"


def test_a_local_file_with_its_encoder(tmp_path: Path) -> None:
    (tmp_path / "ip").mkdir()
    (tmp_path / "ip" / "ip-adapter.safetensors").write_bytes(b"")
    (tmp_path / "encoder").mkdir()
    text = ('[model]\nsource = "org/sd15"\n[model.ip_adapter]\nsource = "./ip/ip-adapter.safetensors"\n'
            'image_encoder = "./encoder"\n')
    assert load_config(write(tmp_path, text), environ={}).model.ip_adapter.image_encoder == "./encoder"


@pytest.mark.parametrize(("text", "expected"), [
    ('[model]\nsource = "org/sd15"\n' + HUB + "strength = 1.5\n",
     "model.ip_adapter.strength: 1.5 must be between 0 and 1"),
    ('[model]\nsource = "org/sd15"\n[model.ip_adapter]\nsource = "h94/IP-Adapter"\n',
     "model.ip_adapter.weight_name: name the weight file in h94/IP-Adapter"),
    ('[model]\nsource = "org/sd15"\n[model.ip_adapter]\nweight_name = "ip-adapter_sd15.safetensors"\n',
     "model.ip_adapter.source: must name the IP-Adapter"),
    ('[model]\nsource = "org/sd15"\n' + HUB.replace(".safetensors", ".txt"),
     "model.ip_adapter.weight_name: 'ip-adapter_sd15.txt' must be a .safetensors or .bin file"),
    ('[model]\nsource = "org/sd15"\n[model.ip_adapter]\nsource = "./nowhere/ip.safetensors"\nimage_encoder = "./enc"\n',
     "model.ip_adapter.source: no such file"),
    ('[model]\nsource = "org/sd15"\n[model.ip_adapter]\nsource = "./ip.safetensors"\nweight_name = "x.safetensors"\n',
     "model.ip_adapter: source ./ip.safetensors is already one file"),
    ('[model]\nsource = "org/sd15"\n' + HUB + 'image_encoder = "./missing-encoder"\n',
     "model.ip_adapter.image_encoder: no such folder"),
    ('[model]\nsource = "org/sd15"\n' + HUB + "colour = 1\n", "model.ip_adapter.colour: unknown key"),
    ('[model]\nsource = "kandinsky-community/kandinsky-2-2-decoder"\n' + HUB,
     "model.ip_adapter: Kandinsky 2.2 models take no IP-Adapter"),
    ('backend = "remote"\n[model]\nsource = "org/sd15"\n' + HUB,
     'model.ip_adapter: only the local backend can use it; remove it or set backend = "local"'),
])
def test_mistakes_are_one_line_naming_the_key(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError, match="^" + expected.replace(".", r"\.").replace("(", r"\(")) as info:
        load_config(write(tmp_path, text), environ={})
    assert "\n" not in str(info.value)


def test_a_single_file_needs_its_image_encoder_named(tmp_path: Path) -> None:
    (tmp_path / "ip.safetensors").write_bytes(b"")
    with pytest.raises(ConfigError, match="a single IP-Adapter file carries no image encoder"):
        load_config(write(tmp_path, '[model]\nsource = "org/sd15"\n[model.ip_adapter]\nsource = "./ip.safetensors"\n'),
                    environ={})
