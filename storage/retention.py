"""Deleting jobs together with their files: ``forget(user)``, ``prune(days)`` and the orphan sweep.

Files are content-addressed, so one file can belong to several jobs (the same upload twice, or a
result another member varied). Rows go first (one transaction), files after, and a file saved
again since the transaction began is kept (see ``remove_files``).

- ``prune`` deletes a file only when no remaining image or job file row points to it.
- ``forget`` deletes the member's jobs, and takes the inputs the member supplied (job file rows
  whose ``supplied_by`` is the member: a Reroll of the member's /vary, a variation of one of their
  results) from other members' jobs: such a job keeps its own results but loses the input (its
  job file row goes and its parameters name no file, so a Reroll or Redo of it says the source
  was deleted). Then every file those rows named that no remaining row names is deleted. Who
  supplied a file decides, not its bytes: the same picture used by another member on their own
  (both 🎨 the same message) stays theirs, and so does another member's result.
- Both then scrub what SQLite keeps of deleted rows: the FTS5 index is merged (its 'delete'
  only adds markers; the prompt words stay in the old segments until a merge), ``secure_delete``
  (set at open) zeroes the freed pages, and a TRUNCATE checkpoint empties the WAL.
- ``sweep_orphans`` deletes files no row points to that are older than a grace period: what a
  crash between storing an input and recording its job leaves, or files of a lost database.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

from storage.connection import Connection, changed, fetchall, fetchone
from storage.files import content_files, remove_files
from storage.jobs import INPUT_ROLES

log = logging.getLogger(__name__)

_CHUNK = 500  # stays well under SQLite's bound-parameter limit


@dataclass(frozen=True)
class ForgetReport:
    jobs: int
    images: int
    files: tuple[Path, ...]  # files deleted from disk
    prefs: int = 0  # preference rows deleted (0 or 1)
    detached: int = 0  # other members' jobs that lost an input the member had supplied


@dataclass(frozen=True)
class PruneReport:
    jobs: int
    images: int
    files: tuple[Path, ...]


async def forget_user(conn: Connection, user_id: int, *, fts: bool = True) -> ForgetReport:
    started = time.time()
    async with conn.transaction() as raw:
        jobs, images, candidates = await _delete_jobs(raw, "user_id = ?", (user_id,))
        detached, inputs = await _detach_inputs(raw, user_id)
        paths = sorted({*candidates, *inputs})
        used = await _referenced(raw, paths)
        gone = [p for p in paths if p not in used]
        prefs = await changed(raw, "DELETE FROM user_prefs WHERE user_id = ?", (user_id,))
        if fts and jobs:
            await _merge_fts(raw)
    if jobs or detached:
        await checkpoint(conn)
    files = await asyncio.to_thread(remove_files, gone, untouched_since=started)
    return ForgetReport(jobs, images, files, prefs, detached)


async def prune_finished(conn: Connection, cutoff: float, *, fts: bool = True) -> PruneReport:
    """Delete delivered, failed, cancelled and undeliverable jobs that finished before ``cutoff`` (Unix time)."""
    started = time.time()
    async with conn.transaction() as raw:
        jobs, images, candidates = await _delete_jobs(
            raw, "(status IN ('delivered', 'failed', 'cancelled') OR undeliverable = 1)"
                 " AND coalesce(finished_at, created_at) < ?",
            (cutoff,),
        )
        still_used = await _referenced(raw, candidates)
        if fts and jobs:
            await _merge_fts(raw)
    if jobs:
        await checkpoint(conn)
    orphans = sorted(p for p in candidates if p not in still_used)
    files = await asyncio.to_thread(remove_files, orphans, untouched_since=started)
    return PruneReport(jobs, images, files)


async def sweep_orphans(conn: Connection, folder: Path, cutoff: float) -> tuple[Path, ...]:
    """Delete the content files under ``folder`` that no image or job file row names and that
    were last stored before ``cutoff`` (Unix time). Files are matched by name (their content
    hash), so rows written under another spelling of the folder still protect their files. The
    rows are read before the folder: a file stored for a new job after that has a fresh mtime."""
    rows = await conn.fetchall("SELECT path FROM images UNION SELECT path FROM job_files")
    names = {Path(row[0]).name for row in rows}

    def sweep() -> tuple[Path, ...]:
        old = [path for path, mtime in content_files(folder) if mtime < cutoff and path.name not in names]
        return remove_files(old, untouched_since=cutoff)

    removed = await asyncio.to_thread(sweep)
    if removed:
        log.info("removed %d stored file(s) no job refers to from %s", len(removed), folder)
    return removed


async def unreferenced(conn: Connection, paths: Sequence[str]) -> list[str]:
    """The paths among ``paths`` that no image or job file row names (e.g. an input stored for a
    job that then could not be recorded)."""
    async with conn.locked() as raw:
        used = await _referenced(raw, list(paths))
    return [p for p in paths if p not in used]


async def checkpoint(conn: Connection) -> None:
    """Copy the WAL into the database file and empty it, so deleted text no longer sits in old
    WAL frames. A reader elsewhere (an admin's sqlite3 shell) can make it incomplete: logged."""
    async with conn.locked() as raw:
        row = await fetchone(raw, "PRAGMA wal_checkpoint(TRUNCATE)")
    if row is not None and row[0]:
        log.warning("could not fully checkpoint the job log after deleting (another connection is reading it); "
                    "the WAL is emptied at the next checkpoint")


async def _merge_fts(raw: aiosqlite.Connection) -> None:
    """Merge the prompt index into one segment: the deleted rows' words leave it for good."""
    await raw.execute("INSERT INTO jobs_fts (jobs_fts) VALUES ('optimize')")


async def _delete_jobs(raw: aiosqlite.Connection, where: str, params: tuple[object, ...]
                       ) -> tuple[int, int, list[str]]:
    """Inside a transaction: delete the jobs matching ``where`` (a constant) with their image and
    file rows; returns (jobs, images, the paths those rows named)."""
    chosen = f"SELECT job_id FROM jobs WHERE {where}"
    candidates = sorted(row[0] for row in await fetchall(
        raw, f"SELECT path FROM images WHERE job_id IN ({chosen}) UNION SELECT path FROM job_files"
             f" WHERE job_id IN ({chosen})", params * 2))
    image_count = await fetchone(raw, f"SELECT count(*) FROM images WHERE job_id IN ({chosen})", params)
    jobs = await changed(raw, f"DELETE FROM jobs WHERE {where}", params)  # images, job_files cascade
    return jobs, int(image_count[0]) if image_count else 0, candidates


async def _referenced(raw: aiosqlite.Connection, paths: list[str]) -> set[str]:
    """The paths among ``paths`` that a remaining image or job file row names."""
    used: set[str] = set()
    for start in range(0, len(paths), _CHUNK):
        chunk = paths[start:start + _CHUNK]
        marks = ", ".join("?" * len(chunk))
        rows = await fetchall(raw, f"SELECT path FROM images WHERE path IN ({marks})"
                                   f" UNION SELECT path FROM job_files WHERE path IN ({marks})", chunk * 2)
        used.update(row[0] for row in rows)
    return used


async def _detach_inputs(raw: aiosqlite.Connection, user_id: int) -> tuple[int, list[str]]:
    """Inside the transaction that deleted the member's own jobs: the other jobs' inputs the member
    supplied go (their job file rows, and their names in the jobs' parameters). Returns how many
    jobs lost an input, and the paths those rows named."""
    roles = ", ".join("?" * len(INPUT_ROLES))
    rows = await fetchall(raw, f"SELECT job_id, role, path FROM job_files WHERE supplied_by = ? AND role IN ({roles})",
                          (user_id, *INPUT_ROLES))
    for row in rows:
        await raw.execute("UPDATE jobs SET params = json_set(params, ?, '') WHERE job_id = ?",
                          (f"$.{row['role']}", row["job_id"]))
    await raw.execute(f"DELETE FROM job_files WHERE supplied_by = ? AND role IN ({roles})", (user_id, *INPUT_ROLES))
    # A ControlNet map is drawn from the control picture (it may be that picture, resized): it goes with it.
    controlled = sorted({row["job_id"] for row in rows if row["role"] == "control_image"})
    maps: list[str] = []
    for job_id in controlled:
        found = await fetchall(raw, "SELECT path FROM job_files WHERE job_id = ? AND role GLOB 'extra:*:control'",
                               (job_id,))
        maps += [r["path"] for r in found]
        await raw.execute("DELETE FROM job_files WHERE job_id = ? AND role GLOB 'extra:*:control'", (job_id,))
    return len({row["job_id"] for row in rows}), [row["path"] for row in rows] + maps
