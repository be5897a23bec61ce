"""What the easel end-to-end tests do and look for: results, job ids, refusals, images, queue holds."""

from __future__ import annotations

import io
import re

from PIL import Image

from tests.e2e.client import Member
from tests.e2e.fake_discord import EPHEMERAL, LOADING, FakeDiscord, InteractionRecord

JOB_ID = re.compile(r"job `([0-9a-f]{4,32})`")
RESULT_FILE = re.compile(r"(?:SPOILER_)?easel-([0-9a-f]{4,32})(?:-\d+)?\.(?:png|webp|jpg)")
RESULT_TIMEOUT_S = 90.0


def png(size: tuple[int, int] = (96, 80), colour: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    """A member's picture: a colour with a lighter square in the middle (so variations have something to keep)."""
    image = Image.new("RGB", size, colour)
    w, h = size
    image.paste((240, 240, 240), (w // 4, h // 4, 3 * w // 4, 3 * h // 4))
    return encode(image)


def encode(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def decode(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return image.copy()


def job_id_of(message: dict) -> str | None:
    found = JOB_ID.search(message.get("content") or "")
    return found[1] if found else None


def result_attachment(message: dict | None) -> dict | None:
    """The result image of a message (``easel-<job>.png``), not a progress preview."""
    if message is None or message.get("deleted"):
        return None
    return next((a for a in message.get("attachments", []) if RESULT_FILE.fullmatch(a["filename"])), None)


def result_job(message: dict) -> str | None:
    """The job whose result the message carries, from the attachment's name."""
    attachment = result_attachment(message)
    return RESULT_FILE.fullmatch(attachment["filename"])[1] if attachment else None


def results_in(server: FakeDiscord, channel_id: str | None = None) -> list[dict]:
    """Every message in the channel that carries a result, oldest first."""
    return [m for m in server.channel_messages(channel_id) if result_attachment(m) is not None]


def refusal_message(record: InteractionRecord) -> dict | None:
    """The ephemeral answer the member got instead of a job, once it is there: the initial response,
    or, where slow input made the bot defer first (a busy machine), the ephemeral followup that
    replaced its "thinking" message (cogs/utils/origin.py ``InteractionOrigin.error``)."""
    message = record.original
    if message is not None and not message["flags"] & LOADING and message["flags"] & EPHEMERAL:
        return message
    return next((m for m in record.followups
                 if m is not record.original and m["flags"] & EPHEMERAL and not m["flags"] & LOADING), None)


def refusal(record: InteractionRecord) -> str | None:
    message = refusal_message(record)
    return None if message is None else message["content"]


async def result_of(server: FakeDiscord, record: InteractionRecord, timeout: float = RESULT_TIMEOUT_S) -> dict:
    """The interaction's status message once it carries the result."""
    return await server.wait_for(lambda: record.original if result_attachment(record.original) else None, timeout,
                                 f"the result of interaction {record.id} ({record.payload['data'].get('name')})")


async def refusal_of(server: FakeDiscord, record: InteractionRecord, timeout: float = 30.0) -> str:
    return await server.wait_for(lambda: refusal(record), timeout, f"the refusal of interaction {record.id}")


def buttons(message: dict) -> dict[str, str]:
    """Button label -> custom id, for every button on the message."""
    out = {}
    for row in message.get("components") or []:
        for component in row.get("components") or []:
            if component.get("type") == 2 and component.get("custom_id"):
                out[component.get("label") or ""] = component["custom_id"]
    return out


def status_text(record: InteractionRecord) -> str:
    """What the member sees of their request now (queued, painting, the result or an error)."""
    return (record.original or {}).get("content") or ""


async def start_blocker(server: FakeDiscord, member: Member) -> InteractionRecord:
    """A long job (four 256 px images, 150 steps, with guidance), waited for until it runs on the GPU thread.

    Requests sent while it runs wait in the queue for as long as the test needs; the test then cancels it.
    """
    record = await member.slash("imagine", prompt="a long night", count=4, width=256, height=256, steps=150,
                                guidance=7.0, seed=1)
    await server.wait_for(lambda: "Painting" in status_text(record), what="the blocker to start")
    return record


async def queue_job(server: FakeDiscord, member: Member, prompt: str, **options: object) -> InteractionRecord:
    """A small job, waited for until its member sees it queued (so the order of submission is known)."""
    record = await member.slash("imagine", prompt=prompt, seed=7, **options)
    await server.wait_for(lambda: "Queued" in status_text(record), what=f"{prompt!r} to be queued")
    return record


def job_of(record: InteractionRecord) -> str:
    job = job_id_of(record.original or {})
    assert job, f"no job id in {status_text(record)!r}"
    return job


async def cancel_from_queue(server: FakeDiscord, member: Member, job_id: str) -> InteractionRecord:
    """/queue, then the Cancel button of ``job_id`` in the listing; returns the click."""
    listing = await member.slash("queue")
    await server.wait_for(lambda: listing.original, what="the /queue listing")
    assert listing.original["flags"] & EPHEMERAL and f"`{job_id}`" in listing.original["content"]
    click = await member.click(listing.original, buttons(listing.original)[f"Cancel {job_id}"])
    await server.wait_for(lambda: click.original, what="the answer to Cancel")
    assert click.original["flags"] & EPHEMERAL and click.original["content"] == f"Cancelling job `{job_id}`."
    return click


async def wait_cancelled(server: FakeDiscord, record: InteractionRecord) -> None:
    """Until the request's status says it was cancelled; it never shows a result."""
    await server.wait_for(lambda: status_text(record).startswith("\u2716\ufe0f Cancelled"),
                          what="the cancelled status")
    assert result_attachment(record.original) is None
