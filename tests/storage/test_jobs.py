"""The job log: a queued job is durable at once, survives restarts and crashes, and comes back in order."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from storage import STATUSES, Database
from tests.storage.helpers import Clock, add_job, deliver, finish

REPO = Path(__file__).resolve().parents[2]


async def test_add_returns_the_queued_row(db: Database, clock: Clock) -> None:
    row = await db.jobs.add(job_id="j1", kind="imagine", user_id=1, guild_id=None, channel_id=5,
                            params={"prompt": "a fox", "seed": 9}, interaction_id=11, interaction_token="tok",
                            application_id=12, request_message_id=13)
    assert (row.job_id, row.kind, row.user_id, row.guild_id, row.channel_id) == ("j1", "imagine", 1, None, 5)
    assert (row.interaction_id, row.interaction_token, row.application_id, row.request_message_id) == (11, "tok", 12, 13)
    assert row.status == "queued" and row.created_at == clock.now and row.started_at is None
    assert row.params == {"prompt": "a fox", "seed": 9} and row.prompt == "a fox"
    assert await db.jobs.get("j1") == row
    assert await db.jobs.get("nope") is None


async def test_a_job_without_prompt_has_an_empty_prompt(db: Database) -> None:
    row = await add_job(db, "anime1", kind="anime", prompt=None, init_image="/in/face.png", style="paprika")
    assert row.prompt == ""


async def test_the_same_job_id_twice_is_refused(db: Database) -> None:
    await add_job(db, "j1")
    with pytest.raises(ValueError, match="already in the job log"):
        await add_job(db, "j1", prompt="another")


async def test_parameters_must_be_json(db: Database) -> None:
    with pytest.raises(ValueError, match="not JSON-serialisable"):
        await add_job(db, "j1", image=object())
    assert await db.jobs.get("j1") is None


async def test_input_files_are_recorded_with_the_job(db: Database) -> None:
    await add_job(db, "paint1", kind="paint", init_image="/o/aa/aa.png", mask_image="/o/bb/bb.png")
    await add_job(db, "vary1", kind="vary", init_image="/o/aa/aa.png", mask_image="")
    assert await db.jobs.files("paint1") == {"init_image": Path("/o/aa/aa.png"), "mask_image": Path("/o/bb/bb.png")}
    assert await db.jobs.files("vary1") == {"init_image": Path("/o/aa/aa.png")}
    await db.jobs.add_file("vary1", Path("/o/cc/cc.png"), role="grid")
    await db.jobs.add_file("vary1", "/o/dd/dd.png", role="grid")  # replaces
    assert (await db.jobs.files("vary1"))["grid"] == Path("/o/dd/dd.png")
    with pytest.raises(LookupError, match="no job ghost"):
        await db.jobs.add_file("ghost", "/o/x.png", role="grid")


async def test_a_queued_job_is_committed_before_add_returns(db: Database, db_path: Path) -> None:
    """Another connection (as another process would) sees it at once, while the first stays open."""
    await add_job(db, "j1", prompt="first")
    other = await Database.open(db_path)
    try:
        row = await other.jobs.get("j1")
        assert row is not None and row.status == "queued" and row.prompt == "first"
    finally:
        await other.close()


async def test_status_moves_set_their_times(db: Database, clock: Clock) -> None:
    await add_job(db, "j1")
    clock.advance(5)
    await db.jobs.set_status("j1", "running")
    running = await db.jobs.get("j1")
    assert running is not None and running.started_at == clock.now and running.finished_at is None
    clock.advance(3)
    await db.jobs.set_status("j1", "failed", error="Out of memory")
    failed = await db.jobs.get("j1")
    assert failed is not None and failed.status == "failed" and failed.error == "Out of memory"
    assert failed.finished_at == clock.now and failed.started_at == running.started_at


async def test_requeueing_clears_times_and_error(db: Database) -> None:
    await add_job(db, "j1")
    await finish(db, "j1", "failed", error="boom")
    await db.jobs.set_status("j1", "queued")
    row = await db.jobs.get("j1")
    assert row is not None and (row.status, row.error, row.started_at, row.finished_at) == ("queued", None, None, None)


@pytest.mark.parametrize("status", ["finished", "DONE", ""])
async def test_unknown_status_is_refused(db: Database, status: str) -> None:
    await add_job(db, "j1")
    with pytest.raises(ValueError, match="unknown job status"):
        await db.jobs.set_status("j1", status)


@pytest.mark.parametrize("status", ["delivering", "delivered"])
async def test_delivery_statuses_go_through_their_own_methods(db: Database, status: str) -> None:
    await add_job(db, "j1")
    await finish(db, "j1")
    with pytest.raises(ValueError, match="begin_delivery/mark_delivered"):
        await db.jobs.set_status("j1", status)
    assert (await db.jobs.get("j1")).status == "done"  # type: ignore[union-attr]


async def test_set_status_on_an_unknown_job_is_a_lookup_error(db: Database) -> None:
    with pytest.raises(LookupError, match="no job ghost"):
        await db.jobs.set_status("ghost", "running")


@pytest.mark.parametrize("status", ["queued", "running", "done", "failed", "cancelled"])
async def test_a_delivered_job_never_moves_back(db: Database, status: str) -> None:
    await add_job(db, "j1")
    await finish(db, "j1")
    await deliver(db, "j1", message_id=77)
    await db.jobs.set_status("j1", status, error="late event")
    row = await db.jobs.get("j1")
    assert row is not None and row.status == "delivered" and row.result_message_id == 77 and row.error is None


async def test_unfinished_jobs_survive_close_and_reopen_in_order(db_path: Path, clock: Clock) -> None:
    db = await Database.open(db_path, clock=clock)
    for job_id in ("a", "b", "c", "d", "e"):
        await add_job(db, job_id, user_id=ord(job_id))
    await db.jobs.set_status("b", "running")  # was on the GPU when the bot stopped
    await finish(db, "c")  # done, not delivered
    await db.jobs.set_status("d", "cancelled")
    await db.close()

    db = await Database.open(db_path, clock=clock)
    try:
        recovered = await db.jobs.recover()
        assert [r.job_id for r in recovered] == ["a", "b", "e"]
        assert all(r.status == "queued" and r.started_at is None for r in recovered)
        assert [r.job_id for r in await db.jobs.undelivered()] == ["c"]
        assert (await db.jobs.get("b")).status == "queued"  # type: ignore[union-attr]
    finally:
        await db.close()


async def test_recover_keeps_submission_order_not_id_order(db: Database) -> None:
    for job_id in ("zz", "aa", "mm"):
        await add_job(db, job_id)
    assert [r.job_id for r in await db.jobs.recover()] == ["zz", "aa", "mm"]
    assert [r.seq for r in await db.jobs.recover()] == sorted(r.seq for r in await db.jobs.recover())


async def test_jobs_survive_a_process_that_never_closed(db_path: Path) -> None:
    """A child process writes jobs and dies with os._exit: no close, no cleanup, no atexit."""
    script = textwrap.dedent(f"""
        import asyncio, os
        from storage import Database

        async def main():
            db = await Database.open({str(db_path)!r})
            for job_id in ("k1", "k2", "k3"):
                await db.jobs.add(job_id=job_id, kind="imagine", user_id=1, guild_id=None, channel_id=2,
                                  params={{"prompt": "killed " + job_id}})
            await db.jobs.set_status("k2", "running")
            os._exit(0)

        asyncio.run(main())
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr

    db = await Database.open(db_path)
    try:
        recovered = await db.jobs.recover()
        assert [(r.job_id, r.status, r.prompt) for r in recovered] == [
            ("k1", "queued", "killed k1"), ("k2", "queued", "killed k2"), ("k3", "queued", "killed k3")]
    finally:
        await db.close()


