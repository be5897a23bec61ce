"""A job made again names its original's input files: a plain job has no control picture (None); an
empty name is one its owner deleted with /forget, and refuses the redo."""

from __future__ import annotations

import pytest

from cogs.utils.launch import check_sources
from inference.jobs import ImageToImageJob, JobError, TextToImageJob


async def test_a_plain_imagine_job_names_no_input_and_passes() -> None:
    await check_sources(TextToImageJob(job_id="a", owner=1, prompt="x"), [])


async def test_a_control_job_whose_picture_was_forgotten_is_refused() -> None:
    job = TextToImageJob(job_id="a", owner=1, prompt="x", control_image="", control_mode="canny")
    with pytest.raises(JobError, match="deleted by its owner"):
        await check_sources(job, [])


async def test_a_variation_whose_source_was_forgotten_is_still_refused() -> None:
    with pytest.raises(JobError, match="deleted by its owner"):
        await check_sources(ImageToImageJob(job_id="a", owner=1, prompt="x", init_image=""), [])
