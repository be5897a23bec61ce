"""/imagine's style_ref options become job fields or one clear private message."""

from __future__ import annotations

import dataclasses

import pytest

from config import IpAdapterConfig, ModelConfig
from inference.jobs import JobError, TextToImageJob
from inference.presets import PRESETS
from inference.remote.client import NO_OPTION
from inference.validation import ModelInfo, build_imagine, describe_model

PLAIN = ModelInfo("sd15", PRESETS["sd15"])
STYLED = dataclasses.replace(PLAIN, style_ref=True, style_strength=0.7)
KANDINSKY = ModelInfo("kandinsky", PRESETS["kandinsky22"])


def imagine(info: ModelInfo, **kw: object) -> TextToImageJob:
    return build_imagine("j1", 1, info, prompt="a red fox", **kw).job  # type: ignore[arg-type]


def test_a_reference_takes_the_models_default_strength_or_the_members() -> None:
    job = imagine(STYLED, style_image="inputs/look.png")
    assert (job.style_image, job.style_strength) == ("inputs/look.png", 0.7)
    assert imagine(STYLED, style_image="inputs/look.png", style_strength=0.0).style_strength == 0.0
    assert imagine(STYLED).style_image is None


@pytest.mark.parametrize(("info", "options", "message"), [
    (PLAIN, {"style_image": "look.png"}, "no style reference configured; ask an admin"),
    (KANDINSKY, {"style_image": "look.png"}, "Kandinsky 2.2 models take no style reference"),
    (STYLED, {"style_image": "look.png", "style_strength": 1.5}, "must be between 0 and 1"),
    (STYLED, {"style_image": "look.png", "style_strength": -0.1}, "must be between 0 and 1"),
    (STYLED, {"style_strength": 0.5}, "needs a `style_ref` picture"),
])
def test_refusals_are_one_clear_line(info: ModelInfo, options: dict[str, object], message: str) -> None:
    with pytest.raises(JobError, match=message) as err:
        imagine(info, **options)
    assert "\n" not in str(err.value)


def test_the_model_info_says_whether_an_ip_adapter_is_configured() -> None:
    with_ip = ModelConfig(source="x/y", ip_adapter=IpAdapterConfig(source="h94/IP-Adapter", strength=0.4))
    info = describe_model(with_ip, PRESETS["sd15"])
    assert (info.style_ref, info.style_strength) == (True, 0.4)
    assert not describe_model(ModelConfig(source="x/y"), PRESETS["sd15"]).style_ref


def test_the_remote_backend_refuses_a_style_reference() -> None:
    from config import RemoteConfig
    from inference.remote.client import RemoteClient

    client = RemoteClient(RemoteConfig(base_url="http://127.0.0.1:9"), "hf_test")
    refusal = client.unsupported_options(TextToImageJob(job_id="j", owner=1, prompt="a fox", style_image="look.png"))
    assert refusal is not None and "`style_ref`" in refusal and NO_OPTION in refusal
    assert client.unsupported_options(TextToImageJob(job_id="j", owner=1, prompt="a fox")) is None
