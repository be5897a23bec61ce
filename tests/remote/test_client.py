"""The remote client against the fake Inference API: requests as the API expects them, and every
way a request can go wrong ending in one clear message (or a successful retry)."""

from __future__ import annotations

import dataclasses
import socket
import threading
from pathlib import Path

import huggingface_hub
import pytest
from huggingface_hub import constants as hf_constants
from huggingface_hub.utils._http import default_client_factory
from PIL import Image

from config import Config, RemoteConfig
from inference.jobs import ImageToImageJob, InpaintJob, JobKind, TextToImageJob
from inference.prepare import PreparedJob
from inference.remote import PAINT_UNSUPPORTED, RemoteClient, RemoteError, RemoteUnsupported
from inference.remote import errors as E
from inference.remote.retry import Stopped
from tests.remote.conftest import TOKEN
from tests.remote.fake_api import (
    FakeInferenceAPI,
    Reply,
    error,
    json_instead_of_image,
    loading,
    rate_limited,
    seed_colour,
)


def t2i(**kw: object) -> TextToImageJob:
    params: dict[str, object] = {"job_id": "j1", "owner": 1, "prompt": "a red fox in the snow", "width": 64,
                                 "height": 64, "steps": 2, "guidance": 0.0, "seed": 5, "model": "sdxl-turbo"}
    params.update(kw)
    return TextToImageJob(**params)  # type: ignore[arg-type]


def make(client: RemoteClient, job: TextToImageJob | ImageToImageJob | InpaintJob, *,
         init: Image.Image | None = None, stop: threading.Event | None = None, model_id: str | None = None
         ) -> Image.Image:
    prepared = PreparedJob(job, init_image=init, mask_image=Image.new("L", init.size) if init and
                           isinstance(job, InpaintJob) else None)
    return client.generate(prepared, job.seed, model_id, "sdxl-turbo", stop or threading.Event())


@pytest.fixture
def client(config: Config) -> RemoteClient:
    return RemoteClient(config.remote, TOKEN)


def test_text_to_image_sends_the_jobs_settings_and_returns_its_image(client: RemoteClient, api: FakeInferenceAPI) -> None:
    image = make(client, t2i(width=96, height=64, seed=11, negative_prompt="blurry", scheduler="euler_a",
                             guidance=1.5))
    assert image.mode == "RGB" and image.size == (96, 64)
    assert image.getpixel((0, 0)) == seed_colour(11)
    (seen,) = api.seen
    assert seen.payload["inputs"] == "a red fox in the snow"
    assert seen.parameters == {"width": 96, "height": 64, "seed": 11, "num_inference_steps": 2, "guidance_scale": 1.5,
                               "negative_prompt": "blurry", "scheduler": "EulerAncestralDiscreteScheduler"}
    assert seen.headers["authorization"] == f"Bearer {TOKEN}"
    assert seen.headers["accept"] == "image/png"


def test_image_to_image_sends_the_source_image_strength_and_size(client: RemoteClient, api: FakeInferenceAPI) -> None:
    source = Image.new("RGB", (64, 64), (0, 0, 255))
    job = ImageToImageJob(job_id="v1", owner=1, prompt="as a watercolour", width=64, height=64, steps=4,
                          guidance=0.0, seed=3, model="sdxl-turbo", init_image="unused.png", strength=0.5)
    image = make(client, job, init=source)
    assert image.getpixel((10, 10)) == seed_colour(3)
    (seen,) = api.seen
    assert seen.input_image.convert("RGB").getpixel((5, 5)) == (0, 0, 255)
    assert seen.parameters == {"prompt": "as a watercolour", "target_size": {"width": 64, "height": 64},
                               "strength": 0.5, "seed": 3, "num_inference_steps": 4, "guidance_scale": 0.0}


def test_a_loading_model_is_waited_for_as_the_api_estimates(client: RemoteClient, api: FakeInferenceAPI) -> None:
    api.expect(loading(0.01), loading(0.01))
    assert make(client, t2i()).size == (64, 64)
    assert len(api.seen) == 3


def test_a_rate_limit_is_waited_out_as_retry_after_says(client: RemoteClient, api: FakeInferenceAPI) -> None:
    api.expect(rate_limited("0"), error(502, "Bad Gateway"))
    assert make(client, t2i()).size == (64, 64)
    assert len(api.seen) == 3


def test_a_wait_longer_than_max_wait_is_not_waited_for(client: RemoteClient, api: FakeInferenceAPI) -> None:
    api.expect(rate_limited("120"))
    with pytest.raises(RemoteError) as info:
        make(client, t2i())
    assert str(info.value) == E.RATE_LIMITED
    assert len(api.seen) == 1


def test_when_retries_run_out_the_member_hears_the_last_reason(client: RemoteClient, api: FakeInferenceAPI) -> None:
    api.expect(loading(0.01), loading(0.01), loading(0.01))
    with pytest.raises(RemoteError) as info:
        make(client, t2i())
    assert str(info.value) == E.LOADING
    assert len(api.seen) == 3  # the first attempt and remote.retries = 2


