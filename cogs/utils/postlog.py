"""The job log's side of posting a result: claiming the post, recording the message that will carry
it, recording it posted. Each is written again while another program holds the job log locked
past SQLite's busy timeout (storage's ``write_while_locked``); what still fails is raised, and the
poster tries the post again later (cogs/utils/redelivery.py)."""

from __future__ import annotations

import asyncio
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from storage import write_while_locked

if TYPE_CHECKING:
    from storage import Database, ImageRow, JobRow


async def claim(db: Database, job_id: str) -> tuple[JobRow, list[ImageRow], list[tuple[str, Path]]] | None:
    """Claim a finished job's post and read its row, images and extras (pictures shown with it,
    storage/extras.py); None when it is not ours to post (delivered, being delivered, not
    finished, undeliverable).

    Claim and reads, issued together, share one trip to SQLite's thread and run in this order
    (storage/batched.py), so what is read is the claimed job. A claim refused as locked is tried
    again (nothing was claimed); reads that failed after the claim are read again. Raises when the
    job log keeps failing; a claim this leaves is released before the post is tried again."""

    def reads() -> list[Any]:
        return [db.jobs.get(job_id), db.images.for_job(job_id), db.extras.for_job(job_id)]

    async def claim_and_read() -> tuple[bool, list[Any]]:
        claimed, *found = await asyncio.gather(db.jobs.begin_delivery(job_id), *reads(), return_exceptions=True)
        if isinstance(claimed, BaseException):
            raise claimed
        return claimed, found

    claimed, found = await write_while_locked(claim_and_read, f"the claim of job {job_id}'s post")
    if not claimed:
        return None
    if any(isinstance(part, BaseException) for part in found):
        found = await write_while_locked(lambda: asyncio.gather(*reads()), f"job {job_id}")
    row, images, extras = found
    assert row is not None
    return row, list(images), list(extras)


async def record_status_message(db: Database, job_id: str, message_id: int) -> None:
    """The message that will carry the result, recorded before anything is uploaded into it."""
    await write_while_locked(partial(db.jobs.set_status_message, job_id, message_id),
                             f"the status message of job {job_id}")


async def record_posted(db: Database, job_id: str, channel_id: int, message_id: int, *,
                        link_images: bool = True) -> None:
    """The job delivered as ``message_id`` and (unless ``link_images`` is False: a private result's
    note) its images linked to it, in one trip to SQLite."""

    async def record() -> None:
        marked = db.jobs.mark_delivered(job_id, channel_id=channel_id, message_id=message_id)
        if not link_images:
            await marked
            return
        await asyncio.gather(marked, db.images.set_message(job_id, message_id))

    await write_while_locked(record, f"the delivery of job {job_id}")
