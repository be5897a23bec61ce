"""Single statements from different coroutines, run together in one trip to SQLite's thread.

aiosqlite runs every statement on its worker thread and wakes the event loop for each result, so
each statement costs two thread wake-ups. In a busy bot those wake-ups take the interpreter lock
from the GPU thread (bench/contention.py measured the job log's trips as the one clear share of
that). Statements that arrive in the same turn of the event loop, or while the connection is busy,
are independent (each commits by itself in autocommit mode), so they can share one trip: the
worker runs them one after the other, in the order they were issued, and each caller gets its own
row count, rows or exception, exactly as if it had run alone.

Only the batching is new: a statement still waits for the connection's lock (a transaction in
progress finishes first and never contains it), and one statement's failure is its own.

A *sequence* (:meth:`StatementBatcher.submit_sequence`) is several statements of one caller that
belong together in order, each run only if the ones before it succeeded (each still commits by
itself): what awaiting them one after the other would do, in one trip instead of several.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiosqlite

Params = Sequence[Any] | dict[str, Any]


Plain = tuple[str, Params, bool]  # sql, parameters, whether to fetch rows
Item = Plain | list[Plain]  # one statement, or a sequence run in order until one fails


@dataclass
class _Statement:
    sql: str | list[Plain]  # a list: a sequence (its result is the list of their results)
    params: Params
    rows: bool  # True: fetch every row (SELECT, ... RETURNING); False: the number of rows changed
    future: asyncio.Future[Any] = field(repr=False)


def _run_one(conn: sqlite3.Connection, sql: str, params: Params, rows: bool) -> Any:
    cursor = conn.execute(sql, params)
    try:
        return cursor.fetchall() if rows else cursor.rowcount
    finally:
        cursor.close()


def run_statements(conn: sqlite3.Connection, statements: Sequence[Item]) -> list[Any]:
    """On SQLite's thread: run each statement by itself; a result (row count or rows) or the
    exception it raised, per statement (per sequence: the list of results, or the first exception)."""
    out: list[Any] = []
    for item in statements:
        try:
            if isinstance(item, list):
                out.append([_run_one(conn, *statement) for statement in item])
            else:
                out.append(_run_one(conn, *item))
        except Exception as exc:  # noqa: BLE001  (handed to the statement's own caller)
            out.append(exc)
    return out


class StatementBatcher:
    """Collects single statements and runs them, under ``lock``, a batch per trip to the thread."""

    def __init__(self, raw: aiosqlite.Connection, lock: asyncio.Lock, is_closed: Callable[[], bool]) -> None:
        self._raw = raw
        self._lock = lock
        self._is_closed = is_closed
        self._pending: list[_Statement] = []
        self._flusher: asyncio.Task[None] | None = None
        self.trips = 0  # trips to SQLite's thread so far (for tests and benches)

    def submit(self, sql: str, params: Params, *, rows: bool) -> asyncio.Future[Any]:
        """Queue one statement; await the result. A caller cancelled before its batch runs drops it."""
        return self._queue(sql, params, rows)

    def submit_sequence(self, statements: list[Plain]) -> asyncio.Future[list[Any]]:
        """Queue statements to run in this order, each only if the ones before it succeeded; await
        the list of their results, or the first exception."""
        return self._queue(list(statements), (), True)

    def _queue(self, sql: str | list[Plain], params: Params, rows: bool) -> asyncio.Future[Any]:
        if self._is_closed():
            raise RuntimeError("the database is closed")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append(_Statement(sql, params, rows, future))
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush())
        return future

    async def run_pending(self) -> None:
        """Run what is queued now, for a caller that already holds the lock (closing)."""
        batch, self._pending = self._pending, []
        if batch:
            await self._run(batch)

    async def _flush(self) -> None:
        batch: list[_Statement] | None = None
        try:
            async with self._lock:
                self._flusher = None  # statements from now on go in the next batch
                batch, self._pending = self._pending, []
                if self._is_closed():
                    _fail(batch, RuntimeError("the database is closed"))
                else:
                    await self._run(batch)
        except asyncio.CancelledError:  # the loop is shutting down: no caller may wait forever
            if batch is None:  # cancelled while waiting for the lock: this batch never ran
                self._flusher = None
                batch, self._pending = self._pending, []
            _fail(batch, RuntimeError("the database is closing"))
            raise

    async def _run(self, batch: list[_Statement]) -> None:
        live = [s for s in batch if not s.future.cancelled()]  # a cancelled caller's statement is dropped
        if not live:
            return
        self.trips += 1
        try:
            results = await _on_thread(self._raw, [s.sql if isinstance(s.sql, list) else (s.sql, s.params, s.rows)
                                                   for s in live])
        except asyncio.CancelledError:
            _fail(live, RuntimeError("the database is closing"))
            raise
        except Exception as exc:  # the connection itself failed (e.g. closed underneath): every caller hears
            _fail(live, exc)
            return
        for statement, result in zip(live, results, strict=True):
            if statement.future.done():
                continue
            if isinstance(result, BaseException):
                statement.future.set_exception(result)
            else:
                statement.future.set_result(result)


async def _on_thread(raw: aiosqlite.Connection, statements: list[Item]) -> list[Any]:
    """One trip to aiosqlite's worker thread for all ``statements``.

    ``aiosqlite.Connection._execute`` (run a function on the worker thread) is not public API; it
    has been there, unchanged, since aiosqlite 0.13. Without it the statements run one per trip
    through the public API, with the same results.
    """
    execute = getattr(raw, "_execute", None)
    connection = getattr(raw, "_connection", None)
    if execute is not None and connection is not None:
        return list(await execute(run_statements, connection, statements))
    out: list[Any] = []
    for item in statements:
        try:
            if isinstance(item, list):
                out.append([await _public_one(raw, *statement) for statement in item])
            else:
                out.append(await _public_one(raw, *item))
        except Exception as exc:  # noqa: BLE001  (handed to the statement's own caller)
            out.append(exc)
    return out


async def _public_one(raw: aiosqlite.Connection, sql: str, params: Params, rows: bool) -> Any:
    if rows:
        return list(await raw.execute_fetchall(sql, params))
    return (await raw.execute(sql, params)).rowcount


def _fail(batch: list[_Statement], exc: BaseException) -> None:
    for statement in batch:
        if not statement.future.done():
            statement.future.set_exception(exc)
