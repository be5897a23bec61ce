"""Through the in-process bot on the remote backend: options the Inference API cannot take are
refused privately before anything is queued; a style and the /imagine sampler go through."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from config import Config
from tests.cogs.conftest import simcord_bot, simcord_env  # noqa: F401 - the in-process bot's fixtures
from tests.cogs.helpers import final, make_world, png, refusal
from tests.remote.conftest import TOKEN, write_config
from tests.remote.fake_api import FakeInferenceAPI


@pytest.fixture
def bot_config(tmp_path: Path, api: FakeInferenceAPI, anime_weights: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    config = write_config(tmp_path, api.url)
    return dataclasses.replace(
        config, discord=dataclasses.replace(config.discord, progress_interval_s=0.0),
        anime=dataclasses.replace(config.anime, cache_dir=str(tmp_path / "anime"), device="cpu",
                                  weights={"face_paint_512_v2": str(anime_weights)}))


@pytest.mark.parametrize(("command", "options", "message"), [
    ("imagine", {"spacing": "trailing"}, "Timestep spacing (`spacing`) is not available on this bot"),
    ("imagine", {"scheduler": "ddim", "eta": 0.2}, "`eta` is not available on this bot"),
    ("imagine", {"tile": True}, "Seamless tiling (`tile`) is not available on this bot"),
    ("vary", {"scheduler": "euler"}, "Choosing a sampler (`scheduler`) works only with /imagine on this bot"),
])
async def test_options_the_service_cannot_take_are_refused_privately(simcord_env, api: FakeInferenceAPI, command: str,  # noqa: F811
                                                                     options: dict[str, object], message: str) -> None:
    w = make_world(simcord_env)
    if command == "vary":
        options = {"image": ("src.png", png((64, 64))), **options}
    result = await w.alice.slash(w.channel, command, prompt="a fox", **options)
    assert refusal(result).startswith(message)
    assert api.seen == []


async def test_a_style_and_an_imagine_sampler_go_through(simcord_env, api: FakeInferenceAPI) -> None:  # noqa: F811
    w = make_world(simcord_env)
    message = await final(await w.alice.slash(w.channel, "imagine", prompt="a fox", scheduler="euler_a",
                                              style="watercolor", seed=3))
    assert message.attachments
    (seen,) = api.seen
    assert seen.payload["inputs"] == "a fox, watercolor painting, soft washes, paper texture"
    assert seen.parameters["scheduler"] == "EulerAncestralDiscreteScheduler"
