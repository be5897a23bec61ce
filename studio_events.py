"""What the studio hands the cogs: where a request came from, and the events of a job's life.

Plain frozen dataclasses that know no discord types; ``studio`` re-exports them.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inference import jobs as J
from storage.rows import ImageRow, JobRow


@dataclass(frozen=True)
class RequestContext:
    """Where a request came from, so results can be delivered even after a restart."""

    user_id: int
    guild_id: int | None
    channel_id: int
    interaction_id: int | None = None
    interaction_token: str | None = None
    application_id: int | None = None
    request_message_id: int | None = None  # the message a reaction/button acted on, to reply to
    requested_at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class SavedImage:
    index: int
    seed: int
    path: Path
    width: int
    height: int
    nsfw: bool


@dataclass(frozen=True)
class StudioEvent:
    job_id: str


@dataclass(frozen=True)
class JobQueued(StudioEvent):
    position: int
    total: int
    eta_s: float
    notes: tuple[str, ...] = ()  # shown under the position (studio_waiting.py: no worker holds its model)


@dataclass(frozen=True)
class JobStarted(StudioEvent):
    pass


@dataclass(frozen=True)
class JobProgress(StudioEvent):
    step: int
    total_steps: int
    preview: Any = None


@dataclass(frozen=True)
class JobDone(StudioEvent):
    job: J.Job
    images: tuple[SavedImage, ...]
    parameters: tuple[str, ...]
    seconds: float
    note: str = ""
    # Set when the studio recorded the job already claimed for posting (Studio.claim_for_posting):
    # its row and images as recorded, so the poster needs no trip to the job log before posting.
    row: JobRow | None = None
    image_rows: tuple[ImageRow, ...] = ()
    # Pictures shown with the result (JobResult.extras) as stored: ``(label, path)``, in order.
    extras: tuple[tuple[str, Path], ...] = ()


@dataclass(frozen=True)
class JobFailed(StudioEvent):
    message: str


@dataclass(frozen=True)
class JobCancelled(StudioEvent):
    pass


Listener = Callable[[StudioEvent], Awaitable[None] | None]
