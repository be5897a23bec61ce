"""Schema migrations: from an empty file, from every earlier version, and the ways they can fail."""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import aiosqlite
import pytest

import storage.db as db_module
from storage import Database
from storage import migrations as M

LATEST = len(M.load())


def tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'trigger')")}


async def migrate_to(path: Path, version: int) -> None:
    """Build the schema an older easel left behind."""
    raw = await aiosqlite.connect(path, isolation_level=None)
    try:
        assert await M.apply(raw, M.load(), target=version) == version
    finally:
        await raw.close()


def insert_old_data(path: Path, version: int) -> None:
    """Rows as an easel at ``version`` wrote them (plain SQL: that code no longer exists)."""
    with sqlite3.connect(path) as conn:
        if version >= 1:
            conn.execute(
                "INSERT INTO jobs (job_id, kind, user_id, guild_id, channel_id, params, prompt, status, created_at)"
                " VALUES ('old1', 'imagine', 7, 70, 700, ?, 'an old lighthouse', 'queued', 1.0)",
                (json.dumps({"prompt": "an old lighthouse", "seed": 3}),),
            )
            conn.execute(
                "INSERT INTO images (job_id, idx, seed, path, width, height, sha256, size_bytes)"
                " VALUES ('old1', 0, 3, '/o/ab/ab.png', 64, 64, 'ab', 10)"
            )
            old_names = version < 4  # schema 4 renamed the NSFW policies
            conn.execute("INSERT INTO guild_settings (guild_id, nsfw_policy, updated_at) VALUES (70, ?, 1.0)",
                          ("allow" if old_names else "off",))
            conn.execute("INSERT INTO guild_settings (guild_id, nsfw_policy, updated_at) VALUES (71, ?, 1.0)",
                         ("nsfw-channels" if old_names else "block",))
            conn.execute("INSERT INTO guild_channels (guild_id, channel_id) VALUES (70, 700)")
        if version >= 2:
            conn.execute("INSERT INTO user_prefs (user_id, default_aspect, dm_results, updated_at)"
                         " VALUES (7, '16:9', 1, 1.0)")


async def test_there_are_several_real_migrations() -> None:
    assert LATEST >= 3
    names = [m.name for m in M.load()]
    assert names[:3] == ["0001_initial", "0002_user_prefs", "0003_prompt_search"]


async def test_open_creates_folder_file_and_newest_schema(tmp_path: Path) -> None:
    path = tmp_path / "new" / "deeper" / "easel.db"
    db = await Database.open(path)
    try:
        assert await db.schema_version() == LATEST
        assert db.jobs.fts
    finally:
        await db.close()
    assert {"jobs", "job_files", "images", "guild_settings", "guild_channels", "user_prefs", "jobs_fts",
            "jobs_fts_insert", "jobs_fts_delete", "jobs_fts_update"} <= tables(path)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_reopening_an_up_to_date_database_changes_nothing(db_path: Path) -> None:
    for _ in range(2):
        db = await Database.open(db_path)
        assert await db.schema_version() == LATEST
        await db.close()


@pytest.mark.parametrize("version", range(LATEST))
async def test_upgrade_from_every_earlier_version_keeps_data(db_path: Path, version: int) -> None:
    db_path.parent.mkdir(parents=True)
    await migrate_to(db_path, version)
    insert_old_data(db_path, version)

    db = await Database.open(db_path)
    try:
        assert await db.schema_version() == LATEST
        if version >= 1:
            job = await db.jobs.get("old1")
            assert job is not None and job.prompt == "an old lighthouse" and job.params["seed"] == 3
            assert [im.path for im in await db.images.for_job("old1")] == [Path("/o/ab/ab.png")]
            guild = await db.settings.guild(70)
            assert guild.nsfw_policy == "off" and guild.enabled_channels == (700,)
            assert (await db.settings.guild(71)).nsfw_policy == "block"
            # the channel list survived the rebuild of schema 4 and still cascades with its guild
            await db.settings.update_guild(70, enabled_channels=(700, 701))
            assert (await db.settings.guild(70)).enabled_channels == (700, 701)
            # jobs from before the search index existed are found by it
            page = await db.jobs.history(user_id=7, search="lighthouse")
            assert [r.job_id for r in page.rows] == ["old1"]
            assert [r.job_id for r in await db.jobs.recover()] == ["old1"]
        if version >= 2:
            prefs = await db.settings.user(7)
            assert prefs.default_aspect == "16:9" and prefs.dm_results is True
        # the upgraded schema takes new data
        await db.jobs.add(job_id="new1", kind="imagine", user_id=7, guild_id=70, channel_id=700,
                          params={"prompt": "a new lighthouse"})
        assert {r.job_id for r in (await db.jobs.history(user_id=7, search="lighthouse")).rows} >= {"new1"}
    finally:
        await db.close()


