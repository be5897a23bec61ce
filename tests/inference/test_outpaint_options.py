"""The zoom-out / pan job: an InpaintJob at the canvas size with the source's settings, its note
kept through the job log, and clear refusals."""

from __future__ import annotations

import pytest

from inference.jobs import InpaintJob, JobError, job_from_params
from inference.outpaint_options import NO_INPAINT, build_outpaint
from inference.presets import PRESETS
from inference.validation import ModelInfo

SD15 = ModelInfo("sd15", PRESETS["sd15"])
SOURCE = {"init_image": "/o/canvas.png", "mask_image": "/o/mask.png", "prompt": "a fox", "negative": "blurry",
          "seed": 12, "steps": 25, "guidance": 7.0}


def test_the_job_runs_at_the_canvas_size_with_the_sources_settings_and_full_strength() -> None:
    draft = build_outpaint("j1", 7, SD15, canvas_size=(768, 512), scheduler="ddim", spacing="trailing", eta=0.3,
                           note="Panned left.", **SOURCE)
    job = draft.job
    assert isinstance(job, InpaintJob)
    assert (job.width, job.height, job.strength, job.count) == (768, 512, 1.0, 1)
    assert (job.prompt, job.negative_prompt, job.seed, job.steps, job.guidance) == ("a fox", "blurry", 12, 25, 7.0)
    assert (job.scheduler, job.spacing, job.eta, job.note) == ("ddim", "trailing", 0.3, "Panned left.")
    assert job_from_params("j1", 7, job.to_params()) == job


def test_a_paint_job_logged_before_the_note_existed_still_loads() -> None:
    params = InpaintJob(job_id="old", owner=1, prompt="x").to_params()
    del params["note"]
    assert job_from_params("old", 1, params).note == ""


def test_a_model_that_cannot_inpaint_is_refused_with_a_clear_message() -> None:
    with pytest.raises(JobError) as info:
        build_outpaint("j1", 7, SD15, canvas_size=(512, 512), can_inpaint=False, **SOURCE)
    assert str(info.value) == NO_INPAINT and "inpainting decoder" in NO_INPAINT


def test_a_canvas_not_planned_for_the_model_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        build_outpaint("j1", 7, SD15, canvas_size=(1536, 512), **SOURCE)
    with pytest.raises(ValueError):
        build_outpaint("j1", 7, SD15, canvas_size=(500, 512), **SOURCE)
