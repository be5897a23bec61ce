"""Fixtures for storage tests: a fresh database in a temp folder, a settable clock, a SQLite without FTS5."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from storage import Database, OutputStore
from storage import migrations as migrations_module
from tests.storage.helpers import Clock


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "easel.db"


@pytest.fixture
async def db(db_path: Path, clock: Clock) -> AsyncIterator[Database]:
    database = await Database.open(db_path, clock=clock)
    yield database
    await database.close()


@pytest.fixture
def no_fts5(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend this SQLite was built without FTS5 (the prompt-search migration is skipped)."""

    async def has_feature(raw: Any, feature: str) -> bool:
        return False

    monkeypatch.setattr(migrations_module, "has_feature", has_feature)


@pytest.fixture(params=["fts5", "like"])
async def search_db(request: pytest.FixtureRequest, db_path: Path, clock: Clock) -> AsyncIterator[Database]:
    """A database searching with FTS5, and one with the LIKE fallback."""
    if request.param == "like":
        request.getfixturevalue("no_fts5")
    database = await Database.open(db_path, clock=clock)
    assert database.jobs.fts is (request.param == "fts5")
    yield database
    await database.close()


@pytest.fixture
def outputs(tmp_path: Path) -> OutputStore:
    return OutputStore(tmp_path / "outputs")
