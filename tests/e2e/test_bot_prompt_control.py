"""The real bot.py process with a tiny SD model that has a textual inversion embedding, an IP-Adapter and
a canny ControlNet: /imagine with the embedding word in the negative prompt, with a style reference, and
with a control picture, posted with the pixels diffusers draws for the same call (PNG parameters as typed;
the control map shown beside the result)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inference.imaging import read_parameters
from inference.imaging.pngmeta import parse_parameters
from tests.e2e.client import Member
from tests.e2e.conftest import Easel, Settings
from tests.e2e.easel_helpers import decode, png, result_attachment, result_of
from tests.e2e.fake_discord import FakeDiscord
from tests.fixtures.tiny_embeddings import text_width, write_embedding
from tests.fixtures.tiny_ip_adapter import SUBFOLDER, WEIGHT_NAME

pytestmark = pytest.mark.asyncio(loop_scope="module")

WORD = "EasyNegative"


@pytest.fixture(scope="module")
def embedding(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("embeddings")
    return write_embedding(folder / f"{WORD}.safetensors", text_width(tiny_model_dir), vectors=2, seed=3)


@pytest.fixture(scope="module")
def easel_settings(tiny_model_dir: Path, embedding: Path, tiny_ip_adapter: Path, tiny_controlnet_dir: Path) -> Settings:
    return {"model": {"source": tiny_model_dir, "name": "tiny", "family": "sd15", "steps": 3, "guidance": 5.0,
                      "embeddings": [{"name": WORD, "source": embedding}],
                      "controlnets": [{"source": tiny_controlnet_dir, "mode": "canny"}],
                      "ip_adapter": {"source": tiny_ip_adapter, "subfolder": SUBFOLDER, "weight_name": WEIGHT_NAME,
                                     "strength": 0.6}}}


@pytest.fixture(scope="module")
def server(easel_bot: Easel) -> FakeDiscord:
    return easel_bot.server


def direct(source: Path, *, seed: int, embedding: Path | None = None, negative: str = "",
           style: Any = None, ip_adapter: Path | None = None, controlnet: Path | None = None,
           control_map: Any = None) -> Any:
    import torch
    from diffusers import ControlNetModel, StableDiffusionControlNetPipeline, StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(source, safety_checker=None, requires_safety_checker=False)
    kwargs: dict[str, Any] = {}
    if controlnet is not None:
        pipe = StableDiffusionControlNetPipeline.from_pipe(pipe, controlnet=ControlNetModel.from_pretrained(controlnet))
        kwargs["image"] = [control_map]
    pipe.set_progress_bar_config(disable=True)
    if embedding is not None:
        pipe.load_textual_inversion(str(embedding), token=WORD.lower())
        negative = negative.replace(WORD, WORD.lower())
    if ip_adapter is not None:
        pipe.load_ip_adapter(str(ip_adapter), subfolder=SUBFOLDER, weight_name=WEIGHT_NAME)
        pipe.set_ip_adapter_scale(0.6)
        kwargs["ip_adapter_image"] = style
    with torch.inference_mode():
        return pipe(prompt="a lighthouse", negative_prompt=negative or None, num_inference_steps=3, guidance_scale=5.0,
                    width=64, height=64, generator=[torch.Generator("cpu").manual_seed(seed)], **kwargs).images[0]


def posted(attachment: dict) -> np.ndarray:
    return np.asarray(decode(attachment["data"]).convert("RGB"), dtype=np.int16)


async def test_an_embedding_word_in_the_negative_prompt_draws_what_diffusers_draws_with_it(
        server: FakeDiscord, tiny_model_dir: Path, embedding: Path) -> None:
    record = await Member(server, "alice").slash("imagine", prompt="a lighthouse", negative=f"{WORD}, blurry", seed=5)
    attachment = result_attachment(await result_of(server, record))
    assert parse_parameters(read_parameters(attachment["data"]))["negative_prompt"] == f"{WORD}, blurry"
    expected = await asyncio.to_thread(direct, tiny_model_dir, seed=5, embedding=embedding, negative=f"{WORD}, blurry")
    assert np.abs(posted(attachment) - np.asarray(expected, dtype=np.int16)).max() <= 1
    # Guidance 5 uses the negative prompt: the same words without the embedding draw something else.
    plain = await asyncio.to_thread(direct, tiny_model_dir, seed=5, negative=f"{WORD}, blurry")
    assert np.abs(posted(attachment) - np.asarray(plain, dtype=np.int16)).max() > 8


async def test_a_style_reference_draws_what_diffusers_ip_adapter_draws(server: FakeDiscord, tiny_model_dir: Path,
                                                                       tiny_ip_adapter: Path) -> None:
    picture = png((64, 64), colour=(30, 60, 200))
    upload = server.attachment("look.png", picture)
    record = await Member(server, "bob").slash("imagine", prompt="a lighthouse", style_ref=upload, seed=6)
    attachment = result_attachment(await result_of(server, record))
    assert parse_parameters(read_parameters(attachment["data"]))["Style reference"] == "0.6"
    expected = await asyncio.to_thread(direct, tiny_model_dir, seed=6, style=decode(picture).convert("RGB"),
                                       ip_adapter=tiny_ip_adapter)
    assert np.abs(posted(attachment) - np.asarray(expected, dtype=np.int16)).max() <= 1


async def test_a_control_picture_draws_what_diffusers_controlnet_draws_and_shows_its_map(
        server: FakeDiscord, tiny_model_dir: Path, tiny_controlnet_dir: Path) -> None:
    from PIL import Image, ImageDraw

    from inference.control.preprocess import canny

    picture = Image.new("RGB", (64, 64), "black")
    ImageDraw.Draw(picture).rectangle((16, 16, 44, 44), fill="white")
    upload = server.attachment("edges.png", encode_png(picture))
    record = await Member(server, "carol").slash("imagine", prompt="a lighthouse", control=upload,
                                                 control_mode="canny", seed=7)
    message = await result_of(server, record)
    attachment = result_attachment(message)
    params = parse_parameters(read_parameters(attachment["data"]))
    assert (params["ControlNet"], params["Control strength"]) == ("canny", "1.0")
    shown = next(a for a in message["attachments"] if a["filename"] == "control.png")
    expected_map = canny(picture, (64, 64))
    assert np.array_equal(np.asarray(decode(shown["data"]).convert("RGB")), np.asarray(expected_map))
    expected = await asyncio.to_thread(direct, tiny_model_dir, seed=7, controlnet=tiny_controlnet_dir,
                                       control_map=expected_map)
    assert np.abs(posted(attachment) - np.asarray(expected, dtype=np.int16)).max() <= 1


def encode_png(image: Any) -> bytes:
    import io

    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()
