"""The shared connection: a failed transaction rolls back only its own work."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import aiosqlite
import pytest

from storage import batched
from storage.connection import Connection


@pytest.fixture
async def conn(tmp_path: Path):
    raw = await aiosqlite.connect(tmp_path / "c.db", isolation_level=None)
    connection = Connection(raw)
    await connection.execute("CREATE TABLE t (name TEXT)")
    yield connection
    await connection.close()


async def test_a_statement_issued_during_a_failing_transaction_is_kept(conn: Connection) -> None:
    entered = asyncio.Event()

    async def failing() -> None:
        async with conn.transaction() as raw:
            await raw.execute("INSERT INTO t VALUES ('in the transaction')")
            entered.set()
            await asyncio.sleep(0.01)  # the other writer runs now, if the lock let it
            raise RuntimeError("posting failed")

    async def other() -> None:
        await entered.wait()
        await conn.execute("INSERT INTO t VALUES ('outside')")

    results = await asyncio.gather(failing(), other(), return_exceptions=True)
    assert isinstance(results[0], RuntimeError) and results[1] is None
    assert [tuple(r) for r in await conn.fetchall("SELECT name FROM t")] == [("outside",)]


async def test_a_cancelled_transaction_rolls_back(conn: Connection) -> None:
    started = asyncio.Event()

    async def slow() -> None:
        async with conn.transaction() as raw:
            await raw.execute("INSERT INTO t VALUES ('never')")
            started.set()
            await asyncio.sleep(60)

    task = asyncio.create_task(slow())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await conn.fetchall("SELECT * FROM t") == []
    assert await conn.execute("INSERT INTO t VALUES ('after')") == 1


# --------------------------------------------------------------------------- statements sharing trips


async def test_statements_issued_together_share_one_trip_and_keep_their_own_results(conn: Connection) -> None:
    trips = conn._batcher.trips
    results = await asyncio.gather(
        *(conn.execute("INSERT INTO t VALUES (?)", (f"n{i}",)) for i in range(5)),
        conn.fetchall("SELECT name FROM t ORDER BY rowid"),
        conn.fetchone("SELECT count(*) FROM t WHERE name = ?", ("none",)),
        conn.execute("UPDATE t SET name = 'x' WHERE name = 'nobody'"),
    )
    assert conn._batcher.trips == trips + 1
    assert results[:5] == [1, 1, 1, 1, 1]
    assert [r[0] for r in results[5]] == ["n0", "n1", "n2", "n3", "n4"]  # in the order issued
    assert results[6][0] == 0 and results[7] == 0


async def test_one_failing_statement_fails_only_its_own_caller(conn: Connection) -> None:
    await conn.execute("CREATE UNIQUE INDEX t_name ON t (name)")
    await conn.execute("INSERT INTO t VALUES ('taken')")
    results = await asyncio.gather(
        conn.execute("INSERT INTO t VALUES ('taken')"),
        conn.execute("INSERT INTO t VALUES ('free')"),
        conn.fetchall("SELECT nonsense FROM t"),
        return_exceptions=True,
    )
    assert isinstance(results[0], sqlite3.IntegrityError)
    assert results[1] == 1
    assert isinstance(results[2], sqlite3.OperationalError)
    assert sorted(r[0] for r in await conn.fetchall("SELECT name FROM t")) == ["free", "taken"]


async def test_a_statement_waits_for_a_transaction_and_commits_on_its_own(conn: Connection) -> None:
    async with conn.transaction() as raw:
        await raw.execute("INSERT INTO t VALUES ('in the transaction')")
        waiting = asyncio.create_task(conn.execute("INSERT INTO t VALUES ('after it')"))
        await asyncio.sleep(0.01)
        assert not waiting.done()  # the lock holds it back until COMMIT
    assert await waiting == 1
    assert [r[0] for r in await conn.fetchall("SELECT name FROM t ORDER BY rowid")] == [
        "in the transaction", "after it"]


async def test_closing_runs_the_statements_already_issued(tmp_path: Path) -> None:
    raw = await aiosqlite.connect(tmp_path / "close.db", isolation_level=None)
    connection = Connection(raw)
    await connection.execute("CREATE TABLE t (name TEXT)")
    issued = asyncio.create_task(connection.execute("INSERT INTO t VALUES ('kept')"))
    await asyncio.sleep(0)  # issued, its trip not yet made
    await connection.close()
    assert await issued == 1
    with pytest.raises(RuntimeError, match="closed"):
        await connection.execute("INSERT INTO t VALUES ('too late')")
    async with aiosqlite.connect(tmp_path / "close.db") as check:
        assert [r[0] for r in await check.execute_fetchall("SELECT name FROM t")] == ["kept"]


async def test_a_statement_whose_caller_gave_up_before_its_trip_does_not_run(conn: Connection) -> None:
    async with conn.transaction():
        abandoned = asyncio.create_task(conn.execute("INSERT INTO t VALUES ('abandoned')"))
        await asyncio.sleep(0.01)
        abandoned.cancel()
        with pytest.raises(asyncio.CancelledError):
            await abandoned
    assert await conn.execute("INSERT INTO t VALUES ('next')") == 1
    assert [r[0] for r in await conn.fetchall("SELECT name FROM t")] == ["next"]


async def test_a_batch_cancelled_while_waiting_tells_its_callers(conn: Connection) -> None:
    async with conn.transaction():
        waiting = asyncio.create_task(conn.execute("INSERT INTO t VALUES ('never')"))
        await asyncio.sleep(0.01)
        flusher = conn._batcher._flusher
        assert flusher is not None
        flusher.cancel()  # as when the event loop shuts down
        with pytest.raises(RuntimeError, match="closing"):
            await waiting
    assert await conn.execute("INSERT INTO t VALUES ('later')") == 1  # the next batch is served
    assert [r[0] for r in await conn.fetchall("SELECT name FROM t")] == ["later"]


async def test_without_aiosqlites_private_runner_statements_go_one_by_one_with_the_same_results(
        conn: Connection) -> None:
    class PublicOnly:  # an aiosqlite without Connection._execute / _connection
        def __init__(self, raw: aiosqlite.Connection) -> None:
            self.execute = raw.execute
            self.execute_fetchall = raw.execute_fetchall

    results = await batched._on_thread(PublicOnly(conn._raw), [  # type: ignore[arg-type]
        ("INSERT INTO t VALUES (?)", ("a",), False),
        ("SELECT name FROM t", (), True),
        ("SELECT nonsense FROM t", (), True),
    ])
    assert results[0] == 1
    assert [r[0] for r in results[1]] == ["a"]
    assert isinstance(results[2], sqlite3.OperationalError)


async def test_statements_run_in_order_stop_at_the_first_failure_and_share_the_trip(conn: Connection) -> None:
    await conn.execute("CREATE UNIQUE INDEX t_name ON t (name)")
    await conn.execute("INSERT INTO t VALUES ('taken')")
    trips = conn._batcher.trips
    ok, broken, other = await asyncio.gather(
        conn.run_in_order([("INSERT INTO t VALUES ('one')", (), False), ("SELECT name FROM t ORDER BY name", (), True)]),
        conn.run_in_order([("INSERT INTO t VALUES ('taken')", (), False), ("INSERT INTO t VALUES ('never')", (), False)]),
        conn.execute("INSERT INTO t VALUES ('alone')"),
        return_exceptions=True,
    )
    assert conn._batcher.trips == trips + 1
    assert ok[0] == 1 and [r[0] for r in ok[1]] == ["one", "taken"]
    assert isinstance(broken, sqlite3.IntegrityError) and other == 1
    assert sorted(r[0] for r in await conn.fetchall("SELECT name FROM t")) == ["alone", "one", "taken"]


async def test_statements_in_order_without_aiosqlites_private_runner(conn: Connection) -> None:
    class PublicOnly:  # an aiosqlite without Connection._execute / _connection
        def __init__(self, raw: aiosqlite.Connection) -> None:
            self.execute = raw.execute
            self.execute_fetchall = raw.execute_fetchall

    results = await batched._on_thread(PublicOnly(conn._raw), [  # type: ignore[arg-type]
        [("INSERT INTO t VALUES (?)", ("a",), False), ("SELECT name FROM t", (), True)],
        [("SELECT nonsense FROM t", (), True), ("INSERT INTO t VALUES ('never')", (), False)],
    ])
    assert results[0][0] == 1 and [r[0] for r in results[0][1]] == ["a"]
    assert isinstance(results[1], sqlite3.OperationalError)
    assert [r[0] for r in await conn.fetchall("SELECT name FROM t")] == ["a"]
