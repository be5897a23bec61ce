"""The studio without Discord: a job is in the log before it is queued, results are stored with
their parameters, refused jobs are not queued, retention prunes in the background."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path

import pytest

from config import Config
from inference.imaging import parse_parameters, read_parameters
from inference.jobs import QueueRefused, TextToImageJob
from studio import JobDone, RequestContext, Studio, StudioEvent


@pytest.fixture
async def studio(tiny_config: Config, tmp_path: Path):
    config = dataclasses.replace(tiny_config, base_dir=tmp_path)
    s = Studio(config)
    await s.start(warm_up=False)
    yield s
    await s.close()


def job(job_id: str, owner: int = 1, **kw: object) -> TextToImageJob:
    return TextToImageJob(job_id=job_id, owner=owner, prompt="a quiet harbour", width=64, height=64, steps=2,
                          model="tiny", seed=9, **kw)  # type: ignore[arg-type]


async def done_event(studio: Studio, job_id: str) -> JobDone:
    loop = asyncio.get_running_loop()
    got: asyncio.Future[JobDone] = loop.create_future()

    def listen(event: StudioEvent) -> None:
        if isinstance(event, JobDone) and event.job_id == job_id and not got.done():
            got.set_result(event)

    studio.add_listener(listen)
    return await asyncio.wait_for(got, 60)


async def test_a_job_is_logged_as_queued_before_it_runs_and_stored_when_done(studio: Studio) -> None:
    waiter = asyncio.create_task(done_event(studio, "j1"))
    await asyncio.sleep(0)
    await studio.submit(job("j1"), RequestContext(user_id=1, guild_id=5, channel_id=6))
    row = await studio.database.jobs.get("j1")
    assert row is not None and row.status in ("queued", "running", "done")
    done = await waiter
    assert (await studio.database.jobs.get("j1")).status == "done"
    images = await studio.database.images.for_job("j1")
    assert [im.seed for im in images] == [9] and Path(images[0].path).exists()
    params = parse_parameters(read_parameters(Path(images[0].path).read_bytes()) or "")
    assert params["prompt"] == "a quiet harbour" and params["Seed"] == "9" and params["Size"] == "64x64"
    assert done.images[0].path == Path(images[0].path)


async def test_a_refused_job_is_never_written(studio: Studio) -> None:
    for i in range(studio.config.queue.per_user):
        studio.engine.queue.put(job(f"held{i}", owner=2))
    with pytest.raises(QueueRefused):
        await studio.submit(job("late", owner=2), RequestContext(user_id=2, guild_id=None, channel_id=6))
    assert await studio.database.jobs.get("late") is None


async def test_retention_prunes_old_finished_jobs(studio: Studio) -> None:
    studio.config = dataclasses.replace(studio.config, storage=dataclasses.replace(studio.config.storage,
                                                                                   retention_days=1))
    waiter = asyncio.create_task(done_event(studio, "old"))
    await asyncio.sleep(0)
    await studio.submit(job("old"), RequestContext(user_id=3, guild_id=None, channel_id=6))
    await waiter
    assert await studio.database.jobs.begin_delivery("old")
    await studio.database.jobs.mark_delivered("old", channel_id=6, message_id=77)
    path = Path((await studio.database.images.for_job("old"))[0].path)
    report = await studio.database.prune(1, now=time.time() + 3 * 86400)
    assert report.jobs == 1 and path in report.files and not path.exists()


async def test_retention_runs_in_the_background_only_when_configured(tiny_config: Config, tmp_path: Path) -> None:
    config = dataclasses.replace(tiny_config, base_dir=tmp_path,
                                 storage=dataclasses.replace(tiny_config.storage, retention_days=30))
    s = Studio(config)
    await s.start(warm_up=False)
    try:
        assert s._retention is not None and not s._retention.done()  # noqa: SLF001
        await s.prune_once()
    finally:
        await s.close()
    assert s._retention.cancelled() or s._retention.done()  # noqa: SLF001