@pytest.mark.parametrize("reply", [json_instead_of_image(), Reply(truncate=True)], ids=["json", "truncated"])
def test_a_body_that_is_not_an_image_is_retried_then_reported(client: RemoteClient, api: FakeInferenceAPI,
                                                              reply: Reply) -> None:
    api.expect(reply)
    assert make(client, t2i()).size == (64, 64)
    api.expect(reply, dataclasses.replace(reply), dataclasses.replace(reply))
    with pytest.raises(RemoteError) as info:
        make(client, t2i())
    assert str(info.value) == E.NOT_AN_IMAGE


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (error(402, "You have exceeded your monthly included credits"), E.OUT_OF_CREDITS),
        (error(403, "Forbidden"), "may not use the model sdxl-turbo"),
        (error(404, "Model not found"), "does not offer the model sdxl-turbo"),
        (error(422, "Input validation error: `width` must be a multiple of 64"),
         "refused these settings: Input validation error: 'width' must be a multiple of 64."),
        (Reply(400, b"plain text complaint", "text/plain"), "refused these settings: plain text complaint."),
        (error(418, "teapot"), "could not make this image (HTTP 418)"),
    ],
)
def test_refusals_are_not_retried_and_say_what_to_do(client: RemoteClient, api: FakeInferenceAPI, reply: Reply,
                                                     expected: str) -> None:
    api.expect(reply)
    with pytest.raises(RemoteError) as info:
        make(client, t2i())
    assert expected in str(info.value)
    assert len(api.seen) == 1


def test_a_bad_token_is_refused_once_with_a_message_for_the_admins(config: Config, api: FakeInferenceAPI) -> None:
    with pytest.raises(RemoteError) as info:
        make(RemoteClient(config.remote, "hf_wrong"), t2i())
    assert str(info.value) == E.TOKEN_REFUSED
    assert len(api.seen) == 1


def test_a_service_slower_than_the_timeout_fails_without_retrying(config: Config, api: FakeInferenceAPI) -> None:
    slow = RemoteClient(dataclasses.replace(config.remote, timeout_s=0.3), TOKEN)
    api.expect(Reply(delay_s=1.5))
    with pytest.raises(RemoteError) as info:
        make(slow, t2i())
    assert str(info.value) == "The image service did not answer within 0.3 seconds. Please try again later."
    assert len(api.seen) == 1


def test_an_unreachable_service_is_retried_then_reported(config: Config) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once the socket is closed
    closed = RemoteClient(dataclasses.replace(config.remote, base_url=f"http://127.0.0.1:{port}/x"), TOKEN)
    with pytest.raises(RemoteError) as info:
        make(closed, t2i())
    assert str(info.value) == E.UNREACHABLE


def test_offline_mode_is_named_instead_of_a_network_error(client: RemoteClient, api: FakeInferenceAPI,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    huggingface_hub.set_client_factory(default_client_factory)  # the hub's own session honours HF_HUB_OFFLINE
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(RemoteError) as info:
        make(client, t2i())
    assert str(info.value) == E.OFFLINE
    assert api.seen == []


def test_inpainting_is_refused_before_anything_is_sent(client: RemoteClient, api: FakeInferenceAPI,
                                                        tmp_path: Path) -> None:
    job = InpaintJob(job_id="p1", owner=1, prompt="a hat", width=64, height=64, steps=2, model="sdxl-turbo",
                     init_image="a.png", mask_image="m.png")
    assert client.unsupported(JobKind.PAINT) == PAINT_UNSUPPORTED
    with pytest.raises(RemoteUnsupported) as info:
        make(client, job, init=Image.new("RGB", (64, 64)))
    assert str(info.value) == PAINT_UNSUPPORTED
    assert api.seen == []


def test_a_provider_without_image_to_image_refuses_vary_by_name() -> None:
    nscale = RemoteClient(RemoteConfig(provider="nscale"), TOKEN)
    message = nscale.unsupported(JobKind.VARY)
    assert message is not None and "(nscale)" in message and "/imagine still works" in message
    assert nscale.unsupported(JobKind.IMAGINE) is None
    job = ImageToImageJob(job_id="v1", owner=1, width=64, height=64, model="sdxl-turbo", init_image="a.png")
    with pytest.raises(RemoteUnsupported):
        make(nscale, job, init=Image.new("RGB", (64, 64)), model_id="stabilityai/sdxl-turbo")
    for provider in ("fal-ai", "auto"):  # can do it / can only be found out by asking
        assert RemoteClient(RemoteConfig(provider=provider), TOKEN).unsupported(JobKind.VARY) is None


def test_a_provider_the_library_does_not_know_is_reported_for_the_admins() -> None:
    odd = RemoteClient(RemoteConfig(provider="no-such-provider"), TOKEN)
    with pytest.raises(RemoteError) as info:
        make(odd, t2i(), model_id="stabilityai/sdxl-turbo")
    assert "'no-such-provider'" in str(info.value) and "remote.provider" in str(info.value)


def test_a_provider_needing_a_token_without_one_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub.inference._providers import _common

    monkeypatch.setattr(_common, "get_token", lambda: None)  # no stored login on this machine either
    with pytest.raises(RemoteError) as info:
        make(RemoteClient(RemoteConfig(provider="fal-ai"), None), t2i(), model_id="stabilityai/sdxl-turbo")
    assert str(info.value) == E.NO_TOKEN


def test_cancelling_ends_a_wait_for_a_loading_model(client: RemoteClient, api: FakeInferenceAPI) -> None:
    api.expect(loading(0.9))
    stop = threading.Event()
    watcher = threading.Thread(target=lambda: (_wait_for(lambda: len(api.seen) == 1), stop.set()))
    watcher.start()
    with pytest.raises(Stopped):
        make(client, t2i(), stop=stop)
    watcher.join()
    assert len(api.seen) == 1


def _wait_for(condition: object, limit: float = 10.0) -> None:
    event = threading.Event()
    for _ in range(int(limit / 0.01)):
        if condition():  # type: ignore[operator]
            return
        event.wait(0.01)
    raise AssertionError("condition not reached")
