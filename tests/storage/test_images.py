"""Result image rows: idempotent on (job, index), found by job and by the message they were posted in."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage import Database, ImageRow
from storage.images import NewImage
from storage.jobs import JobsMissing
from tests.storage.helpers import add_job


async def add(db: Database, job_id: str, idx: int, path: str = "/o/a.png", **extra: object) -> None:
    fields: dict[str, object] = {"seed": 100 + idx, "width": 64, "height": 48, "sha256": "ab" * 32,
                                 "size_bytes": 1234, **extra}
    await db.images.add(job_id=job_id, idx=idx, path=path, **fields)  # type: ignore[arg-type]


async def test_images_come_back_in_index_order(db: Database) -> None:
    await add_job(db, "j1")
    await add(db, "j1", 1, "/o/b.png", nsfw=True)
    await add(db, "j1", 0, "/o/a.png")
    rows = await db.images.for_job("j1")
    assert rows == [
        ImageRow("j1", 0, 100, Path("/o/a.png"), 64, 48, "ab" * 32, 1234, False, None),
        ImageRow("j1", 1, 101, Path("/o/b.png"), 64, 48, "ab" * 32, 1234, True, None),
    ]
    assert await db.images.for_job("j2") == []


async def test_adding_an_image_twice_keeps_one_row_and_its_message(db: Database) -> None:
    await add_job(db, "j1")
    await add(db, "j1", 0, "/o/a.png")
    assert await db.images.set_message("j1", 777) == 1
    await add(db, "j1", 0, "/o/rerun.png", size_bytes=99)
    (row,) = await db.images.for_job("j1")
    assert (row.path, row.size_bytes, row.message_id) == (Path("/o/rerun.png"), 99, 777)


async def test_images_are_found_by_their_message(db: Database) -> None:
    await add_job(db, "j1")
    await add_job(db, "j2")
    for idx in range(3):
        await add(db, "j1", idx)
    await add(db, "j2", 0)
    assert await db.images.set_message("j1", 900) == 3
    assert [r.idx for r in await db.images.by_message(900)] == [0, 1, 2]
    assert await db.images.by_message(901) == []
    assert await db.images.set_message("ghost", 902) == 0


async def test_an_image_needs_its_job(db: Database) -> None:
    with pytest.raises(LookupError, match="no job ghost"):
        await add(db, "ghost", 0)


async def test_a_negative_index_is_refused(db: Database) -> None:
    await add_job(db, "j1")
    with pytest.raises(ValueError, match="must not be negative"):
        await add(db, "j1", -1)


async def test_many_images_of_several_jobs_are_recorded_in_one_call(db: Database) -> None:
    await add_job(db, "j1")
    await add_job(db, "j2")
    await db.images.add_many([NewImage("j1", 0, 5, "/o/a.png", 64, 64, "aa" * 32, 10),
                              NewImage("j1", 1, 6, "/o/b.png", 64, 64, "bb" * 32, 11, nsfw=True),
                              NewImage("j2", 0, 7, "/o/c.png", 32, 32, "cc" * 32, 12)])
    assert [(r.idx, r.seed, r.nsfw) for r in await db.images.for_job("j1")] == [(0, 5, False), (1, 6, True)]
    assert [(r.path, r.width) for r in await db.images.for_job("j2")] == [(Path("/o/c.png"), 32)]
    await db.images.add_many([])  # nothing to do is no error


async def test_one_unknown_job_records_none_of_the_images(db: Database) -> None:
    await add_job(db, "j1")
    with pytest.raises(LookupError, match="no job ghost$") as raised:
        await db.images.add_many([NewImage("j1", 0, 5, "/o/a.png", 64, 64, "aa" * 32, 10),
                                  NewImage("ghost", 0, 6, "/o/b.png", 64, 64, "bb" * 32, 11)])
    assert raised.value.job_ids == ("ghost",)  # type: ignore[attr-defined]
    assert await db.images.for_job("j1") == []
    with pytest.raises(ValueError, match="must not be negative"):
        await db.images.add_many([NewImage("j1", -1, 5, "/o/a.png", 64, 64, "aa" * 32, 10)])


async def test_results_record_the_images_then_the_jobs_in_one_trip(db: Database) -> None:
    for jid in ("j1", "j2"):
        await add_job(db, jid)
        await db.jobs.set_status(jid, "running")
    trips = db.jobs._conn._batcher.trips  # noqa: SLF001
    rows = await db.record_results([NewImage("j1", 0, 5, "/o/a.png", 64, 64, "aa" * 32, 10),
                                    NewImage("j2", 0, 6, "/o/b.png", 64, 64, "bb" * 32, 11)], ["j1", "j2"], claim=True)
    assert db.jobs._conn._batcher.trips == trips + 1  # noqa: SLF001
    assert sorted(rows) == ["j1", "j2"] and {r.status for r in rows.values()} == {"delivering"}
    assert [i.seed for i in await db.images.for_job("j2")] == [6]


async def test_results_with_a_job_gone_from_the_log_record_nothing(db: Database) -> None:
    await add_job(db, "j1")
    await db.jobs.set_status("j1", "running")
    with pytest.raises(JobsMissing) as missing:
        await db.record_results([NewImage("j1", 0, 5, "/o/a.png", 64, 64, "aa" * 32, 10),
                                 NewImage("ghost", 0, 6, "/o/b.png", 64, 64, "bb" * 32, 11)], ["j1", "ghost"])
    assert list(missing.value.job_ids) == ["ghost"]
    assert await db.images.for_job("j1") == []  # the insert failed as a whole ...
    assert (await db.jobs.get("j1")).status == "running"  # type: ignore[union-attr]  # ... so no job was finished


async def test_both_nsfw_flags_are_kept_and_a_rerun_replaces_them(db: Database) -> None:
    """The NSFW gate reads both: the safety checker's (``nsfw``) and the prompt word's (``nsfw_word``)."""
    await add_job(db, "j1")
    word = NewImage("j1", 0, 5, "/o/a.png", 64, 64, "aa" * 32, 10, nsfw=False, nsfw_word=True)
    both = NewImage("j1", 1, 6, "/o/b.png", 64, 64, "bb" * 32, 11, nsfw=True, nsfw_word=True)
    await db.images.add_many([word, both])
    rows = await db.images.for_job("j1")
    assert [(r.nsfw, r.nsfw_word) for r in rows] == [(False, True), (True, True)]
    assert [word.as_row(), both.as_row()] == rows  # what the studio hands the poster before a read
    await db.images.add_many([NewImage("j1", 0, 5, "/o/a.png", 64, 64, "aa" * 32, 10)])
    assert not (await db.images.for_job("j1"))[0].nsfw_word
