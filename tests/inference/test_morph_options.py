"""/morph's options into a MorphJob, or one clear sentence."""

from __future__ import annotations

import pytest

from inference.jobs import JobError, MorphJob
from inference.morph_options import build_morph
from inference.morph_plan import steps_run, strengths
from inference.presets import KANDINSKY, PRESETS
from inference.validation import ModelInfo

SD15 = ModelInfo("sd15", PRESETS["sd15"])


def test_a_sweep_gets_enough_steps_for_every_frame_to_differ_and_says_so() -> None:
    info = ModelInfo("sd15", PRESETS["sd15"])
    draft = build_morph("m1", 1, info, init_image="/o/a.png", source_size=(640, 480), steps=4, frames=8)
    job = draft.job
    assert isinstance(job, MorphJob) and (job.strength_from, job.strength_to, job.frames) == (0.1, 0.9, 8)
    assert len({steps_run(job.steps, s) for s in strengths(0.1, 0.9, 8)}) == 8
    assert any("Steps raised from 4" in n for n in draft.notes)
    assert job.width > job.height  # the source's aspect


def test_a_prompt_morph_is_square_at_the_models_size_and_needs_both_prompts() -> None:
    job = build_morph("m2", 1, SD15, prompt="a fox", to_prompt="an owl", frames=4).job
    assert job.init_image is None and job.to_prompt == "an owl" and job.width == job.height == SD15.preset.size
    with pytest.raises(JobError, match="prompt is empty"):
        build_morph("m3", 1, SD15, to_prompt="an owl")


@pytest.mark.parametrize(("options", "expected"), [
    ({"frames": 1}, "2 to 16 frames"),
    ({"frames": 17}, "2 to 16 frames"),
    ({"strength_from": 0.5, "strength_to": 0.5}, "must be below"),
    ({"strength_from": 0.01}, "from 0.05 to 1"),
])
def test_out_of_range_options_are_explained(options: dict[str, float], expected: str) -> None:
    with pytest.raises(JobError, match=expected):
        build_morph("m4", 1, SD15, init_image="/o/a.png", source_size=(64, 64), **options)  # type: ignore[arg-type]


def test_kandinsky_models_cannot_morph_yet() -> None:
    kandinsky = ModelInfo("kandy", PRESETS[KANDINSKY])
    with pytest.raises(JobError, match="Kandinsky"):
        build_morph("m5", 1, kandinsky, init_image="/o/a.png", source_size=(64, 64))


@pytest.mark.parametrize("family", ["sd-turbo", "sdxl-turbo"])
def test_a_sweep_on_a_turbo_model_starts_where_its_first_frame_still_gets_a_step(family: str) -> None:
    """Turbo models run at most 8 steps: at the usual first strength 0.1 the first frame would get none
    (what 🎞️ under every Turbo result asked for, and failed)."""
    turbo = ModelInfo("turbo", PRESETS[family])
    job = build_morph("m6", 1, turbo, init_image="/o/a.png", source_size=(64, 64), steps=1).job
    assert isinstance(job, MorphJob) and job.strength_from == 0.13 and job.strength_to == 0.9
    assert steps_run(job.steps, job.strength_from) >= 1 and job.steps <= PRESETS[family].max_steps


def test_a_prompt_morph_refuses_strengths_instead_of_ignoring_them() -> None:
    with pytest.raises(JobError, match="a prompt morph has none"):
        build_morph("m7", 1, SD15, prompt="a fox", to_prompt="an owl", strength_from=0.3)
