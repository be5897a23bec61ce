"""Started and Progress events on the progress stream: written by a worker, read by the bot.

Losing one costs a progress bar update, nothing more: the stream is capped and read without a
consumer group, and an entry that cannot be read is skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from inference.cluster.wire import MAX_PREVIEW_SIDE, open_png, png_bytes
from inference.jobs import JobEvent, Progress, Started

log = logging.getLogger(__name__)


def progress_fields(event: JobEvent) -> dict[str, bytes | str] | None:
    """The entry for ``event``, or None for an event that is not sent this way. Encodes a preview: call off the loop."""
    if isinstance(event, Started):
        return {"job_id": event.job_id, "event": "started"}
    if isinstance(event, Progress):
        fields: dict[str, bytes | str] = {"job_id": event.job_id, "event": "progress", "step": str(event.step),
                                          "total": str(event.total_steps)}
        if event.preview is not None:
            fields["preview"] = png_bytes(event.preview)
        return fields
    return None


def progress_event(fields: dict, wanted: Callable[[str], bool] = lambda _: True) -> Started | Progress | None:
    """The event of a progress entry, or None if it is not a readable one or not of a job ``wanted``.

    The job id is checked before a preview is decoded, and a preview only once its PNG header says it
    is small: an entry from a foreign writer costs the bot no decoding.
    """
    try:
        jid = fields[b"job_id"].decode()
        if not wanted(jid):
            return None
        if fields[b"event"] == b"started":
            return Started(jid)
        if fields[b"event"] != b"progress":
            return None
        preview = None
        if b"preview" in fields:
            preview = open_png(fields[b"preview"], "preview", MAX_PREVIEW_SIDE)
        return Progress(jid, int(fields[b"step"]), int(fields[b"total"]), preview)
    except Exception as exc:  # noqa: BLE001 - anything unreadable is skipped, whatever Pillow or bytes raise
        log.debug("cluster: ignored a progress entry: %s", exc)
        return None
