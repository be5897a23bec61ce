"""A model with an EasyNegative-like embedding, as members meet it: /imagine with it in the negative
prompt is drawn and posted with the text kept as typed in the PNG parameters, and typing a prompt
or a negative prompt offers the embedding's word."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from config import Config, EmbeddingConfig
from inference.imaging import parse_parameters
from tests.cogs.helpers import final, image_of, make_world
from tests.fixtures.tiny_embeddings import text_width, write_embedding


@pytest.fixture(scope="module")
def embedding_files(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("embeddings")
    write_embedding(folder / "EasyNegative.safetensors", text_width(tiny_model_dir), vectors=2)
    write_embedding(folder / "bad-hands-5.pt", text_width(tiny_model_dir), layout="a1111-pt", seed=1)
    return folder


@pytest.fixture
def bot_config(bot_config: Config, embedding_files: Path) -> Config:
    embeddings = (EmbeddingConfig("EasyNegative", str(embedding_files / "EasyNegative.safetensors")),
                  EmbeddingConfig("hands", str(embedding_files / "bad-hands-5.pt"), token="bad-hands-5"))
    return dataclasses.replace(bot_config, model=dataclasses.replace(bot_config.model, embeddings=embeddings))


async def test_an_embedding_in_the_negative_is_drawn_and_the_png_keeps_the_text_as_typed(simcord_env) -> None:
    w = make_world(simcord_env)
    result = await w.alice.slash(w.channel, "imagine", prompt="a (red:1.2) fox bad-hands-5",
                                 negative="EasyNegative, blurry", seed=5, steps=2)
    message = await final(result)
    assert message.attachments, message.content
    params = parse_parameters((await image_of(message)).info["parameters"])
    assert params["prompt"] == "a (red:1.2) fox bad-hands-5"
    assert params["negative_prompt"] == "EasyNegative, blurry"
    assert not result.ephemeral


async def test_typing_a_negative_prompt_offers_the_models_embeddings(simcord_env) -> None:
    w = make_world(simcord_env)
    offered = await w.alice.autocomplete(w.channel, "imagine", "negative", "blurry, Eas", prompt="x")
    assert [c["value"] for c in offered] == ["blurry, Eas", "blurry, EasyNegative", "blurry, Eas, bad-hands-5"]
    empty = await w.alice.autocomplete(w.channel, "imagine", "negative", "", prompt="x")
    assert [c["value"] for c in empty] == ["EasyNegative", "bad-hands-5"]


async def test_typing_a_prompt_offers_them_too_but_never_a_text_discord_would_refuse(simcord_env) -> None:
    w = make_world(simcord_env)
    offered = await w.alice.autocomplete(w.channel, "imagine", "prompt", "a red fox")
    assert [c["value"] for c in offered] == ["a red fox", "a red fox, EasyNegative", "a red fox, bad-hands-5"]
    long = "a red fox " * 11  # 110 characters: no choice can hold it, so none is offered
    assert await w.alice.autocomplete(w.channel, "imagine", "prompt", long) == []
