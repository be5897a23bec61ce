"""Another program holding the job log's write lock longer than SQLite's busy_timeout (a backup, the
sqlite3 shell): the start and the result of a job are written once it lets go, never dropped."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from PIL import Image

import storage.connection as connection_module
from config import Config
from inference.jobs import Cancelled, Finished, JobResult, Started, TextToImageJob
from studio import JobCancelled, JobDone, JobStarted, Studio, StudioEvent


@pytest.fixture
async def studio(tiny_config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Studio]:
    monkeypatch.setattr(connection_module, "LOCKED_FIRST_WAIT_S", 0.02)
    monkeypatch.setattr(connection_module, "LOCKED_MAX_WAIT_S", 0.05)
    s = Studio(dataclasses.replace(tiny_config, base_dir=tmp_path))
    await s.start(warm_up=False)
    async with s.database._conn.locked() as raw:  # noqa: SLF001 - wait 50 ms for a lock, not 5 s
        await raw.execute("PRAGMA busy_timeout = 50")
    yield s
    await s.close()


@contextlib.contextmanager
def write_lock_held(path: Path) -> Iterator[None]:
    """Another connection holds the database's write lock until the block ends."""
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        yield
        other.execute("COMMIT")
    finally:
        other.close()


async def until(predicate: Callable[[], object], timeout: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def add(studio: Studio, job_id: str) -> None:
    job = TextToImageJob(job_id=job_id, owner=1, prompt="a quiet harbour", width=64, height=64, steps=2, model="tiny",
                         seed=9)
    await studio.database.jobs.add(job_id=job_id, kind="imagine", user_id=1, guild_id=None, channel_id=6,
                                   params=job.to_params())


async def test_a_start_and_a_result_written_while_the_log_is_locked_are_written_when_it_is_free(
        studio: Studio, caplog: pytest.LogCaptureFixture) -> None:
    await add(studio, "a")
    events: list[StudioEvent] = []
    studio.add_listener(events.append)
    with write_lock_held(studio.database.path):
        studio._on_engine_event(Started("a"))
        studio._on_engine_event(Finished("a", JobResult("a", (Image.new("RGB", (64, 64), "red"),), (9,), 0.1)))
        await until(lambda: caplog.text.count("the job log is locked by another program") >= 4)
        assert events == []  # the member still sees "Queued": nothing is announced before it is written
    await until(lambda: any(isinstance(e, JobDone) for e in events))
    assert [type(e) for e in events] == [JobStarted, JobDone]  # the start first, then the result
    row = await studio.database.jobs.get("a")
    assert row is not None and row.status == "done" and row.started_at is not None
    assert len(await studio.database.images.for_job("a")) == 1
    assert "could not record" not in caplog.text


async def test_a_cancellation_written_while_the_log_is_locked_is_not_lost(
        studio: Studio, caplog: pytest.LogCaptureFixture) -> None:
    await add(studio, "b")
    events: list[StudioEvent] = []
    studio.add_listener(events.append)
    with write_lock_held(studio.database.path):
        studio._on_engine_event(Cancelled("b"))
        await until(lambda: "writing the cancellation of job b again" in caplog.text)
    await until(lambda: events)
    assert [type(e) for e in events] == [JobCancelled]
    assert (await studio.database.jobs.get("b")).status == "cancelled"  # type: ignore[union-attr]
