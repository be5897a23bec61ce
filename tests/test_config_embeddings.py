"""``[[model.embeddings]]`` (and under ``[[models]]``): read from easel.toml, and every mistake one
line naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from config import ConfigError, load_config


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "embeddings").mkdir(exist_ok=True)
    for name in ("EasyNegative.safetensors", "bad-hands-5.pt"):
        (tmp_path / "embeddings" / name).write_bytes(b"x")
    path = tmp_path / "easel.toml"
    path.write_text(text, encoding="utf-8")
    return path


MODEL = '[model]\nsource = "org/sd15"\nfamily = "sd15"\n'


def embedding(name: str = "EasyNegative", source: str = "embeddings/EasyNegative.safetensors", **extra: str) -> str:
    rows = "".join(f'{key} = "{value}"\n' for key, value in extra.items())
    return f'[[model.embeddings]]\nname = "{name}"\nsource = "{source}"\n{rows}'


def error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), environ={})
    return str(caught.value)


def test_embeddings_are_read_with_the_token_defaulting_to_the_name(tmp_path: Path) -> None:
    text = (MODEL + embedding() + embedding("hands", "embeddings/bad-hands-5.pt", token="bad-hands-5")
            + '[[models]]\nsource = "org/sdxl"\nname = "xl"\n'
            + '[[models.embeddings]]\nname = "negxl"\nsource = "org/negxl"\nweight_name = "negxl.safetensors"\n')
    cfg = load_config(write(tmp_path, text), environ={})
    assert [e.word for e in cfg.model.embeddings] == ["EasyNegative", "bad-hands-5"]
    (xl,) = cfg.models[0].embeddings
    assert (xl.source, xl.weight_name, xl.word) == ("org/negxl", "negxl.safetensors", "negxl")


def test_an_unknown_key_is_named(tmp_path: Path) -> None:
    assert error(tmp_path, MODEL + embedding(weight="0.8")).startswith("model.embeddings[0].weight: unknown key")


def test_two_embeddings_with_one_name_or_one_token_are_refused(tmp_path: Path) -> None:
    message = error(tmp_path, MODEL + embedding() + embedding())
    assert message == "model.embeddings[1].name: 'EasyNegative' is used by two embeddings of this model"
    message = error(tmp_path, MODEL + embedding() + embedding("other", "embeddings/bad-hands-5.pt",
                                                              token="easynegative"))
    assert message.startswith("model.embeddings[1].token: 'easynegative' is also the token of embedding 'EasyNegative'")


def test_a_token_members_cannot_type_as_one_word_is_refused(tmp_path: Path) -> None:
    message = error(tmp_path, MODEL + embedding(token="easy negative"))
    assert message.startswith("model.embeddings[0].token: 'easy negative' cannot be typed as one word")
    message = error(tmp_path, MODEL + embedding("Easy Negative"))
    assert message.startswith("model.embeddings[0].name: 'Easy Negative' cannot be typed") and "set token" in message
    assert "cannot be typed" in error(tmp_path, MODEL + embedding(token="(neg:1.2)"))


def test_a_missing_file_and_a_weight_name_on_a_file_are_refused(tmp_path: Path) -> None:
    message = error(tmp_path, MODEL + embedding(source="embeddings/gone.pt"))
    assert message.startswith("model.embeddings[0].source: no such file:") and "gone.pt" in message
    message = error(tmp_path, MODEL + embedding(weight_name="x.safetensors"))
    assert message.startswith("model.embeddings[0].weight_name:") and "already one file" in message
    assert error(tmp_path, MODEL + embedding(source=" ")).startswith("model.embeddings[0].source: must name")


def test_embeddings_on_the_remote_backend_or_a_kandinsky_model_are_refused(tmp_path: Path) -> None:
    remote = 'backend = "remote"\n' + MODEL + embedding(source="org/easynegative")
    assert "only the local backend" in error(tmp_path, remote)
    kandinsky = ('[model]\nsource = "kandinsky-community/kandinsky-2-2-decoder"\nfamily = "kandinsky22"\n'
                 + embedding())
    assert error(tmp_path, kandinsky).startswith("model.embeddings: Kandinsky 2.2 models take no textual inversion")
