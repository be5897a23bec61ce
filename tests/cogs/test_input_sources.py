"""A job made again checks its input files: None is "has none", "" is "its owner deleted it"."""

from __future__ import annotations

import pytest

from cogs.utils.launch import check_sources
from inference.jobs import JobError, TextToImageJob


async def test_a_job_without_control_or_style_pictures_needs_no_files() -> None:
    await check_sources(TextToImageJob(job_id="j", owner=1, prompt="a fox"), [])


@pytest.mark.parametrize("field", ["control_image", "style_image"])
async def test_a_redo_whose_control_or_style_picture_was_forgotten_is_refused(field: str) -> None:
    job = TextToImageJob(job_id="j", owner=1, prompt="a fox", **{field: ""})
    with pytest.raises(JobError, match="deleted by its owner"):
        await check_sources(job, [])


async def test_a_redo_whose_style_picture_is_gone_from_disk_is_refused(tmp_path) -> None:
    job = TextToImageJob(job_id="j", owner=1, prompt="a fox", style_image=str(tmp_path / "gone.png"))
    with pytest.raises(JobError, match="no longer stored"):
        await check_sources(job, [])
