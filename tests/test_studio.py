"""The studio without Discord: a job is in the log before it is queued, results are stored with
their parameters, refused jobs are not queued, retention prunes in the background."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from config import Config
from inference.executor import internal_error_message
from inference.imaging import parse_parameters, read_parameters
from inference.jobs import Finished, JobResult, QueueRefused, Started, TextToImageJob
from storage import Database
from storage import png_writer as png_writer_module
from storage.images import NewImage
from studio import JobDone, JobFailed, JobStarted, RequestContext, Studio, StudioEvent


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


async def until(predicate: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_a_batch_is_recorded_together_and_an_image_that_cannot_be_saved_fails_only_its_job(
        studio: Studio, monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch's starts take one job-log write, its results one encoding trip and one write; a job
    whose image cannot be saved is failed with a message, its companions are delivered as usual."""
    for jid in "abc":  # in the log only: the studio reads them back from there
        await studio.database.jobs.add(job_id=jid, kind="imagine", user_id=1, guild_id=None, channel_id=6,
                                       params=job(jid).to_params())
    calls: list[tuple[list[str], str]] = []
    original = studio.database.jobs.set_statuses

    async def spy(job_ids: list[str], status: str, **kw: Any) -> None:
        calls.append((list(job_ids), status))
        await original(job_ids, status, **kw)

    monkeypatch.setattr(studio.database.jobs, "set_statuses", spy)
    original_record = studio.database.record_results

    async def record_spy(images: Any, job_ids: list[str], *, claim: bool = False) -> Any:
        calls.append((list(job_ids), "delivering" if claim else "done"))
        return await original_record(images, job_ids, claim=claim)

    monkeypatch.setattr(studio.database, "record_results", record_spy)
    events: list[StudioEvent] = []
    studio.add_listener(events.append)
    for jid in "abc":
        studio._on_engine_event(Started(jid))
    await until(lambda: sum(isinstance(e, JobStarted) for e in events) == 3)
    assert calls == [(["a", "b", "c"], "running")]

    good, bad = Image.new("RGB", (64, 64), "red"), Image.new("RGB", (64, 64), "blue")
    real_spec = png_writer_module.image_spec

    def spec(image: Image.Image, text: str | None) -> png_writer_module.ImageSpec:
        if image is bad:
            raise OSError("image file is truncated")
        return real_spec(image, text)

    monkeypatch.setattr(png_writer_module, "image_spec", spec)
    for jid, image in (("a", good), ("b", bad), ("c", good)):
        studio._on_engine_event(Finished(jid, JobResult(jid, (image,), (9,), 0.1)))
    await until(lambda: sum(isinstance(e, JobDone | JobFailed) for e in events) == 3)
    assert calls[1:] == [(["b"], "failed"), (["a", "c"], "done")]
    failed = [e for e in events if isinstance(e, JobFailed)]
    assert [e.job_id for e in failed] == ["b"] and failed[0].message == internal_error_message()
    assert [e.job_id for e in events if isinstance(e, JobDone)] == ["a", "c"]
    rows = {jid: await studio.database.jobs.get(jid) for jid in "abc"}
    assert {jid: r.status for jid, r in rows.items()} == {"a": "done", "b": "failed", "c": "done"}  # type: ignore[union-attr]
    assert [len(await studio.database.images.for_job(jid)) for jid in "abc"] == [1, 0, 1]


async def test_a_result_for_a_job_missing_from_the_log_is_dropped_and_its_companions_recorded(
        studio: Studio, caplog: pytest.LogCaptureFixture) -> None:
    await studio.database.jobs.add(job_id="kept", kind="imagine", user_id=1, guild_id=None, channel_id=6,
                                   params=job("kept").to_params())
    events: list[StudioEvent] = []
    studio.add_listener(events.append)
    for jid in ("ghost", "kept"):
        studio._on_engine_event(Finished(jid, JobResult(jid, (Image.new("RGB", (8, 8)),), (1,), 0.1)))
    await until(lambda: any(isinstance(e, JobDone) for e in events))
    assert [e.job_id for e in events] == ["kept"]
    assert "ghost finished but is no longer in the job log" in caplog.text
    assert await studio.database.images.for_job("ghost") == []


async def test_a_job_deleted_from_the_log_while_it_ran_is_dropped_without_its_companions(
        studio: Studio, caplog: pytest.LogCaptureFixture) -> None:
    """A member forgotten while their job ran in a batch: only their result is dropped; the other
    member's result in the same batch is still recorded and announced."""
    for jid, owner in (("gone", 7), ("kept", 8)):
        await studio.database.jobs.add(job_id=jid, kind="imagine", user_id=owner, guild_id=None, channel_id=6,
                                       params=job(jid, owner).to_params())
        studio._jobs[jid] = job(jid, owner)  # queued or running: the studio keeps it in memory
    await studio.database.forget(7)
    events: list[StudioEvent] = []
    studio.add_listener(events.append)
    for jid in ("gone", "kept"):
        studio._on_engine_event(Finished(jid, JobResult(jid, (Image.new("RGB", (8, 8)),), (1,), 0.1)))
    await until(lambda: bool(events) or "could not record" in caplog.text)
    assert [type(e).__name__ + ":" + e.job_id for e in events] == ["JobDone:kept"]
    assert "gone finished but is no longer in the job log" in caplog.text
    assert [i.job_id for i in await studio.database.images.for_job("kept")] == ["kept"]
    assert (await studio.database.jobs.get("kept")).status == "done"  # type: ignore[union-attr]
    assert await studio.database.jobs.get("gone") is None


