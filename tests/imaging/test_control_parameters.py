"""The PNG parameters of a ControlNet job name its mode and strength; a plain job's text is as before."""

from __future__ import annotations

from inference.imaging import parse_parameters
from inference.jobs import TextToImageJob
from studio_results import parameters_text


def job(**kw: object) -> TextToImageJob:
    return TextToImageJob(job_id="j1", owner=1, prompt="a fox", width=64, height=64, steps=4, guidance=0.0, seed=7,
                          model="tiny", **kw)  # type: ignore[arg-type]


def test_a_control_job_writes_its_mode_and_strength() -> None:
    text = parameters_text(job(control_image="in.png", control_mode="canny", control_strength=0.75), 7, 64, 64,
                           "Euler")
    assert text.endswith("ControlNet: canny, Control strength: 0.75")
    parsed = parse_parameters(text)
    assert (parsed["ControlNet"], parsed["Control strength"], parsed["Seed"]) == ("canny", "0.75", "7")


def test_a_plain_job_text_is_unchanged() -> None:
    text = parameters_text(job(), 7, 64, 64, "Euler")
    assert text == ("a fox\nSteps: 4, Sampler: Euler, CFG scale: 0.0, Seed: 7, Size: 64x64, Model: tiny, "
                    "easel job: j1, easel kind: imagine")
