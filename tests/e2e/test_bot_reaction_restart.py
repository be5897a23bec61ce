"""A crash (SIGKILL) right after a reaction's "Queued" reply reached Discord, before the bot heard back.

The reply is the job's status message, but its id is recorded in the job log only once Discord has
answered, so the restarted bot knows no message for the job. It posts the job's first channel message
with the nonce the reply was sent with (``posting.nonce_for(job, None)``, ``enforce_nonce``): Discord,
within its nonce window (a few minutes; the fake keeps 300 s), hands back that very reply, which becomes
the result. Without the nonce the reply would stay behind, "Queued" with a live Cancel button, beside a
second message carrying the result.
"""

from __future__ import annotations

import contextlib
import sqlite3

import pytest

from tests.e2e.client import Member
from tests.e2e.conftest import Easel
from tests.e2e.easel_helpers import buttons, job_id_of, result_job, result_of
from tests.e2e.fake_discord import FakeDiscord

pytestmark = pytest.mark.asyncio(loop_scope="module")

REROLL = "\U0001f501"


def job_status(easel: Easel, job: str) -> str | None:
    """The job's status in the bot's own job log (read-only; the bot may be writing)."""
    with contextlib.closing(sqlite3.connect(f"file:{easel.work / 'easel.db'}?mode=ro", uri=True)) as db:
        row = db.execute("SELECT status FROM jobs WHERE job_id = ?", (job,)).fetchone()
    return row[0] if row else None


def bot_replies_to(server: FakeDiscord, message: dict) -> list[dict]:
    return [m for m in server.channel_messages() if m["author"]["id"] == server.application_id
            and (m.get("message_reference") or {}).get("message_id") == message["id"]]


async def test_a_reaction_reply_made_just_before_a_crash_becomes_the_result(easel_bot: Easel) -> None:
    server = easel_bot.server
    ada, ben = Member(server, "ada"), Member(server, "ben")
    original = await result_of(server, await ada.slash("imagine", prompt="a paper boat", seed=4))
    server.hold_next("POST", "/channels/*/messages")  # the reply is made; its answer never reaches the bot
    await ben.react(original, REROLL)
    await server.wait_for(lambda: server.held, what="the reaction's status reply")
    server.held.clear()
    [reply] = bot_replies_to(server, original)
    job = job_id_of(reply)
    assert job and "Queued" in reply["content"] and "Cancel" in buttons(reply)
    await easel_bot.kill()

    await easel_bot.start()
    await server.wait_for(lambda: job_status(easel_bot, job) == "delivered", timeout=180,
                          what=f"job {job} delivered; now {job_status(easel_bot, job)}")
    assert bot_replies_to(server, original) == [reply]  # no second message
    assert result_job(reply) == job and "Cancel" not in buttons(reply)