async def test_a_start_that_cannot_be_written_is_logged_and_not_announced(
        studio: Studio, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    async def broken(job_ids: list[str], status: str, **kw: Any) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(studio.database.jobs, "set_statuses", broken)
    events: list[StudioEvent] = []
    studio.add_listener(events.append)
    studio._on_engine_event(Started("a"))
    studio._on_engine_event(Started("b"))
    await until(lambda: "could not record the start of job(s) a, b" in caplog.text)
    assert not events


async def test_results_recorded_for_a_poster_come_claimed_with_their_rows(studio: Studio) -> None:
    """With ``claim_for_posting`` (the Delivery cog sets it) a finished job is recorded as
    ``delivering`` in the same statement as ``done`` would be, and JobDone carries the row and
    image rows the poster would otherwise read back: nothing else may claim it, and a failed post
    puts it back to ``done``."""
    studio.claim_for_posting = True
    await studio.database.jobs.add(job_id="a", kind="imagine", user_id=1, guild_id=None, channel_id=6,
                                   params=job("a").to_params())
    events: list[StudioEvent] = []
    studio.add_listener(events.append)
    studio._on_engine_event(Finished("a", JobResult("a", (Image.new("RGB", (64, 64), "red"),), (9,), 0.1)))
    await until(lambda: any(isinstance(e, JobDone) for e in events))
    done = next(e for e in events if isinstance(e, JobDone))
    assert done.row is not None and done.row.status == "delivering" and done.row.finished_at is not None
    assert list(done.image_rows) == await studio.database.images.for_job("a")
    assert not await studio.database.jobs.begin_delivery("a")  # claimed already
    assert await studio.database.jobs.release_delivery("a")
    assert (await studio.database.jobs.get("a")).status == "done"  # type: ignore[union-attr]


# ---------------------------------------------------------------------------- the NSFW word flag


def with_words(config: Config, tmp_path: Path) -> Config:
    return dataclasses.replace(config, base_dir=tmp_path,
                               discord=dataclasses.replace(config.discord, nsfw_words=("nsfwword",)))


async def test_a_job_queued_before_jobs_carried_the_word_flag_is_recorded_flagged(tiny_config: Config,
                                                                                  tmp_path: Path) -> None:
    """Queued when the bot was upgraded: its parameters have no ``nsfw_word``; after the restart its
    images are flagged from its prompt (before: recorded unflagged, posted plainly under spoiler)."""
    config = with_words(tiny_config, tmp_path)
    db = await Database.open(config.path(config.storage.database))
    for jid, prompt in (("old", "a nsfwword harbour"), ("clean", "a quiet harbour")):
        params = dataclasses.replace(job(jid), prompt=prompt).to_params()
        del params["nsfw_word"]
        await db.jobs.add(job_id=jid, kind="imagine", user_id=1, guild_id=None, channel_id=6, params=params)
    await db.close()
    s = Studio(config)
    waiters = [asyncio.create_task(done_event(s, jid)) for jid in ("old", "clean")]
    await asyncio.sleep(0)
    try:
        assert sorted(await s.start(warm_up=False)) == ["clean", "old"]
        old, clean = await asyncio.gather(*waiters)
        assert old.job.nsfw_word and not clean.job.nsfw_word
        assert [r.nsfw_word for r in await s.database.images.for_job("old")] == [True]
        assert [r.nsfw_word for r in await s.database.images.for_job("clean")] == [False]
    finally:
        for waiter in waiters:
            waiter.cancel()
        await s.close()


async def test_start_flags_stored_images_whose_prompt_has_a_word(tiny_config: Config, tmp_path: Path) -> None:
    """Results recorded before images carried the word flag get it at start-up, before anything is posted."""
    config = with_words(tiny_config, tmp_path)
    db = await Database.open(config.path(config.storage.database))
    for jid, prompt in (("old", "a NSFWWORD harbour"), ("clean", "a quiet harbour")):
        await db.jobs.add(job_id=jid, kind="imagine", user_id=1, guild_id=None, channel_id=6,
                          params=dataclasses.replace(job(jid), prompt=prompt).to_params())
        await db.record_results([NewImage(jid, 0, 9, f"/o/{jid}.png", 64, 64, "aa" * 32, 10)], [jid])
    await db.close()
    s = Studio(config)
    try:
        await s.start(warm_up=False)
        assert [r.nsfw_word for r in await s.database.images.for_job("old")] == [True]
        assert [r.nsfw_word for r in await s.database.images.for_job("clean")] == [False]
    finally:
        await s.close()
