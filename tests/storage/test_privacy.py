"""What forget leaves behind (nothing), what the orphan sweep removes, and how a member's stored
inputs are counted."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from pathlib import Path

from config import Config
from storage import Database, OutputStore
from studio import Studio
from tests.storage.helpers import Clock, add_job, deliver, finish

WORD = b"zqxjvortel"  # shares no prefix with the other prompts' words, so FTS5 stores it whole


def database_files(db: Database) -> list[Path]:
    return [p for p in (db.path, Path(f"{db.path}-wal"), Path(f"{db.path}-shm")) if p.exists()]


def holding(db: Database, word: bytes) -> list[str]:
    return [p.name for p in database_files(db) if word in p.read_bytes()]


async def checkpoint(db: Database) -> None:
    async with db._conn.locked() as raw:  # noqa: SLF001 - what an admin's sqlite3 shell would do
        await raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")


async def add_others(db: Database, start: int, count: int) -> None:
    for n in range(start, start + count):
        await add_job(db, f"other{n}", user_id=2, prompt=f"a harbour at dusk number {n}")


async def test_forget_leaves_none_of_the_prompt_in_the_database_files(search_db: Database) -> None:
    db = search_db
    await add_others(db, 0, 40)
    await add_job(db, "mine", user_id=1, prompt=f"a {WORD.decode()} lighthouse", negative_prompt=f"{WORD.decode()}s")
    await add_job(db, "mine2", user_id=1, prompt=f"{WORD.decode()} again")
    await add_others(db, 40, 40)
    await checkpoint(db)
    assert holding(db, WORD)  # the scan can see it

    await add_job(db, "recent", user_id=1, prompt=f"{WORD.decode()} once more")  # in the WAL only, so far
    report = await db.forget(1)

    assert report.jobs == 3
    assert holding(db, WORD) == []  # forget checkpointed the WAL itself
    await checkpoint(db)
    assert holding(db, WORD) == []
    assert (await db.jobs.history(user_id=2, search="harbour")).total == 80  # the index still serves the others
    assert (await db.jobs.history(user_id=1, search=WORD.decode())).total == 0


async def test_deleted_rows_are_zeroed_even_where_sqlite_keeps_them_by_default(db_path: Path, monkeypatch) -> None:
    """Some SQLite builds (not Debian's) leave deleted rows' bytes in free space unless asked."""
    import aiosqlite

    real_connect = aiosqlite.connect

    async def connect(*args: object, **kwargs: object) -> aiosqlite.Connection:
        conn = await real_connect(*args, **kwargs)  # type: ignore[arg-type]
        await conn.execute("PRAGMA secure_delete = OFF")  # as such a build starts
        return conn

    monkeypatch.setattr(aiosqlite, "connect", connect)
    db = await Database.open(db_path)
    try:
        await add_others(db, 0, 40)
        await add_job(db, "mine", user_id=1, prompt=f"a {WORD.decode()} lighthouse")
        await add_others(db, 40, 40)
        await db.forget(1)
        await checkpoint(db)
        assert holding(db, WORD) == []
    finally:
        await db.close()


async def test_pruned_prompts_leave_the_database_files_too(db: Database, clock: Clock) -> None:
    await add_others(db, 0, 20)
    await add_job(db, "old", user_id=1, prompt=f"a {WORD.decode()} lighthouse")
    await finish(db, "old")
    await deliver(db, "old")
    assert (await db.prune(1, now=clock.now + 10 * 86_400)).jobs == 1
    await checkpoint(db)
    assert holding(db, WORD) == []


async def test_a_reroll_of_an_upload_loses_it_when_its_owner_forgets(db: Database, outputs: OutputStore) -> None:
    """Member 2 rerolled member 1's /vary: the new job names the same content-addressed upload."""
    upload = (await outputs.save_bytes(b"member 1's photo", ".jpg")).path
    await add_job(db, "vary1", user_id=1, kind="vary", init_image=str(upload))
    await add_job(db, "reroll2", user_id=2, kind="vary", init_image=str(upload), suppliers={"init_image": 1})
    result = (await outputs.save_bytes(b"member 2's result")).path
    await db.images.add(job_id="reroll2", idx=0, seed=1, path=result, width=8, height=8, sha256="0" * 64,
                        size_bytes=17)

    report = await db.forget(1)

    assert upload in report.files and not upload.exists()
    assert report.detached == 1
    reroll = await db.jobs.get("reroll2")
    assert reroll is not None and reroll.params["init_image"] == ""
    assert await db.jobs.files("reroll2") == {}
    assert result.exists() and [im.path for im in await db.images.for_job("reroll2")] == [result]


async def test_forget_keeps_another_members_result_it_started_from(db: Database, outputs: OutputStore) -> None:
    theirs = (await outputs.save_bytes(b"member 2's result")).path
    await add_job(db, "b1", user_id=2)
    await db.images.add(job_id="b1", idx=0, seed=1, path=theirs, width=8, height=8, sha256="0" * 64, size_bytes=17)
    await add_job(db, "a1", user_id=1, kind="vary", init_image=str(theirs), suppliers={"init_image": 2})  # varied it
    report = await db.forget(1)
    assert report.files == () and theirs.exists() and report.detached == 0


async def test_two_members_who_used_the_same_picture_each_keep_it_until_both_forget(
        db: Database, outputs: OutputStore) -> None:
    """Members 2 and 3 each 🎨 member 9's picture: one content-addressed file, supplied by each of
    them to their own job. Member 2's /forget takes only member 2's use of it."""
    picture = (await outputs.save_bytes(b"member 9's picture, posted in the channel", ".jpg")).path
    await add_job(db, "vary2", user_id=2, kind="vary", init_image=str(picture))
    await add_job(db, "vary3", user_id=3, kind="vary", init_image=str(picture))

    report = await db.forget(2)

    assert (report.jobs, report.detached, report.files) == (1, 0, ()) and picture.exists()
    kept = await db.jobs.get("vary3")
    assert kept is not None and kept.params["init_image"] == str(picture)
    assert await db.jobs.files("vary3") == {"init_image": picture}
    assert (await db.forget(3)).files == (picture,) and not picture.exists()


async def test_forget_takes_an_upload_from_a_reroll_whose_original_is_gone(db: Database, outputs: OutputStore,
                                                                           clock: Clock) -> None:
    """Member 2's Reroll of member 1's /vary (and member 3's Reroll of that) outlive the original,
    pruned meanwhile: the upload is still member 1's to take."""
    upload = (await outputs.save_bytes(b"member 1's photo", ".jpg")).path
    await add_job(db, "vary1", user_id=1, kind="vary", init_image=str(upload))
    await add_job(db, "reroll2", user_id=2, kind="vary", init_image=str(upload), suppliers={"init_image": 1})
    await add_job(db, "reroll3", user_id=3, kind="vary", init_image=str(upload), suppliers={"init_image": 1})
    await finish(db, "vary1")
    await deliver(db, "vary1")
    assert (await db.prune(1, now=clock.now + 10 * 86_400)).jobs == 1 and upload.exists()

    report = await db.forget(1)

    assert (report.jobs, report.detached, report.files) == (0, 2, (upload,)) and not upload.exists()
    for job_id in ("reroll2", "reroll3"):
        row = await db.jobs.get(job_id)
        assert row is not None and row.params["init_image"] == "" and await db.jobs.files(job_id) == {}


async def test_who_supplied_each_input_is_recorded_and_read_back(db: Database, outputs: OutputStore) -> None:
    photo = (await outputs.save_bytes(b"a photo", ".jpg")).path
    mask = (await outputs.save_bytes(b"a mask")).path
    await add_job(db, "paint", user_id=4, kind="paint", init_image=str(photo), mask_image=str(mask),
                  suppliers={"init_image": 5})
    assert await db.jobs.suppliers("paint") == {"init_image": 5, "mask_image": 4}
    async with db._conn.locked() as raw:  # noqa: SLF001 - a row as written before schema 7
        await raw.execute("UPDATE job_files SET supplied_by = NULL WHERE job_id = 'paint'")
    assert await db.jobs.suppliers("paint") == {"init_image": 4, "mask_image": 4}  # NULL: the job's owner
    assert await db.jobs.suppliers("unknown") == {}


async def test_a_result_file_belongs_to_its_owner_and_shared_bytes_prefer_the_asker(db: Database,
                                                                                    outputs: OutputStore) -> None:
    same = (await outputs.save_bytes(b"two identical results")).path
    for job_id, member in (("first", 6), ("second", 7)):
        await add_job(db, job_id, user_id=member)
        await db.images.add(job_id=job_id, idx=0, seed=1, path=same, width=8, height=8, sha256="0" * 64,
                            size_bytes=21)
    assert await db.images.owner_of(same) == 6  # the earliest job's owner
    assert await db.images.owner_of(same, prefer=7) == 7 and await db.images.owner_of(same, prefer=8) == 6
    assert await db.images.owner_of(str(same.with_name("other.png"))) is None


def age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


async def test_the_sweep_removes_old_orphans_and_keeps_young_and_named_files(db: Database,
                                                                             outputs: OutputStore) -> None:
    old_orphan = (await outputs.save_bytes(b"refused upload, long ago", ".jpg")).path
    young_orphan = (await outputs.save_bytes(b"an upload being submitted right now", ".webp")).path
    result = (await outputs.save_bytes(b"a result")).path
    upload = (await outputs.save_bytes(b"an input")).path
    moved = (await outputs.save_bytes(b"named under another spelling of the folder")).path
    await add_job(db, "j1", kind="vary", init_image=str(upload))
    await add_job(db, "j2", kind="vary", init_image=f"/elsewhere/outputs/{moved.parent.name}/{moved.name}")
    await db.images.add(job_id="j1", idx=0, seed=1, path=result, width=8, height=8, sha256="0" * 64, size_bytes=8)
    stray = outputs.folder / "README.txt"  # not ours to judge
    stray.write_text("notes")
    temp = outputs.folder / old_orphan.parent.name / ".easel-0123456789abcdef.tmp"
    temp.write_bytes(b"half written")
    for path in (old_orphan, result, upload, moved, stray, temp):
        age(path, 2 * 3600)
    age(young_orphan, 60)

    removed = await db.sweep_orphans(outputs.folder, older_than_s=3600)

    assert removed == (old_orphan,) and not old_orphan.exists()
    for kept in (young_orphan, result, upload, moved, stray, temp):
        assert kept.exists()


async def test_the_sweep_keeps_an_orphan_stored_again_while_it_looked(db: Database, outputs: OutputStore,
                                                                      monkeypatch) -> None:
    from storage import retention

    orphan = (await outputs.save_bytes(b"the same photo, uploaded again")).path
    age(orphan, 2 * 3600)
    listing = retention.content_files

    def listed_then_stored_again(folder: Path) -> list[tuple[Path, float]]:
        found = listing(folder)
        os.utime(orphan)  # save_bytes of the same bytes, between the listing and the delete
        return found

    monkeypatch.setattr(retention, "content_files", listed_then_stored_again)
    assert await db.sweep_orphans(outputs.folder, older_than_s=3600) == ()
    assert orphan.exists()


async def test_a_members_stored_inputs_count_each_file_once(db: Database, outputs: OutputStore) -> None:
    photo = (await outputs.save_bytes(b"p" * 3000, ".jpg")).path
    mask = (await outputs.save_bytes(b"m" * 500)).path
    gone = (await outputs.save_bytes(b"g" * 700)).path
    result = (await outputs.save_bytes(b"r" * 9000)).path
    await add_job(db, "paint", user_id=1, kind="paint", init_image=str(photo), mask_image=str(mask))
    await add_job(db, "again", user_id=1, kind="vary", init_image=str(photo))  # the same upload twice
    await add_job(db, "lost", user_id=1, kind="vary", init_image=str(gone))
    await add_job(db, "other", user_id=2, kind="vary", init_image=str(result))
    await db.images.add(job_id="paint", idx=0, seed=1, path=result, width=8, height=8, sha256="0" * 64,
                        size_bytes=9000)  # results are not inputs
    gone.unlink()
    assert await db.stored_input_bytes(1) == 3500
    assert await db.stored_input_bytes(2) == 9000
    assert await db.stored_input_bytes(3) == 0


async def test_the_studio_sweeps_orphans_when_it_starts(tiny_config: Config, tmp_path: Path) -> None:
    studio = Studio(dataclasses.replace(tiny_config, base_dir=tmp_path))
    old = (await studio.outputs.save_bytes(b"left by a crash between storing an input and its job")).path
    young = (await studio.outputs.save_bytes(b"stored a moment ago")).path
    age(old, 2 * 3600)
    await studio.start(warm_up=False)
    try:
        for _ in range(500):
            if not old.exists():
                break
            await asyncio.sleep(0.01)
        assert not old.exists() and young.exists()
    finally:
        await studio.close()
