"""Deleting jobs together with the files only they used: ``forget(user)`` and ``prune(days)``.

Files are content-addressed, so one file can belong to several jobs (the same upload twice, or a
result another member varied). A file is deleted only when no remaining image or job file row
points to it. Rows go first (one transaction), files after, and a file saved again since the
transaction began is kept (see ``remove_files``).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

from storage.connection import Connection, changed, fetchall, fetchone
from storage.files import remove_files

_CHUNK = 500  # stays well under SQLite's bound-parameter limit


@dataclass(frozen=True)
class ForgetReport:
    jobs: int
    images: int
    files: tuple[Path, ...]  # files deleted from disk
    prefs: int = 0  # preference rows deleted (0 or 1)


@dataclass(frozen=True)
class PruneReport:
    jobs: int
    images: int
    files: tuple[Path, ...]


async def forget_user(conn: Connection, user_id: int) -> ForgetReport:
    started = time.time()
    async with conn.transaction() as raw:
        jobs, images, orphans = await _delete_jobs(raw, "user_id = ?", (user_id,))
        prefs = await changed(raw, "DELETE FROM user_prefs WHERE user_id = ?", (user_id,))
    files = await asyncio.to_thread(remove_files, orphans, untouched_since=started)
    return ForgetReport(jobs, images, files, prefs)


async def prune_finished(conn: Connection, cutoff: float) -> PruneReport:
    """Delete delivered, failed, cancelled and undeliverable jobs that finished before ``cutoff`` (Unix time)."""
    started = time.time()
    async with conn.transaction() as raw:
        jobs, images, orphans = await _delete_jobs(
            raw, "(status IN ('delivered', 'failed', 'cancelled') OR undeliverable = 1)"
                 " AND coalesce(finished_at, created_at) < ?",
            (cutoff,),
        )
    files = await asyncio.to_thread(remove_files, orphans, untouched_since=started)
    return PruneReport(jobs, images, files)


async def _delete_jobs(raw: aiosqlite.Connection, where: str, params: tuple[object, ...]
                       ) -> tuple[int, int, list[str]]:
    """Inside a transaction: delete the jobs matching ``where`` (a constant) with their image and
    file rows; returns (jobs, images, paths no remaining row refers to)."""
    chosen = f"SELECT job_id FROM jobs WHERE {where}"
    candidates = [row[0] for row in await fetchall(
        raw, f"SELECT path FROM images WHERE job_id IN ({chosen}) UNION SELECT path FROM job_files"
             f" WHERE job_id IN ({chosen})", params * 2)]
    image_count = await fetchone(raw, f"SELECT count(*) FROM images WHERE job_id IN ({chosen})", params)
    jobs = await changed(raw, f"DELETE FROM jobs WHERE {where}", params)  # images, job_files cascade
    still_used: set[str] = set()
    for start in range(0, len(candidates), _CHUNK):
        chunk = candidates[start:start + _CHUNK]
        marks = ", ".join("?" * len(chunk))
        rows = await fetchall(raw, f"SELECT path FROM images WHERE path IN ({marks})"
                                   f" UNION SELECT path FROM job_files WHERE path IN ({marks})", chunk * 2)
        still_used.update(row[0] for row in rows)
    orphans = sorted(p for p in candidates if p not in still_used)
    return jobs, int(image_count[0]) if image_count else 0, orphans