async def test_older_inputs_that_are_results_are_supplied_by_the_results_owner(db_path: Path) -> None:
    """Before job files named their supplier, member 8's variation of member 7's result and member
    8's own upload looked alike; the migration tells them apart by the images table."""
    db_path.parent.mkdir(parents=True)
    version = next(m.version for m in M.load() if m.name.endswith("_input_suppliers"))
    await migrate_to(db_path, version - 1)
    insert_old_data(db_path, version - 1)  # member 7's job old1 and its result /o/ab/ab.png
    with sqlite3.connect(db_path) as conn:
        for job_id, path in (("varied", "/o/ab/ab.png"), ("uploaded", "/o/cd/cd.jpg")):
            conn.execute("INSERT INTO jobs (job_id, kind, user_id, channel_id, params, status, created_at)"
                         " VALUES (?, 'vary', 8, 700, ?, 'done', 2.0)", (job_id, json.dumps({"init_image": path})))
            conn.execute("INSERT INTO job_files (job_id, role, path) VALUES (?, 'init_image', ?)", (job_id, path))

    db = await Database.open(db_path)
    try:
        assert await db.jobs.suppliers("varied") == {"init_image": 7}
        assert await db.jobs.suppliers("uploaded") == {"init_image": 8}
        assert (await db.forget(7)).detached == 1  # member 7's result leaves member 8's variation
        assert (await db.jobs.get("varied")).params["init_image"] == ""
        assert (await db.jobs.get("uploaded")).params["init_image"] == "/o/cd/cd.jpg"
    finally:
        await db.close()


async def test_two_processes_opening_an_empty_file_at_once_both_succeed(db_path: Path) -> None:
    first, second = await asyncio.gather(Database.open(db_path), Database.open(db_path))
    try:
        assert await first.schema_version() == await second.schema_version() == LATEST
    finally:
        await first.close()
        await second.close()


