"""The control map shown with a result is judged like the result; a member's own map is not re-posted."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import torch
from PIL import Image

from inference.control.loading import LoadedControl
from inference.control.run import control_call
from inference.generate import run_diffusion_batch
from inference.jobs import JobError, TextToImageJob
from inference.loader import LoadedModel
from inference.prepare import PreparedJob


class CheckedPipe:
    """A ControlNet pipeline stand-in whose safety checker flags every picture it is shown."""

    def __init__(self, flag: bool) -> None:
        self.safety_checker = SimpleNamespace(dtype=torch.float32)
        self._execution_device = torch.device("cpu")
        self.flag = flag
        self.shown: list[Any] = []
        self.scheduler = None

    def run_safety_checker(self, pixels: Any, device: Any, dtype: Any) -> tuple[Any, list[bool]]:
        self.shown.append(pixels)
        return pixels, [self.flag] * len(pixels)


def model_with(mode: str, pipe: Any, family: str = "sd15") -> LoadedModel:
    return LoadedModel(name="m", source="m", family=family, preset=None, device=torch.device("cpu"),  # type: ignore[arg-type]
                       dtype=torch.float32, pipes={}, controls={mode: LoadedControl(mode, "c", pipe)})


def prepared(mode: str, job_id: str = "j") -> PreparedJob:
    job = TextToImageJob(job_id=job_id, owner=1, prompt="a cat", width=64, height=64, control_mode=mode,
                         control_image="in.png")
    picture = Image.new("RGB", (80, 80), (255, 255, 255))
    picture.paste((0, 0, 0), (20, 20, 60, 60))
    return PreparedJob(job, control_image=picture)


@pytest.mark.parametrize("flag", [True, False])
def test_a_shown_map_gets_the_safety_checkers_verdict(flag: bool) -> None:
    pipe = CheckedPipe(flag)
    call = control_call(model_with("canny", pipe), [prepared("canny")], SimpleNamespace(scheduler=None))
    assert call is not None and len(pipe.shown) == 1
    assert call.flagged == {"j": flag} and [label for label, _ in call.extras["j"]] == ["control"]


def test_a_members_own_pose_map_is_used_but_not_posted_again() -> None:
    pipe = CheckedPipe(True)
    call = control_call(model_with("pose", pipe), [prepared("pose")], SimpleNamespace(scheduler=None))
    assert call is not None and len(call.kwargs["image"]) == 1
    assert call.extras == {} and call.flagged == {} and pipe.shown == []


def test_without_a_safety_checker_no_map_is_flagged() -> None:
    pipe = CheckedPipe(True)
    pipe.safety_checker = None
    call = control_call(model_with("lineart", pipe), [prepared("lineart")], SimpleNamespace(scheduler=None))
    assert call is not None and call.flagged == {"j": False} and pipe.shown == []


def test_a_control_job_that_meets_a_kandinsky_model_is_refused() -> None:
    with pytest.raises(JobError, match="Kandinsky"):
        run_diffusion_batch(model_with("canny", CheckedPipe(False), family="kandinsky22"), [prepared("canny")],
                            lambda *_: True)
