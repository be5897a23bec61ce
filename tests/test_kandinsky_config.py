"""Configuring a Kandinsky 2.2 model: the keys it takes, and the remote backend's refusal."""

from __future__ import annotations

from pathlib import Path

import pytest

from config import ConfigError, load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "easel.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_kandinsky_model_takes_its_prior_and_inpainting_decoder(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, '[model]\nsource = "kandinsky-community/kandinsky-2-2-decoder"\n'
                                      'family = "kandinsky22"\nprior_source = "kandinsky-community/kandinsky-2-2-prior"\n'
                                      'inpaint_source = "kandinsky-community/kandinsky-2-2-decoder-inpaint"\n'),
                      environ={})
    assert cfg.model.family == "kandinsky22" and cfg.model.prior_source.endswith("kandinsky-2-2-prior")


@pytest.mark.parametrize("model", [
    'source = "kandinsky-community/kandinsky-2-2-decoder"\n',
    'source = "org/decoder"\nfamily = "kandinsky22"\n',
    'source = "org/decoder"\nprior_source = "org/prior"\n',
])
def test_the_remote_backend_refuses_kandinsky_in_one_line(tmp_path: Path, model: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, f'backend = "remote"\n[model]\n{model}'), environ={})
    assert str(info.value) == ('model: Kandinsky 2.2 models run only with backend = "local" (the remote service '
                               'cannot run its prior and decoder)')
