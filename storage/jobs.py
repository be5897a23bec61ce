"""The job log: every request, committed before the member is told it is queued.

Life of a job: ``queued → running → done | failed | cancelled``; a finished job with something
to post (``done``/``failed``) then goes ``delivering → delivered`` through :meth:`JobLog.begin_delivery`
and :meth:`JobLog.mark_delivered`, which make posting happen at most once per process and leave a
trace (``delivering``) when a crash hits between posting and recording. The message that will carry
the result is recorded (:meth:`JobLog.set_status_message`) when it is created, so a post cut short
by a crash is finished by editing that very message. A post that failed goes back to ``done``/
``failed`` with a time to try again (:meth:`JobLog.delivery_failed`), or for good as ``undeliverable``.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from storage.connection import Connection, executemany, fetchall, fetchone
from storage.rows import DELIVERABLE, STATUSES, HistoryPage, JobRow, job_from_row
from storage.search import history_filter

INPUT_ROLES = ("init_image", "mask_image", "control_image", "style_image")  # params keys naming input files the job owns
MAX_PAGE = 100


class JobsMissing(LookupError):
    """Jobs a write was about are not (or no longer) in the job log; ``job_ids`` names them."""

    def __init__(self, job_ids: Sequence[str]) -> None:
        self.job_ids = tuple(job_ids)
        super().__init__(f"there is no job {', '.join(self.job_ids)}")


async def missing_jobs(conn: Connection, job_ids: Sequence[str]) -> list[str]:
    """The ids among ``job_ids`` that are not in the job log, in their order, once each."""
    ids = list(dict.fromkeys(job_ids))
    if not ids:
        return []
    rows = await conn.fetchall(f"SELECT job_id FROM jobs WHERE job_id IN ({', '.join('?' * len(ids))})", ids)
    known = {row["job_id"] for row in rows}
    return [job_id for job_id in ids if job_id not in known]


def finished_rows(rows: Sequence[sqlite3.Row]) -> dict[str, JobRow]:
    """The rows :meth:`JobLog.finish_statement` returned, by job id."""
    return {row["job_id"]: job_from_row(row) for row in rows}


class JobLog:
    def __init__(self, conn: Connection, *, clock: Callable[[], float] = time.time, fts: bool = True) -> None:
        self._conn = conn
        self._clock = clock
        self.fts = fts  # False: prompt search falls back to LIKE

    # ------------------------------------------------------------------ writing

    async def add(self, *, job_id: str, kind: str, user_id: int, guild_id: int | None, channel_id: int,
                  params: dict[str, Any], interaction_id: int | None = None, interaction_token: str | None = None,
                  application_id: int | None = None, request_message_id: int | None = None,
                  suppliers: Mapping[str, int] | None = None) -> JobRow:
        """Record a new ``queued`` job and its input files; committed when this returns.

        ``suppliers``: who supplied each input (role → member) where it is not the job's owner: the
        original's supplier for a Reroll/Redo, a result's owner for a variation of that result.
        /forget of a member takes the inputs they supplied from other members' jobs
        (storage/retention.py)."""
        prompt = params.get("prompt")
        given = suppliers or {}
        inputs = [(job_id, role, str(params[role]), given.get(role, user_id)) for role in INPUT_ROLES
                  if params.get(role)]
        try:
            params_json = json.dumps(params, separators=(",", ":"))
        except (TypeError, ValueError) as err:
            raise ValueError(f"job {job_id}: parameters are not JSON-serialisable ({err})") from err
        insert = (
            "INSERT INTO jobs (job_id, kind, user_id, guild_id, channel_id, interaction_id, interaction_token,"
            " application_id, request_message_id, params, prompt, status, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?) RETURNING *"
        )
        values = (job_id, kind, user_id, guild_id, channel_id, interaction_id, interaction_token, application_id,
                  request_message_id, params_json, prompt if isinstance(prompt, str) else None, self._clock())
        try:
            if not inputs:  # one statement: committed by itself
                row = await self._conn.fetchone(insert, values)
            else:
                async with self._conn.transaction() as raw:
                    row = await fetchone(raw, insert, values)
                    await executemany(raw, "INSERT INTO job_files (job_id, role, path, supplied_by)"
                                           " VALUES (?, ?, ?, ?)", inputs)
        except sqlite3.IntegrityError as err:
            raise ValueError(f"job {job_id} is already in the job log") from err
        assert row is not None
        return job_from_row(row)

    async def add_file(self, job_id: str, path: str | Path, *, role: str) -> None:
        """Record another file the job owns (e.g. ``role="grid"``) so forget/prune delete it too."""
        try:
            await self._conn.execute(
                "INSERT INTO job_files (job_id, role, path) VALUES (?, ?, ?)"
                " ON CONFLICT (job_id, role) DO UPDATE SET path = excluded.path",
                (job_id, role, str(path)),
            )
        except sqlite3.IntegrityError as err:
            raise LookupError(f"there is no job {job_id}") from err

    async def files(self, job_id: str) -> dict[str, Path]:
        """The job's own files by role (inputs, grid); result images are in ``Images``."""
        rows = await self._conn.fetchall("SELECT role, path FROM job_files WHERE job_id = ?", (job_id,))
        return {row["role"]: Path(row["path"]) for row in rows}

    async def suppliers(self, job_id: str) -> dict[str, int]:
        """Who supplied each input file of the job (role → member; rows older than schema 7: the
        job's owner). A Reroll or Redo of the job names the same files from the same members."""
        rows = await self._conn.fetchall(
            "SELECT f.role, coalesce(f.supplied_by, j.user_id) AS supplier FROM job_files AS f"
            f" JOIN jobs AS j ON j.job_id = f.job_id WHERE f.job_id = ? AND f.role IN {_sql_list(INPUT_ROLES)}",
            (job_id,))
        return {row["role"]: int(row["supplier"]) for row in rows}

    async def set_status(self, job_id: str, status: str, *, error: str | None = None) -> None:
        """Move a job to ``queued``, ``running``, ``done``, ``failed`` or ``cancelled``.

        Sets ``started_at`` on running and ``finished_at`` on done/failed/cancelled. A ``delivered``
        job never moves back (the call does nothing). Delivery has its own atomic methods:
        ``begin_delivery``/``mark_delivered``/``release_delivery``.
        """
        await self.set_statuses([job_id], status, error=error)

    async def set_statuses(self, job_ids: Sequence[str], status: str, *, error: str | None = None) -> None:
        """:meth:`set_status` for several jobs in one statement, one trip to SQLite's thread (a batch
        that started or finished together). Raises JobsMissing (a LookupError) naming the jobs that
        are not in the log; the others are moved all the same."""
        if status not in STATUSES:
            raise ValueError(f"unknown job status {status!r} (one of {', '.join(STATUSES)})")
        if status in ("delivering", "delivered"):
            raise ValueError(f"status {status!r} is set by begin_delivery/mark_delivered, not set_status")
        if not job_ids:
            return
        marks = ", ".join(f"?{n}" for n in range(4, 4 + len(job_ids)))
        count = await self._conn.execute(  # one statement: all of them or none
            "UPDATE jobs SET status = ?1,"
            " error = CASE WHEN ?1 IN ('queued', 'running') THEN NULL ELSE coalesce(?2, error) END,"
            " started_at = CASE ?1 WHEN 'running' THEN ?3 WHEN 'queued' THEN NULL ELSE started_at END,"
            " finished_at = CASE WHEN ?1 IN ('done', 'failed', 'cancelled') THEN ?3"
            "   WHEN ?1 IN ('queued', 'running') THEN NULL ELSE finished_at END,"
            " prior_status = NULL"
            f" WHERE job_id IN ({marks}) AND status != 'delivered'",
            [status, error, self._clock(), *job_ids],
        )
        missing = [] if count == len(set(job_ids)) else await self.missing(job_ids)  # or delivered ones
        if missing:
            raise JobsMissing(missing)

    def finish_statement(self, job_ids: Sequence[str], *, claim: bool) -> tuple[str, list[Any]]:
        """The statement that records finished jobs (at least one) as ``done``; with ``claim``, as
        ``delivering`` straight away: claimed for the poster that asked the studio for it, exactly
        as :meth:`begin_delivery` would (prior status ``done``, so :meth:`release_delivery` puts a
        job whose post failed back). It returns the rows as recorded (:func:`finished_rows`); a
        job not in the log, or delivered already, is left alone. Run by
        ``Database.record_results``, after the jobs' images."""
        marks = ", ".join(f"?{n}" for n in range(4, 4 + len(job_ids)))
        return ("UPDATE jobs SET status = ?1, prior_status = ?2, finished_at = ?3"
                f" WHERE job_id IN ({marks}) AND status != 'delivered' RETURNING *",
                ["delivering" if claim else "done", "done" if claim else None, self._clock(), *job_ids])

    @staticmethod
    def texts_statement(job_id: str, texts: Sequence[str]) -> tuple[str, list[Any]]:
        """The statement that stores a text result (/describe's suggestions) with its job, in its
        parameters under ``result``: it lives and dies with the job row (retention, /forget)."""
        return ("UPDATE jobs SET params = json_set(params, '$.result', json(?)) WHERE job_id = ?",
                [json.dumps(list(texts)), job_id])

    # ------------------------------------------------------------------ start-up and delivery

    async def recover(self) -> list[JobRow]:
        """Jobs to put back in the queue after a restart, in their original order.

        ``running`` jobs were interrupted mid-way: they go back to ``queued`` and run again.
        """
        async with self._conn.transaction() as raw:
            await raw.execute("UPDATE jobs SET status = 'queued', started_at = NULL WHERE status = 'running'")
            rows = await fetchall(raw, "SELECT * FROM jobs WHERE status = 'queued' ORDER BY seq")
        return [job_from_row(r) for r in rows]

    async def begin_delivery(self, job_id: str) -> bool:
        """Claim the right to post a finished job's result: ``done|failed → delivering``.

        One UPDATE guarded by the current status, so of any number of callers exactly one gets
        True. False: the job is already being (or was) delivered, has not finished, or is undeliverable.
        """
        count = await self._conn.execute(
            "UPDATE jobs SET prior_status = status, status = 'delivering'"
            f" WHERE job_id = ? AND status IN {_sql_list(DELIVERABLE)} AND undeliverable = 0",
            (job_id,),
        )
        return count == 1

    async def mark_delivered(self, job_id: str, *, channel_id: int, message_id: int) -> None:
        """Record in one statement that the result is message ``message_id`` and the job ``delivered``.
        The interaction token is dropped with it: nothing needs it once the result is posted.

        Calling it again for a delivered job does nothing (the first message stays recorded).
        """
        count = await self._conn.execute(
            "UPDATE jobs SET status = 'delivered', delivered_at = ?, result_channel_id = ?,"
            " result_message_id = ?, prior_status = NULL, interaction_token = NULL, next_delivery_at = NULL,"
            " delivery_error = NULL"
            f" WHERE job_id = ? AND status IN ('delivering', {_sql_items(DELIVERABLE)})",
            (self._clock(), channel_id, message_id, job_id),
        )
        if count == 0:  # why not: the answer only shapes the error
            row = await self._conn.fetchone("SELECT status FROM jobs WHERE job_id = ?", (job_id,))
            if row is None:
                raise LookupError(f"there is no job {job_id}")
            if row["status"] != "delivered":
                raise ValueError(f"job {job_id} is {row['status']}: there is no result to deliver yet")

    async def release_delivery(self, job_id: str) -> bool:
        """Posting failed: ``delivering`` goes back to the status it had (done/failed) to be tried again."""
        count = await self._conn.execute(
            "UPDATE jobs SET status = prior_status, prior_status = NULL"
            f" WHERE job_id = ? AND status = 'delivering' AND prior_status IN {_sql_list(DELIVERABLE)}",
            (job_id,),
        )
        return count == 1

    async def delivery_failed(self, job_id: str, error: str, *, retry_at: float | None) -> JobRow | None:
        """A post failed: ``delivering`` goes back to done/failed, counting the attempt and keeping
        ``error``. With ``retry_at`` (Unix time) it is due again then; without, it is marked
        undeliverable and never claimed again. Returns the row as recorded (None: it was not
        ``delivering``, e.g. forgotten meanwhile)."""
        row = await self._conn.fetchone(
            "UPDATE jobs SET status = prior_status, prior_status = NULL, delivery_attempts = delivery_attempts + 1,"
            " delivery_error = ?, next_delivery_at = ?, undeliverable = ?"
            f" WHERE job_id = ? AND status = 'delivering' AND prior_status IN {_sql_list(DELIVERABLE)} RETURNING *",
            (error, retry_at, 0 if retry_at is not None else 1, job_id),
        )
        return job_from_row(row) if row is not None else None

    async def set_status_message(self, job_id: str, message_id: int) -> None:
        """Record the message that will carry the job's result, as soon as it exists (before anything
        is uploaded into it): after a crash the result is finished by editing exactly this message."""
        await self._conn.execute("UPDATE jobs SET status_message_id = ? WHERE job_id = ?", (message_id, job_id))

    async def clear_interaction_tokens(self, created_before: float) -> int:
        """Forget the interaction tokens of jobs created before ``created_before`` (Discord's tokens
        live 15 minutes); returns how many were dropped."""
        return await self._conn.execute(
            "UPDATE jobs SET interaction_token = NULL WHERE interaction_token IS NOT NULL AND created_at < ?",
            (created_before,),
        )

    async def undelivered(self, *, due_by: float | None = None) -> list[JobRow]:
        """Finished jobs whose result has not been recorded as posted, oldest first; never the
        undeliverable ones.

        ``done``/``failed``: not posted; call ``begin_delivery`` and post. ``delivering``: the
        process stopped between creating or filling the result's message and ``mark_delivered``.
        The poster releases it (``release_delivery``) and posts again into ``status_message_id``,
        an edit that leaves the same message whether or not the first upload arrived.
        ``row.outcome`` says whether to post images or the error.

        With ``due_by`` (a Unix time): only done/failed jobs whose failed post is due for another
        try by then (``next_delivery_at``), the running process's retries.
        """
        if due_by is None:
            rows = await self._conn.fetchall(
                f"SELECT * FROM jobs WHERE status IN ('delivering', {_sql_items(DELIVERABLE)})"
                " AND undeliverable = 0 ORDER BY seq"
            )
        else:
            rows = await self._conn.fetchall(
                f"SELECT * FROM jobs WHERE status IN {_sql_list(DELIVERABLE)} AND undeliverable = 0"
                " AND next_delivery_at <= ? ORDER BY next_delivery_at, seq", (due_by,)
            )
        return [job_from_row(r) for r in rows]

    async def next_delivery_due(self) -> float | None:
        """When the earliest failed post is due for another try (Unix time), or None."""
        row = await self._conn.fetchone(
            "SELECT min(next_delivery_at) FROM jobs WHERE next_delivery_at IS NOT NULL"
            f" AND status IN {_sql_list(DELIVERABLE)} AND undeliverable = 0"
        )
        return float(row[0]) if row is not None and row[0] is not None else None

    # ------------------------------------------------------------------ reading

    async def get(self, job_id: str) -> JobRow | None:
        row = await self._conn.fetchone("SELECT * FROM jobs WHERE job_id = ?", (job_id,))
        return job_from_row(row) if row is not None else None

    async def by_message(self, message_id: int) -> JobRow | None:
        """The job whose result was posted as ``message_id`` (job's result message or an image's)."""
        row = await self._conn.fetchone(
            "SELECT * FROM jobs WHERE result_message_id = :m"
            " OR job_id IN (SELECT job_id FROM images WHERE message_id = :m) ORDER BY seq LIMIT 1",
            {"m": message_id},
        )
        return job_from_row(row) if row is not None else None

    async def history(self, *, user_id: int | None = None, guild_id: int | None = None, kind: str | None = None,
                      search: str | None = None, limit: int = 10, offset: int = 0) -> HistoryPage:
        """One page of jobs, newest first, scoped to a member (``user_id``) and/or a guild (``guild_id``)."""
        if not 1 <= limit <= MAX_PAGE:
            raise ValueError(f"limit must be between 1 and {MAX_PAGE}")
        if offset < 0:
            raise ValueError("offset must not be negative")
        filt = history_filter(user_id=user_id, guild_id=guild_id, kind=kind, search=search, fts=self.fts)
        if filt is None:
            return HistoryPage([], 0)
        async with self._conn.locked() as raw:
            rows = await fetchall(raw, f"SELECT * FROM jobs WHERE {filt.where} ORDER BY seq DESC LIMIT ? OFFSET ?",
                                  [*filt.params, limit, offset])
            total = await fetchone(raw, f"SELECT count(*) FROM jobs WHERE {filt.where}", filt.params)
        return HistoryPage([job_from_row(r) for r in rows], int(total[0]) if total else 0)

    async def missing(self, job_ids: Sequence[str]) -> list[str]:
        """The ids among ``job_ids`` that are not (or no longer) in the log, in order, once each."""
        return await missing_jobs(self._conn, job_ids)

    async def counts(self) -> dict[str, int]:
        """Jobs per status, every status present (0 when none)."""
        rows = await self._conn.fetchall("SELECT status, count(*) AS n FROM jobs GROUP BY status")
        counts = dict.fromkeys(STATUSES, 0)
        counts.update({row["status"]: row["n"] for row in rows})
        return counts


def _sql_items(values: tuple[str, ...]) -> str:
    """Constant status names as SQL literals (never member input)."""
    return ", ".join(f"'{v}'" for v in values)


def _sql_list(values: tuple[str, ...]) -> str:
    return f"({_sql_items(values)})"
