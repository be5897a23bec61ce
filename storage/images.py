"""Result images: one row per image of a job, pointing at its file in the outputs folder.

Buttons on old results read the source image from this path, not from Discord's expiring CDN.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from storage.connection import Connection
from storage.jobs import JobsMissing, missing_jobs
from storage.rows import ImageRow, image_from_row

WORD_FLAG_BATCH = 500  # jobs per page of the word-flag backfill, and ids per UPDATE


@dataclass(frozen=True)
class NewImage:
    """One result image to record (see :meth:`Images.add_many`)."""

    job_id: str
    idx: int
    seed: int
    path: str | Path
    width: int
    height: int
    sha256: str
    size_bytes: int
    nsfw: bool = False  # the safety checker flagged it, or the image it was made from
    nsfw_word: bool = False  # its prompt has an NSFW word, or the prompt of the image it was made from had one

    def as_row(self) -> ImageRow:
        """The row this image has once recorded (not posted yet)."""
        return ImageRow(self.job_id, self.idx, self.seed, Path(self.path), self.width, self.height, self.sha256,
                        self.size_bytes, bool(self.nsfw), nsfw_word=bool(self.nsfw_word))


def insert_statement(images: Sequence[NewImage]) -> tuple[str, list[object]]:
    """The one statement that records ``images`` (at least one), replacing an earlier run's row of
    the same job and index but keeping its posted message id."""
    if any(image.idx < 0 for image in images):
        raise ValueError("image index must not be negative")
    values: list[object] = []
    for i in images:
        values += [i.job_id, i.idx, i.seed, str(i.path), i.width, i.height, i.sha256, i.size_bytes, int(bool(i.nsfw)),
                   int(bool(i.nsfw_word))]
    sql = ("INSERT INTO images (job_id, idx, seed, path, width, height, sha256, size_bytes, nsfw, nsfw_word) VALUES "
           + ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"] * len(images))
           + " ON CONFLICT (job_id, idx) DO UPDATE SET seed = excluded.seed, path = excluded.path,"
           " width = excluded.width, height = excluded.height, sha256 = excluded.sha256,"
           " size_bytes = excluded.size_bytes, nsfw = excluded.nsfw, nsfw_word = excluded.nsfw_word")
    return sql, values


class Images:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def add(self, *, job_id: str, idx: int, seed: int, path: str | Path, width: int, height: int, sha256: str,
                  size_bytes: int, nsfw: bool = False) -> None:
        """Record image ``idx`` of a job. Idempotent on (job_id, idx): a rerun replaces the file
        details and keeps the posted message id."""
        await self.add_many([NewImage(job_id, idx, seed, path, width, height, sha256, size_bytes, nsfw)])

    async def add_many(self, images: Sequence[NewImage]) -> None:
        """Record the images of one or more jobs in one statement (one trip to SQLite's thread, all
        or none). Raises JobsMissing (a LookupError), recording nothing, when one of the jobs is not in the log."""
        if not images:
            return
        sql, values = insert_statement(images)
        try:
            await self._conn.execute(sql, values)
        except sqlite3.IntegrityError as err:
            raise JobsMissing(await missing_jobs(self._conn, [i.job_id for i in images])) from err

    async def for_job(self, job_id: str) -> list[ImageRow]:
        rows = await self._conn.fetchall("SELECT * FROM images WHERE job_id = ? ORDER BY idx", (job_id,))
        return [image_from_row(r) for r in rows]

    async def owner_of(self, path: str | Path, *, prefer: int | None = None) -> int | None:
        """The member whose result image is stored at ``path``; None when no result is. Identical
        results of several members share one file: ``prefer`` when it is one of them, else the
        owner of the earliest job (as migration 0007 decides for older inputs)."""
        row = await self._conn.fetchone(
            "SELECT j.user_id FROM images AS i JOIN jobs AS j ON j.job_id = i.job_id WHERE i.path = ?"
            " ORDER BY j.user_id = ? DESC, j.seq LIMIT 1", (str(path), prefer))
        return int(row[0]) if row is not None else None

    async def set_message(self, job_id: str, message_id: int) -> int:
        """Record the message the job's images were posted in; returns how many images it holds."""
        return await self._conn.execute("UPDATE images SET message_id = ? WHERE job_id = ?", (message_id, job_id))

    async def by_message(self, message_id: int) -> list[ImageRow]:
        rows = await self._conn.fetchall(
            "SELECT * FROM images WHERE message_id = ? ORDER BY job_id, idx", (message_id,)
        )
        return [image_from_row(r) for r in rows]

    async def unflagged_prompts(self, after_seq: int = 0, limit: int = WORD_FLAG_BATCH) -> list[tuple[int, str, str]]:
        """``(seq, job_id, prompt)`` of the jobs after ``after_seq`` in log order that have a prompt
        and an image without the word flag, at most ``limit`` of them."""
        rows = await self._conn.fetchall(
            "SELECT j.seq, j.job_id, j.prompt FROM jobs AS j WHERE j.seq > ? AND j.prompt IS NOT NULL"
            " AND j.prompt != '' AND EXISTS (SELECT 1 FROM images AS i WHERE i.job_id = j.job_id AND i.nsfw_word = 0)"
            " ORDER BY j.seq LIMIT ?", (after_seq, limit))
        return [(int(r[0]), str(r[1]), str(r[2])) for r in rows]

    async def flag_words(self, job_ids: Sequence[str]) -> int:
        """Set the word flag on every image of ``job_ids`` (never clears one); returns how many changed."""
        changed = 0
        for start in range(0, len(job_ids), WORD_FLAG_BATCH):
            chunk = list(job_ids[start:start + WORD_FLAG_BATCH])
            changed += await self._conn.execute(
                f"UPDATE images SET nsfw_word = 1 WHERE nsfw_word = 0 AND job_id IN ({', '.join('?' * len(chunk))})",
                chunk)
        return changed

    async def backfill_word_flags(self, has_word: Callable[[str], bool], *, batch: int = WORD_FLAG_BATCH) -> int:
        """Set the word flag on the images of every job whose prompt ``has_word`` (images recorded
        before the flag existed, or under an older word list). Pages through the job log ``batch``
        jobs at a time, matching on a worker thread; only ever sets flags, never clears them (the
        word list may have shrunk since an image was shown spoilered). Returns the images flagged."""
        after, changed = 0, 0
        while page := await self.unflagged_prompts(after, batch):
            hits = await asyncio.to_thread(_matching, page, has_word)
            changed += await self.flag_words(hits)
            after = page[-1][0]
        return changed


    async def word_scan_digest(self) -> str | None:
        """The word list (:func:`inference.prompt_words.word_list_digest`) the images were last
        checked against by :meth:`backfill_word_flags`; None before the first check."""
        row = await self._conn.fetchone("SELECT digest FROM word_flag_scan WHERE id = 1")
        return str(row[0]) if row else None

    async def remember_word_scan(self, digest: str, at: float) -> None:
        await self._conn.execute(
            "INSERT INTO word_flag_scan (id, digest, scanned_at) VALUES (1, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET digest = excluded.digest, scanned_at = excluded.scanned_at",
            (digest, at))


def _matching(page: Sequence[tuple[int, str, str]], has_word: Callable[[str], bool]) -> list[str]:
    return [job_id for _seq, job_id, prompt in page if has_word(prompt)]
