"""The database: one aiosqlite connection in WAL mode, migrated at open, with the job log,
images and settings hanging off it."""

from __future__ import annotations

import asyncio
import logging
import math
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiosqlite

from storage import migrations
from storage.channels import Channels
from storage.connection import Connection, fetchone
from storage.extras import Extras
from storage.extras import insert_statement as extras_statement
from storage.files import total_size
from storage.images import Images, NewImage, insert_statement
from storage.jobs import INPUT_ROLES, JobLog, JobsMissing, finished_rows, missing_jobs
from storage.quotas import Quotas
from storage.retention import (
    ForgetReport,
    PruneReport,
    forget_user,
    prune_finished,
    sweep_orphans,
    unreferenced,
)
from storage.rows import JobRow
from storage.settings import Settings
from storage.stats import JobTiming, job_timings

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 5000
DAY = 86_400.0


class Database:
    """Open with ``await Database.open(path)``; close with ``await db.close()``."""

    def __init__(self, conn: Connection, path: Path, *, clock: Callable[[], float], fts: bool) -> None:
        self._conn = conn
        self.path = path
        self._clock = clock
        self.jobs = JobLog(conn, clock=clock, fts=fts)
        self.images = Images(conn)
        self.extras = Extras(conn)
        self.settings = Settings(conn, clock=clock)
        self.quotas = Quotas(conn, clock=clock)  # daily image limits and usage (storage/quotas.py)
        self.channels = Channels(conn, clock=clock)

    async def job_timings(self, since: float) -> list[JobTiming]:
        """Kind, model, status and times of every job asked for since ``since`` (storage/stats.py)."""
        return await job_timings(self._conn, since)

    @classmethod
    async def open(cls, path: str | Path, *, clock: Callable[[], float] = time.time) -> Database:
        """Open (creating folder and file if needed) and migrate to the newest schema.

        ``synchronous=NORMAL`` in WAL mode: a commit survives the process being killed; only a
        power loss can take back the last commits. ``secure_delete``: deleted rows (a forgotten
        member's prompts) are overwritten with zeros, not left in free pages. ``clock`` gives Unix
        times (tests inject one).
        """
        path = Path(path)
        await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
        known = await asyncio.to_thread(migrations.load)
        raw = await aiosqlite.connect(path, isolation_level=None)
        try:
            raw.row_factory = sqlite3.Row
            await raw.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS:d}")
            mode = await _switch_to_wal(raw)
            if mode is None or str(mode[0]).lower() != "wal":
                log.warning("SQLite would not use WAL for %s (journal mode %s)", path, mode[0] if mode else "?")
            await raw.execute("PRAGMA foreign_keys = ON")
            await raw.execute("PRAGMA synchronous = NORMAL")
            await raw.execute("PRAGMA secure_delete = ON")
            await migrations.apply(raw, known)
            fts = await fetchone(raw, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'jobs_fts'")
        except BaseException:
            await raw.close()
            raise
        if fts is None:
            log.warning("this SQLite has no FTS5: /history search falls back to LIKE")
        return cls(Connection(raw), path, clock=clock, fts=fts is not None)

    async def close(self) -> None:
        await self._conn.close()

    async def record_results(self, images: Sequence[NewImage], job_ids: Sequence[str], *,
                             claim: bool = False, texts: Mapping[str, Sequence[str]] | None = None,
                             extras: Mapping[str, Sequence[tuple[str, str | Path]]] | None = None
                             ) -> dict[str, JobRow]:
        """Record finished jobs' images (``Images.add_many``), then the jobs as finished
        (``JobLog.finish_statement``: done, or with ``claim`` claimed for posting) in one trip to SQLite's
        thread; the jobs are recorded finished only once their images are. Returns the jobs' rows
        by id (one that left the log meanwhile is left out). Raises JobsMissing (a LookupError),
        recording nothing, when one of the images' jobs is not in the log. ``texts``: text results
        by job (``JobLog.texts_statement``), written before the jobs are recorded finished; ``extras``:
        pictures shown with a result, ``(label, path)`` by job (storage/extras.py), likewise."""
        statements: list[tuple[str, Any, bool]] = []
        for job_id, lines in (texts or {}).items():
            statements.append((*self.jobs.texts_statement(job_id, lines), False))
        for job_id, pictures in (extras or {}).items():  # each statement commits alone: a failing
            if pictures:  # one records nothing of what comes after it (the images, the finish)
                statements.append((*extras_statement(job_id, pictures), False))
        if images:
            statements.append((*insert_statement(images), False))
        if job_ids:
            statements.append((*self.jobs.finish_statement(job_ids, claim=claim), True))
        if not statements:
            return {}
        try:
            results = await self._conn.run_in_order(statements)
        except sqlite3.IntegrityError as err:  # only the inserts of images and extras can break one
            raise JobsMissing(await missing_jobs(self._conn, [*(i.job_id for i in images), *(extras or {})])) from err
        return finished_rows(results[-1]) if job_ids else {}

    async def schema_version(self) -> int:
        row = await self._conn.fetchone("PRAGMA user_version")
        return int(row[0]) if row is not None else 0

    async def forget(self, user_id: int) -> ForgetReport:
        """Delete a member's jobs, images, preferences and files, take the inputs the member supplied
        from other members' jobs (not other members' own pictures or results), and scrub the
        deleted text from the database files (storage/retention.py)."""
        self.settings.forget_cached(user_id)
        try:
            return await forget_user(self._conn, user_id, fts=self.jobs.fts)
        finally:
            self.settings.forget_cached(user_id)  # its preferences row is gone

    async def sweep_orphans(self, folder: str | Path, *, older_than_s: float) -> tuple[Path, ...]:
        """Delete files under ``folder`` that no row names and that were stored more than
        ``older_than_s`` seconds ago; returns them."""
        # File times are wall-clock times, not the job log's (injectable) clock.
        return await sweep_orphans(self._conn, Path(folder), time.time() - older_than_s)

    async def unreferenced(self, paths: Sequence[str]) -> list[str]:
        """The paths among ``paths`` no image or job file row names."""
        return await unreferenced(self._conn, paths)

    async def stored_input_bytes(self, user_id: int) -> int:
        """The bytes the input files of a member's jobs (uploads, masks) take on disk, each file once."""
        rows = await self._conn.fetchall(
            "SELECT DISTINCT f.path FROM job_files AS f JOIN jobs AS j ON j.job_id = f.job_id"
            f" WHERE j.user_id = ? AND f.role IN ({', '.join('?' * len(INPUT_ROLES))})", (user_id, *INPUT_ROLES))
        return await asyncio.to_thread(total_size, [row[0] for row in rows])

    async def prune(self, older_than_days: float, *, now: float | None = None) -> PruneReport:
        """Delete delivered/failed/cancelled jobs finished more than ``older_than_days`` ago, with
        their images and unshared files. Queued, running and undelivered results are kept."""
        if isinstance(older_than_days, bool) or not math.isfinite(older_than_days) or older_than_days <= 0:
            raise ValueError(f"older_than_days must be a positive number of days, not {older_than_days!r}")
        now = self._clock() if now is None else now
        return await prune_finished(self._conn, now - older_than_days * DAY, fts=self.jobs.fts)


async def _switch_to_wal(raw: aiosqlite.Connection) -> sqlite3.Row | None:
    """``PRAGMA journal_mode = WAL``, retried while another process switches the same new file.

    Two connections converting a file at once can get "database is locked" at once, without the
    busy timeout being waited (SQLite refuses to wait where waiting could deadlock); the other
    side finishes within milliseconds, so try again until the busy timeout has passed.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            return await fetchone(raw, "PRAGMA journal_mode = WAL")
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or time.monotonic() >= deadline:
                raise
        await asyncio.sleep(0.01)
