"""What the job log hands out: plain frozen dataclasses, no SQL types."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# A job's life: queued → running → done | failed | cancelled; done/failed → delivering → delivered.
STATUSES: tuple[str, ...] = ("queued", "running", "done", "failed", "cancelled", "delivering", "delivered")
FINISHED: tuple[str, ...] = ("done", "failed", "cancelled")
DELIVERABLE: tuple[str, ...] = ("done", "failed")


@dataclass(frozen=True)
class JobRow:
    job_id: str
    seq: int
    kind: str
    user_id: int
    guild_id: int | None
    channel_id: int
    params: dict[str, Any]
    status: str
    error: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    delivered_at: float | None
    interaction_id: int | None
    interaction_token: str | None
    application_id: int | None
    request_message_id: int | None
    result_channel_id: int | None
    result_message_id: int | None
    prior_status: str | None = None  # "done" or "failed" while the job is "delivering"
    status_message_id: int | None = None  # the message that will carry the result, once there is one
    delivery_attempts: int = 0  # posts that failed so far
    delivery_error: str | None = None  # why the last post failed
    next_delivery_at: float | None = None  # when a failed post is tried again
    undeliverable: bool = False  # Discord refused the post for good: never tried again

    @property
    def prompt(self) -> str:
        prompt = self.params.get("prompt")
        return prompt if isinstance(prompt, str) else ""

    @property
    def outcome(self) -> str:
        """``done``/``failed`` even while delivering: tells the poster to post images or the error."""
        return self.prior_status if self.status == "delivering" and self.prior_status else self.status

    @property
    def state(self) -> str:
        """The status as members see it (/history): ``undeliverable`` for a result Discord refused for good."""
        return "undeliverable" if self.undeliverable and self.status != "delivered" else self.status


@dataclass(frozen=True)
class ImageRow:
    job_id: str
    idx: int
    seed: int
    path: Path
    width: int
    height: int
    sha256: str
    size_bytes: int
    nsfw: bool  # the safety checker flagged it (or the image it was made from)
    message_id: int | None = None
    nsfw_word: bool = False  # its prompt (or its source's) has an NSFW word


@dataclass(frozen=True)
class HistoryPage:
    rows: list[JobRow]
    total: int  # rows matching the filter over all pages


def job_from_row(row: sqlite3.Row) -> JobRow:
    return JobRow(
        job_id=row["job_id"], seq=row["seq"], kind=row["kind"], user_id=row["user_id"], guild_id=row["guild_id"],
        channel_id=row["channel_id"], params=json.loads(row["params"]), status=row["status"], error=row["error"],
        created_at=row["created_at"], started_at=row["started_at"], finished_at=row["finished_at"],
        delivered_at=row["delivered_at"], interaction_id=row["interaction_id"],
        interaction_token=row["interaction_token"], application_id=row["application_id"],
        request_message_id=row["request_message_id"], result_channel_id=row["result_channel_id"],
        result_message_id=row["result_message_id"], prior_status=row["prior_status"],
        status_message_id=row["status_message_id"], delivery_attempts=row["delivery_attempts"],
        delivery_error=row["delivery_error"], next_delivery_at=row["next_delivery_at"],
        undeliverable=bool(row["undeliverable"]),
    )


def image_from_row(row: sqlite3.Row) -> ImageRow:
    return ImageRow(
        job_id=row["job_id"], idx=row["idx"], seed=row["seed"], path=Path(row["path"]), width=row["width"],
        height=row["height"], sha256=row["sha256"], size_bytes=row["size_bytes"], nsfw=bool(row["nsfw"]),
        message_id=row["message_id"], nsfw_word=bool(row["nsfw_word"]),
    )
