"""Schema migrations: numbered SQL files in ``storage/migrations/``, applied in order at open.

``0001_initial.sql``, ``0002_user_prefs.sql``, … Each file runs in its own transaction together
with ``PRAGMA user_version = N``, so a database is always exactly at some version: a migration
that fails leaves it at the previous one. Never edit a released migration; add the next number.

A file may start with ``-- requires: fts5``. When this SQLite lacks that feature the migration is
recorded as applied but skipped (logged), and the code falls back (prompt search uses LIKE).
"""

from __future__ import annotations

import logging
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

from storage.connection import fetchone

log = logging.getLogger(__name__)

FOLDER = Path(__file__).with_name("migrations")
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_REQUIRES = re.compile(r"^--\s*requires:\s*(.+)$")
FEATURES = ("fts5",)


class MigrationError(RuntimeError):
    """The schema cannot be brought up to date; the message says which file and why."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]
    requires: tuple[str, ...] = ()


def split_statements(sql: str, name: str = "<sql>") -> tuple[str, ...]:
    """Split a script into statements (triggers keep their inner ``;``) using SQLite's own parser."""
    statements: list[str] = []
    buffer = ""
    for line in sql.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    leftover = [ln for ln in buffer.splitlines() if ln.strip() and not ln.strip().startswith("--")]
    if leftover:
        raise MigrationError(f"{name}: the last statement is not terminated with ';'")
    return tuple(statements)


def parse(path: Path) -> Migration:
    match = _NAME.match(path.name)
    if match is None:
        raise MigrationError(f"{path.name}: migration files are named like 0002_what_it_does.sql")
    sql = path.read_text(encoding="utf-8")
    requires: tuple[str, ...] = ()
    first = sql.lstrip().splitlines()[0] if sql.strip() else ""
    if (req := _REQUIRES.match(first.strip())) is not None:
        requires = tuple(word.strip() for word in req.group(1).split(",") if word.strip())
        unknown = [word for word in requires if word not in FEATURES]
        if unknown:
            raise MigrationError(f"{path.name}: unknown required feature(s) {', '.join(unknown)}")
    statements = split_statements(sql, path.name)
    if not statements:
        raise MigrationError(f"{path.name}: holds no SQL statement")
    return Migration(int(match.group(1)), path.stem, statements, requires)


def load(folder: Path = FOLDER) -> list[Migration]:
    """All migrations of ``folder`` in order; numbers must run 1, 2, 3 … without gaps (blocking IO)."""
    migrations = sorted((parse(p) for p in folder.glob("*.sql")), key=lambda m: m.version)
    for expected, migration in enumerate(migrations, start=1):
        if migration.version != expected:
            raise MigrationError(f"{migration.name}.sql: expected migration number {expected:04d} here "
                                 "(numbers must start at 0001 and have no gaps or duplicates)")
    return migrations


async def user_version(raw: aiosqlite.Connection) -> int:
    row = await fetchone(raw, "PRAGMA user_version")
    return int(row[0]) if row is not None else 0


async def has_feature(raw: aiosqlite.Connection, feature: str) -> bool:
    """Whether this SQLite build can do ``feature`` (probed, since compile options can mislead)."""
    if feature == "fts5":
        try:
            await raw.execute("CREATE VIRTUAL TABLE temp.easel_fts5_probe USING fts5(x)")
        except sqlite3.OperationalError:
            return False
        await raw.execute("DROP TABLE temp.easel_fts5_probe")
        return True
    raise ValueError(f"unknown feature {feature!r}")


async def apply(raw: aiosqlite.Connection, migrations: list[Migration], *, target: int | None = None) -> int:
    """Bring the schema up to ``target`` (default: the newest); returns the resulting version.

    ``raw`` must be in autocommit mode. The version is read again inside each transaction, so two
    processes opening the same file at once do not both apply a migration.
    """
    latest = migrations[-1].version if migrations else 0
    target = latest if target is None else target
    current = await user_version(raw)
    if current > latest:
        raise MigrationError(f"the database is at schema version {current}, newer than this easel "
                             f"knows ({latest}); upgrade easel or use a copy of the database")
    for migration in migrations:
        if migration.version <= current or migration.version > target:
            continue
        missing = [f for f in migration.requires if not await has_feature(raw, f)]
        await raw.execute("BEGIN IMMEDIATE")
        try:
            if await user_version(raw) < migration.version:
                if missing:
                    log.warning("skipping migration %s: this SQLite has no %s", migration.name, ", ".join(missing))
                else:
                    for statement in migration.statements:
                        await raw.execute(statement)
                await raw.execute(f"PRAGMA user_version = {migration.version:d}")
        except BaseException as err:
            if raw.in_transaction:
                await raw.execute("ROLLBACK")
            if isinstance(err, sqlite3.Error):
                raise MigrationError(f"migration {migration.name} failed: {err}") from err
            raise
        await raw.execute("COMMIT")
        current = migration.version
        log.info("database migrated to version %d (%s)", current, migration.name)
    return await user_version(raw)
