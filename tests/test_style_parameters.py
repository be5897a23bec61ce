"""A style job's PNG parameters name its reference's strength; a plain job's text is unchanged."""

from __future__ import annotations

from inference.imaging import parse_parameters
from inference.jobs import TextToImageJob
from studio_results import parameters_text


def text(**kw: object) -> str:
    job = TextToImageJob(job_id="j1", owner=1, prompt="a red fox", width=64, height=64, steps=4, seed=3,
                         model="tiny", **kw)  # type: ignore[arg-type]
    return parameters_text(job, 3, 64, 64, "Euler")


def test_a_style_job_says_style_reference_and_its_strength() -> None:
    params = parse_parameters(text(style_image="inputs/look.png", style_strength=0.35))
    assert params["Style reference"] == "0.35"
    assert "look.png" not in text(style_image="inputs/look.png")  # the member's file name stays private


def test_a_plain_job_says_nothing_of_style_references() -> None:
    assert text() == ("a red fox\nSteps: 4, Sampler: Euler, CFG scale: 0.0, Seed: 3, Size: 64x64, Model: tiny, "
                      "easel job: j1, easel kind: imagine")