async def test_a_database_newer_than_the_code_is_refused(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    with sqlite3.connect(db_path) as conn:
        conn.execute(f"PRAGMA user_version = {LATEST + 5}")
    with pytest.raises(M.MigrationError, match="newer than this easel"):
        await Database.open(db_path)


async def test_a_failing_migration_leaves_the_previous_version(tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    shutil.copytree(M.FOLDER, folder)
    (folder / f"{LATEST + 1:04d}_broken.sql").write_text(
        "CREATE TABLE half_done (a INTEGER);\nINSERT INTO no_such_table VALUES (1);\n", encoding="utf-8")
    path = tmp_path / "easel.db"
    raw = await aiosqlite.connect(path, isolation_level=None)
    try:
        with pytest.raises(M.MigrationError, match="broken failed: no such table"):
            await M.apply(raw, M.load(folder))
        assert await M.user_version(raw) == LATEST
    finally:
        await raw.close()
    assert "half_done" not in tables(path)


async def test_without_fts5_the_search_migration_is_skipped(db_path: Path, no_fts5: None) -> None:
    db = await Database.open(db_path)
    try:
        assert await db.schema_version() == LATEST
        assert not db.jobs.fts
    finally:
        await db.close()
    assert "jobs_fts" not in tables(db_path)


async def test_fts5_is_detected_on_this_sqlite(tmp_path: Path) -> None:
    raw = await aiosqlite.connect(tmp_path / "probe.db", isolation_level=None)
    try:
        assert await M.has_feature(raw, "fts5") is True
        with pytest.raises(ValueError, match="unknown feature"):
            await M.has_feature(raw, "time-travel")
    finally:
        await raw.close()


def test_statements_are_split_with_trigger_bodies_whole() -> None:
    search = next(m for m in M.load() if m.name == "0003_prompt_search")
    assert search.requires == ("fts5",)
    assert len(search.statements) == 5
    assert all(s.rstrip().endswith(";") for s in search.statements)
    update_trigger = next(s for s in search.statements if "jobs_fts_update" in s)
    assert update_trigger.count("INSERT INTO jobs_fts") == 2 and update_trigger.endswith("END;")


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"0001_a.sql": "CREATE TABLE a (x);", "0003_c.sql": "CREATE TABLE c (x);"}, "expected migration number 0002"),
        ({"0001_a.sql": "CREATE TABLE a (x);", "0001_b.sql": "CREATE TABLE b (x);"}, "expected migration number 0002"),
        ({"0002_a.sql": "CREATE TABLE a (x);"}, "expected migration number 0001"),
        ({"1_a.sql": "CREATE TABLE a (x);"}, "named like"),
        ({"0001_a.sql": "CREATE TABLE a (x)"}, "not terminated"),
        ({"0001_a.sql": "-- nothing here\n"}, "holds no SQL"),
        ({"0001_a.sql": "-- requires: fts5, warp-drive\nCREATE TABLE a (x);"}, "unknown required feature"),
    ],
)
def test_bad_migration_folders_are_refused(tmp_path: Path, files: dict[str, str], message: str) -> None:
    for name, sql in files.items():
        (tmp_path / name).write_text(sql, encoding="utf-8")
    with pytest.raises(M.MigrationError, match=message):
        M.load(tmp_path)


async def test_an_in_memory_database_works_and_says_it_has_no_wal(caplog: pytest.LogCaptureFixture) -> None:
    db = await Database.open(":memory:")
    try:
        assert await db.schema_version() == LATEST
        await db.jobs.add(job_id="m1", kind="imagine", user_id=1, guild_id=None, channel_id=2, params={})
        assert (await db.jobs.get("m1")) is not None
    finally:
        await db.close()
    assert "would not use WAL" in caplog.text


async def test_a_locked_wal_switch_is_retried_and_a_lasting_one_reported(
        db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two processes switching a new file to WAL at once can get "database is locked" at once,
    without SQLite waiting; opening tries again, and gives up with the error after the busy timeout."""
    real = db_module.fetchone
    refusals = [2]

    async def flaky(raw: Any, sql: str, params: Any = ()) -> Any:
        if "journal_mode" in sql and refusals[0] > 0:
            refusals[0] -= 1
            raise sqlite3.OperationalError("database is locked")
        return await real(raw, sql, params)

    monkeypatch.setattr(db_module, "fetchone", flaky)
    db = await Database.open(db_path)
    try:
        assert refusals == [0] and await db.schema_version() == LATEST
    finally:
        await db.close()

    refusals[0] = 10**6
    monkeypatch.setattr(db_module, "BUSY_TIMEOUT_MS", 50)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        await Database.open(db_path.with_name("other.db"))


async def test_the_delivery_migration_drops_tokens_of_finished_jobs_and_adds_retry_columns(db_path: Path) -> None:
    before = next(m.version for m in M.load() if m.name.endswith("_delivery")) - 1
    db_path.parent.mkdir(parents=True)
    await migrate_to(db_path, before)
    with sqlite3.connect(db_path) as conn:
        for job_id, status in (("posted", "delivered"), ("waiting", "queued")):
            conn.execute("INSERT INTO jobs (job_id, kind, user_id, channel_id, params, status, created_at,"
                         " interaction_token) VALUES (?, 'imagine', 7, 700, '{}', ?, 1.0, 'tok')", (job_id, status))
    db = await Database.open(db_path)
    try:
        posted, waiting = await db.jobs.get("posted"), await db.jobs.get("waiting")
        assert posted is not None and posted.interaction_token is None
        assert waiting is not None and waiting.interaction_token == "tok"
        assert (waiting.status_message_id, waiting.delivery_attempts, waiting.undeliverable) == (None, 0, False)
    finally:
        await db.close()
