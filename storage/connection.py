"""The one SQLite connection of the process, shared by the job log, images and settings.

aiosqlite runs every statement on its own worker thread, so nothing here blocks the event loop.
The connection is in autocommit mode (``isolation_level=None``): a single statement commits by
itself, and multi-statement changes use :meth:`Connection.transaction` (``BEGIN IMMEDIATE`` …
``COMMIT``). Every use goes through one :class:`asyncio.Lock`: with a single connection, a
statement issued by one coroutine while another has a transaction open would silently join (and
be rolled back with) that transaction. Single statements (:meth:`Connection.execute`,
:meth:`~Connection.fetchone`, :meth:`~Connection.fetchall`) issued at the same time take the lock
together and share one trip to the worker thread (storage/batched.py).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import aiosqlite

from storage.batched import Params, StatementBatcher

log = logging.getLogger(__name__)
T = TypeVar("T")


class Connection:
    """A locked, autocommit aiosqlite connection with small helpers."""

    def __init__(self, raw: aiosqlite.Connection) -> None:
        self._raw = raw
        self._lock = asyncio.Lock()
        self._closed = False
        self._batcher = StatementBatcher(raw, self._lock, lambda: self._closed)

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the database is closed")

    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement (committed at once); returns the number of rows it changed.

        This and :meth:`fetchone`/:meth:`fetchall` share trips to SQLite's thread with the other
        single statements issued at the same time (storage/batched.py); each still runs and
        commits by itself, in the order issued, outside any transaction."""
        return int(await self._batcher.submit(sql, params, rows=False))

    async def fetchone(self, sql: str, params: Params = ()) -> sqlite3.Row | None:
        """The first row of a query that returns at most a few (also ``INSERT … RETURNING``)."""
        rows = await self._batcher.submit(sql, params, rows=True)
        return next(iter(rows), None)

    async def fetchall(self, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        return list(await self._batcher.submit(sql, params, rows=True))

    async def run_in_order(self, statements: list[tuple[str, Params, bool]]) -> list[Any]:
        """Statements ``(sql, params, fetch_rows)`` run in this order, each only if the ones before
        it succeeded, each committed by itself (like awaiting them one by one), in one trip to
        SQLite's thread. Returns their results (rows or row counts); raises the first failure."""
        return list(await self._batcher.submit_sequence(statements))

    @asynccontextmanager
    async def locked(self) -> AsyncIterator[aiosqlite.Connection]:
        """Exclusive use of the connection without a transaction (e.g. two reads that belong together)."""
        async with self._lock:
            self._check_open()
            yield self._raw

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """``BEGIN IMMEDIATE`` … ``COMMIT``, rolled back if the body raises (or is cancelled).

        IMMEDIATE takes the write lock up front, so a second process writing the same file waits
        (busy_timeout) at BEGIN instead of failing half-way through.
        """
        async with self._lock:
            self._check_open()
            await self._raw.execute("BEGIN IMMEDIATE")
            try:
                yield self._raw
            except BaseException:
                if self._raw.in_transaction:  # SQLite may already have rolled back (e.g. disk full)
                    await self._raw.execute("ROLLBACK")
                raise
            await self._raw.execute("COMMIT")

    async def close(self) -> None:
        """Close the connection once the statements already waiting for the lock have run."""
        async with self._lock:
            if self._closed:
                return
            await self._batcher.run_pending()
            self._closed = True
            await self._raw.close()


def is_busy(err: BaseException) -> bool:
    """SQLite's "database is locked" (or busy): another connection or program held the write lock for
    longer than ``busy_timeout``. Nothing was written; the same write may simply be tried again."""
    return isinstance(err, sqlite3.OperationalError) and any(w in str(err).lower() for w in ("locked", "busy"))


# Waits between tries of a write the job log refused as locked (doubling), and how long to keep trying.
LOCKED_FIRST_WAIT_S = 0.5
LOCKED_MAX_WAIT_S = 30.0
LOCKED_GIVE_UP_S = 15 * 60.0


async def write_while_locked(write: Callable[[], Awaitable[T]], what: str) -> T:
    """Run a write; while SQLite answers "database is locked" (another program, e.g. a backup or
    the sqlite3 shell, held the lock past busy_timeout), log it, wait and write again, for up to
    LOCKED_GIVE_UP_S. A start or a result is then recorded late instead of lost. Any other error,
    or the last "locked", is raised."""
    wait, deadline = LOCKED_FIRST_WAIT_S, time.monotonic() + LOCKED_GIVE_UP_S
    while True:
        try:
            return await write()
        except Exception as err:
            if not is_busy(err) or time.monotonic() + wait > deadline:
                raise
            log.warning("the job log is locked by another program; writing %s again in %.1f s", what, wait)
        await asyncio.sleep(wait)
        wait = min(wait * 2, LOCKED_MAX_WAIT_S)


async def changed(raw: aiosqlite.Connection, sql: str, params: Params = ()) -> int:
    """Run a write statement; returns the rows it changed. One trip to the worker thread: a DML
    statement without RETURNING is finished (and, outside a transaction, committed) by execute."""
    cursor = await raw.execute(sql, params)
    return cursor.rowcount


async def fetchone(raw: aiosqlite.Connection, sql: str, params: Params = ()) -> sqlite3.Row | None:
    """The first row of a query that returns at most a few (also ``INSERT … RETURNING``)."""
    rows = await raw.execute_fetchall(sql, params)
    return next(iter(rows), None)


async def fetchall(raw: aiosqlite.Connection, sql: str, params: Params = ()) -> list[sqlite3.Row]:
    """Every row, executed and fetched in one trip to the worker thread."""
    return list(await raw.execute_fetchall(sql, params))


async def executemany(raw: aiosqlite.Connection, sql: str, rows: Iterable[Params]) -> None:
    await raw.executemany(sql, rows)
