"""Pictures shown with a result but not part of it (a tile's 2x2 preview, a ControlNet map).

They are files in the outputs folder like the result images, recorded as files the job owns
(``job_files``, role ``extra:<position>:<label>``), so retention and /forget delete them with the
job and a post after a restart finds them. They are not ``images`` rows: nothing picks, varies or
lists them, and they carry no NSFW flags of their own (they are shown under the job's verdict).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from storage.connection import Connection

ROLE_PREFIX = "extra:"
MAX_EXTRAS = 100  # positions are written with two digits, so the roles sort as recorded


def extra_role(position: int, label: str) -> str:
    """The ``job_files`` role of the job's extra picture number ``position`` labelled ``label``."""
    if not 0 <= position < MAX_EXTRAS:
        raise ValueError(f"an extra picture's position must be 0 to {MAX_EXTRAS - 1}, not {position}")
    if not label or ":" in label:
        raise ValueError(f"an extra picture's label must be a word without ':', not {label!r}")
    return f"{ROLE_PREFIX}{position:02d}:{label}"


def insert_statement(job_id: str, pictures: Sequence[tuple[str, str | Path]]) -> tuple[str, list[Any]]:
    """The one statement that records a job's extra pictures ``(label, path)`` in their order (at
    least one); a rerun of the job replaces its earlier files."""
    values: list[Any] = []
    for position, (label, path) in enumerate(pictures):
        values += [job_id, extra_role(position, label), str(path)]
    return ("INSERT INTO job_files (job_id, role, path) VALUES " + ", ".join(["(?, ?, ?)"] * len(pictures))
            + " ON CONFLICT (job_id, role) DO UPDATE SET path = excluded.path", values)


class Extras:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def for_job(self, job_id: str) -> list[tuple[str, Path]]:
        """The job's extra pictures ``(label, path)`` in the order they were recorded."""
        rows = await self._conn.fetchall(
            "SELECT role, path FROM job_files WHERE job_id = ? AND substr(role, 1, ?) = ? ORDER BY role",
            (job_id, len(ROLE_PREFIX), ROLE_PREFIX))
        return [(str(row["role"]).split(":", 2)[2], Path(row["path"])) for row in rows]