async def test_by_message_finds_the_job_of_a_result(db: Database) -> None:
    await add_job(db, "j1")
    await add_job(db, "j2")
    await finish(db, "j1")
    await deliver(db, "j1", message_id=501)
    await db.images.add(job_id="j2", idx=0, seed=1, path="/o/a.png", width=8, height=8, sha256="a", size_bytes=1)
    await db.images.set_message("j2", 502)
    assert (await db.jobs.by_message(501)).job_id == "j1"  # type: ignore[union-attr]
    assert (await db.jobs.by_message(502)).job_id == "j2"  # type: ignore[union-attr]
    assert await db.jobs.by_message(503) is None


async def test_counts_cover_every_status(db: Database) -> None:
    assert await db.jobs.counts() == dict.fromkeys(STATUSES, 0)
    for job_id in ("a", "b", "c"):
        await add_job(db, job_id)
    await db.jobs.set_status("b", "running")
    await finish(db, "c")
    counts = await db.jobs.counts()
    assert (counts["queued"], counts["running"], counts["done"], counts["delivered"]) == (1, 1, 1, 0)


async def test_many_concurrent_writers_lose_nothing(db: Database) -> None:
    async def one(n: int) -> None:
        inputs = {"init_image": f"/o/{n}.png"} if n % 2 else {}
        await add_job(db, f"c{n}", **inputs)
        await db.jobs.set_status(f"c{n}", "running")

    await asyncio.gather(*(one(n) for n in range(60)))
    assert (await db.jobs.counts())["running"] == 60
    assert len(await db.jobs.files("c1")) == 1


