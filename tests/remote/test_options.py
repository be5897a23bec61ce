"""Options the Inference API cannot honour (timestep spacing, eta, a sampler for /vary) are refused
before queueing with a clear message, and never sent half-honoured; style presets and the
text-to-image sampler go through."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from PIL import Image

from config import Config
from inference.engine import Engine
from inference.jobs import ImageToImageJob
from inference.prepare import PreparedJob
from inference.remote import RemoteClient, RemoteUnsupported
from studio import Studio
from tests.remote.conftest import TOKEN
from tests.remote.fake_api import FakeInferenceAPI
from tests.remote.helpers import t2i


def vary(**kw: Any) -> ImageToImageJob:
    return ImageToImageJob(job_id="v1", owner=1, prompt="as a watercolour", width=64, height=64, steps=4, seed=3,
                           model="sdxl-turbo", init_image="unused.png", strength=0.5, **kw)


@pytest.mark.parametrize(
    ("job", "message"),
    [
        (t2i("j", spacing="trailing"), "Timestep spacing (`spacing`) is not available on this bot"),
        (t2i("j", scheduler="ddim", eta=0.5), "`eta` is not available on this bot"),
        (vary(scheduler="euler"), "Choosing a sampler (`scheduler`) works only with /imagine on this bot"),
        (t2i("j", scheduler="dpmpp_2m_karras"), "The dpmpp_2m_karras sampler is not available on this bot"),
        (t2i("j", prompt="a (red:1.5) fox"), "Prompt weighting (`(word:1.3)`"),
        (t2i("j", negative_prompt="blurry BREAK dark"), "Prompt weighting (`(word:1.3)`"),
        (t2i("j", tile=True), "Seamless tiling (`tile`) is not available on this bot"),
    ],
)
async def test_options_the_api_cannot_take_are_refused_before_queueing(config: Config, make_executor: Any,
                                                                       job: Any, message: str) -> None:
    studio = Studio(config, engine=Engine(config, make_executor(config)))
    reason = studio.refusal(job)
    assert reason is not None and reason.startswith(message) and "Inference API" in reason


async def test_a_sampler_and_a_style_go_through_for_imagine(config: Config, make_executor: Any) -> None:
    studio = Studio(config, engine=Engine(config, make_executor(config)))
    assert studio.refusal(t2i("j", scheduler="tcd", style="anime", prompt="a fox, anime style")) is None
    assert studio.refusal(vary(style="anime")) is None


def test_a_job_with_such_options_is_never_sent(config: Config, api: FakeInferenceAPI) -> None:
    """A job queued with spacing before the bot was switched to the remote backend fails clearly."""
    client = RemoteClient(config.remote, TOKEN)
    with pytest.raises(RemoteUnsupported, match="spacing"):
        client.generate(PreparedJob(vary(spacing="trailing"), Image.new("RGB", (64, 64))), 3, None, "sdxl-turbo",
                        threading.Event())
    assert api.seen == []
