"""The shared connection: a failed transaction rolls back only its own work."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiosqlite
import pytest

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
