"""forget(user) and prune(days): rows go, and files go only when nobody else uses them."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import pytest

from storage import Database, OutputStore
from tests.storage.helpers import Clock, add_job, deliver, finish

DAY = 86_400


async def add_image(db: Database, outputs: OutputStore, job_id: str, idx: int, data: bytes) -> Path:
    stored = await outputs.save_bytes(data)
    await db.images.add(job_id=job_id, idx=idx, seed=idx, path=stored.path, width=8, height=8, sha256=stored.sha256,
                        size_bytes=stored.size)
    return stored.path


async def test_forget_removes_rows_and_files_and_spares_other_members(db: Database, outputs: OutputStore) -> None:
    upload = (await outputs.save_bytes(b"member 1 upload")).path
    mask = (await outputs.save_bytes(b"member 1 mask")).path
    await add_job(db, "a1", user_id=1, prompt="mine")
    await add_job(db, "a2", user_id=1, kind="paint", init_image=str(upload), mask_image=str(mask))
    await add_job(db, "b1", user_id=2, prompt="theirs")
    a1_0 = await add_image(db, outputs, "a1", 0, b"a1 image 0")
    a1_1 = await add_image(db, outputs, "a1", 1, b"a1 image 1")
    grid = (await outputs.save_bytes(b"a1 grid")).path
    await db.jobs.add_file("a1", grid, role="grid")
    shared = await add_image(db, outputs, "a2", 0, b"same bytes for both")
    b1_0 = await add_image(db, outputs, "b1", 0, b"b1 image 0")
    assert await add_image(db, outputs, "b1", 1, b"same bytes for both") == shared  # content-addressed: one file
    # member 2 varied member 1's result: member 1's picture, member 2's input
    await add_job(db, "b2", user_id=2, kind="vary", init_image=str(a1_1), suppliers={"init_image": 1})
    b2_0 = await add_image(db, outputs, "b2", 0, b"b2 image 0")
    await db.settings.update_user(1, dm_results=True)
    await db.settings.update_user(2, dm_results=True)

    report = await db.forget(1)

    assert (report.jobs, report.images, report.prefs, report.detached) == (2, 3, 1, 1)
    assert sorted(report.files) == sorted([upload, mask, a1_0, a1_1, grid])
    for path in report.files:
        assert not path.exists()
    for kept in (shared, b1_0, b2_0):  # member 2's results stay, even the one with member 1's bytes
        assert kept.exists()
    assert await db.jobs.get("a1") is None and await db.jobs.get("a2") is None
    assert await db.images.for_job("a1") == []
    assert (await db.jobs.history(user_id=1)).total == 0
    assert (await db.settings.user(1)).dm_results is False
    assert [r.job_id for r in (await db.jobs.history(user_id=2)).rows] == ["b2", "b1"]
    assert len(await db.images.for_job("b1")) == 2 and (await db.settings.user(2)).dm_results is True
    b2 = await db.jobs.get("b2")  # keeps its result, loses the input and any trace of its name
    assert b2 is not None and b2.params["init_image"] == "" and await db.jobs.files("b2") == {}
    assert [im.path for im in await db.images.for_job("b2")] == [b2_0]


async def test_forgetting_someone_unknown_removes_nothing(db: Database, outputs: OutputStore) -> None:
    await add_job(db, "a1", user_id=1)
    path = await add_image(db, outputs, "a1", 0, b"x")
    report = await db.forget(99)
    assert (report.jobs, report.images, report.files, report.prefs) == (0, 0, (), 0)
    assert path.exists()


async def test_forget_ignores_files_already_gone(db: Database, outputs: OutputStore) -> None:
    await add_job(db, "a1", user_id=1)
    gone = await add_image(db, outputs, "a1", 0, b"deleted by hand")
    there = await add_image(db, outputs, "a1", 1, b"still there")
    gone.unlink()
    report = await db.forget(1)
    assert report.images == 2 and report.files == (there,)


async def test_forget_keeps_a_file_stored_again_meanwhile(db: Database, outputs: OutputStore) -> None:
    """A file saved again after forget began (same content, new owner) must not be deleted."""
    await add_job(db, "a1", user_id=1)
    reused = await add_image(db, outputs, "a1", 0, b"reused")
    future = time.time() + 3600  # as if save_bytes touched it after forget looked
    os.utime(reused, (future, future))
    report = await db.forget(1)
    assert report.files == () and reused.exists()


async def test_forget_survives_a_file_it_cannot_delete(db: Database, outputs: OutputStore,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    await add_job(db, "a1", user_id=1)
    locked = await add_image(db, outputs, "a1", 0, b"locked")
    free = await add_image(db, outputs, "a1", 1, b"free")
    real_unlink = Path.unlink

    def unlink(self: Path, missing_ok: bool = False) -> None:
        if self == locked:
            raise PermissionError("read-only")
        real_unlink(self, missing_ok)

    monkeypatch.setattr(Path, "unlink", unlink)
    report = await db.forget(1)
    assert report.jobs == 1 and report.files == (free,) and locked.exists()


async def test_prune_removes_only_old_finished_jobs(db: Database, outputs: OutputStore, clock: Clock) -> None:
    await add_job(db, "old_delivered")
    await add_job(db, "old_failed")
    await add_job(db, "old_cancelled")
    await add_job(db, "old_done")  # finished but never posted: kept until delivered
    await add_job(db, "old_delivering")
    await add_job(db, "old_queued")
    await add_job(db, "old_running")
    for job_id in ("old_delivered", "old_done", "old_delivering"):
        await finish(db, job_id)
    await finish(db, "old_failed", "failed")
    await finish(db, "old_cancelled", "cancelled")
    await db.jobs.set_status("old_running", "running")
    await deliver(db, "old_delivered")
    assert await db.jobs.begin_delivery("old_delivering")
    old_file = await add_image(db, outputs, "old_delivered", 0, b"old")
    clock.advance(40 * DAY)
    await add_job(db, "new_delivered")
    await finish(db, "new_delivered")
    await deliver(db, "new_delivered")
    new_file = await add_image(db, outputs, "new_delivered", 0, b"new")

    report = await db.prune(30)

    assert (report.jobs, report.images, report.files) == (3, 1, (old_file,))
    assert not old_file.exists() and new_file.exists()
    remaining = {r.job_id for r in (await db.jobs.history(user_id=1, limit=100)).rows}
    assert remaining == {"old_done", "old_delivering", "old_queued", "old_running", "new_delivered"}


async def test_prune_with_an_explicit_now(db: Database, clock: Clock) -> None:
    await add_job(db, "j1")
    await finish(db, "j1", "failed")
    assert (await db.prune(1, now=clock.now + 0.5 * DAY)).jobs == 0
    assert (await db.prune(1, now=clock.now + 2 * DAY)).jobs == 1


@pytest.mark.parametrize("days", [0, -3, math.nan, math.inf, True])
async def test_prune_needs_a_positive_number_of_days(db: Database, days: float) -> None:
    with pytest.raises(ValueError, match="positive number of days"):
        await db.prune(days)
