"""/imagine's control options checked against the model: modes it has, strengths, refusals that
say what would work."""

from __future__ import annotations

import pytest

from config import ControlNetConfig, ModelConfig
from inference.jobs import JobError, TextToImageJob
from inference.presets import PRESETS
from inference.validation import ModelInfo, build_imagine, describe_model

TWO_MODES = ModelInfo("sd15", PRESETS["sd15"], None, controls={"canny": 0.8, "depth": 1.0})
ONE_MODE = ModelInfo("sd15", PRESETS["sd15"], None, controls={"scribble": 0.6})
NO_MODES = ModelInfo("plain", PRESETS["sd15"])
KANDINSKY = ModelInfo("kandy", PRESETS["kandinsky22"], None, controls={"canny": 1.0})


def imagine(info: ModelInfo, **kw: object):
    return build_imagine("j1", 1, info, prompt="a red fox", **kw).job  # type: ignore[arg-type]


def test_a_control_picture_with_a_mode_and_strength_makes_a_control_job() -> None:
    job = imagine(TWO_MODES, control_image="in/x.png", control_mode="depth", control_strength=1.5)
    assert (job.control_image, job.control_mode, job.control_strength) == ("in/x.png", "depth", 1.5)


def test_the_strength_defaults_to_the_configured_one_and_a_lone_mode_needs_no_naming() -> None:
    assert (imagine(TWO_MODES, control_image="x.png", control_mode="Canny").control_strength) == 0.8
    job = imagine(ONE_MODE, control_image="x.png")
    assert (job.control_mode, job.control_strength) == ("scribble", 0.6)


def test_a_plain_request_stays_plain() -> None:
    job = imagine(TWO_MODES)
    assert (job.control_image, job.control_mode, job.control_strength) == (None, "", 1.0)


@pytest.mark.parametrize(("info", "options", "message"), [
    (TWO_MODES, {"control_image": "x.png", "control_mode": "pose"},
     "Model sd15 has no ControlNet for 'pose'; its modes are: canny, depth."),
    (TWO_MODES, {"control_image": "x.png"}, "pick a `control_mode` (canny, depth)"),
    (NO_MODES, {"control_image": "x.png"}, "Model plain has no ControlNet"),
    (KANDINSKY, {"control_image": "x.png"}, "Model kandy (Kandinsky 2.2) cannot follow a control picture"),
    (TWO_MODES, {"control_image": "x.png", "control_mode": "canny", "control_strength": 2.5},
     "The control strength must be between 0 and 2."),
    (TWO_MODES, {"control_mode": "canny"}, "attach one with `control`"),
    (TWO_MODES, {"control_strength": 0.5}, "attach one with `control`"),
])
def test_control_refusals_say_what_would_work(info: ModelInfo, options: dict, message: str) -> None:
    with pytest.raises(JobError) as err:
        imagine(info, **options)
    assert message in str(err.value)


def test_the_models_controlnets_reach_validation_from_its_config() -> None:
    cfg = ModelConfig(source="org/m", controlnets=(ControlNetConfig(source="org/c", mode="canny", strength=0.5),
                                                   ControlNetConfig(source="org/l", mode="lineart")))
    info = describe_model(cfg, PRESETS["sd15"])
    assert dict(info.controls) == {"canny": 0.5, "lineart": 1.0}


def test_the_remote_backend_refuses_a_control_job_made_on_the_local_one() -> None:
    """Validation never offers control there (no ControlNets can be configured): a Redo of an older job can."""
    from config import RemoteConfig
    from inference.remote.client import NO_OPTION, RemoteClient

    client = RemoteClient(RemoteConfig(base_url="http://127.0.0.1:9"), "hf_test")
    job = TextToImageJob(job_id="j", owner=1, prompt="a fox", control_image="in.png", control_mode="canny")
    refusal = client.unsupported_options(job)
    assert refusal is not None and "`control`" in refusal and NO_OPTION in refusal
    assert client.unsupported_options(TextToImageJob(job_id="j", owner=1, prompt="a fox")) is None