async def test_a_closed_database_says_so(db_path: Path) -> None:
    db = await Database.open(db_path)
    await db.close()
    await db.close()  # twice is fine
    with pytest.raises(RuntimeError, match="database is closed"):
        await db.jobs.get("j1")


async def test_a_batch_of_jobs_moves_in_one_call(db: Database, clock: Clock) -> None:
    for job_id in ("a", "b", "c"):
        await add_job(db, job_id)
    await db.jobs.set_statuses(["a", "b"], "running")
    clock.advance(5)
    await db.jobs.set_statuses(["a", "b"], "failed", error="boom")
    rows = {j: await db.jobs.get(j) for j in ("a", "b", "c")}
    assert [(r.status, r.error) for r in rows.values()] == [("failed", "boom"), ("failed", "boom"), ("queued", None)]  # type: ignore[union-attr]
    assert rows["a"].finished_at == rows["a"].started_at + 5  # type: ignore[union-attr,operator]
    await db.jobs.set_statuses([], "done")  # nothing to do is no error


async def test_a_batch_with_unknown_jobs_names_them_and_moves_the_rest(db: Database) -> None:
    await add_job(db, "a")
    await add_job(db, "b")
    await finish(db, "b")
    await deliver(db, "b")
    with pytest.raises(LookupError, match="no job ghost, phantom$") as raised:
        await db.jobs.set_statuses(["ghost", "a", "b", "phantom"], "running")
    assert raised.value.job_ids == ("ghost", "phantom")  # type: ignore[attr-defined]
    assert (await db.jobs.get("a")).status == "running"  # type: ignore[union-attr]
    assert (await db.jobs.get("b")).status == "delivered"  # type: ignore[union-attr]
    await db.jobs.set_statuses(["a", "b"], "done")  # a delivered job in the batch is left alone, no error
    assert (await db.jobs.get("a")).status == "done"  # type: ignore[union-attr]


async def test_missing_names_the_ids_not_in_the_log_in_order_once_each(db: Database) -> None:
    await add_job(db, "a")
    await add_job(db, "c")
    assert await db.jobs.missing(["x", "a", "y", "x", "c"]) == ["x", "y"]
    assert await db.jobs.missing(["a", "c"]) == []
    assert await db.jobs.missing([]) == []
