"""A crash (SIGKILL) with work in every state, then a restart on the same database: each job once.

The bot is started again with the same easel.toml, so the same job log and outputs folder. Results are
counted per job from the attachments Discord holds (``easel-<job>.png``) once the bot's job log (read
from its SQLite file) says every job was delivered: from then on nothing can still be on its way.
After the restart each result lands in the member's original status message.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections import Counter

import pytest

from tests.e2e.client import Member
from tests.e2e.conftest import Easel, Settings
from tests.e2e.easel_helpers import (
    buttons,
    cancel_from_queue,
    job_id_of,
    job_of,
    queue_job,
    result_attachment,
    result_job,
    result_of,
    results_in,
    start_blocker,
    status_text,
)
from tests.e2e.fake_discord import FakeDiscord, InteractionRecord

pytestmark = pytest.mark.asyncio(loop_scope="module")

# Slow enough (four 256 px passes of 25 steps) to be still running when the bot is killed.
RUNNING = {"width": 256, "height": 256, "steps": 25, "count": 2, "guidance": 7.0}


@pytest.fixture(scope="module")
def easel_settings() -> Settings:
    """No previews: a status message then carries no attachment while its job runs, so the only messages
    with a job's id and an image that a restarted bot can find in the channel are results."""
    return {"device": {"previews": False}}


@pytest.fixture(scope="module")
def server(easel_bot: Easel) -> FakeDiscord:
    return easel_bot.server


def job_status(easel: Easel, job: str) -> str | None:
    """The job's status in the bot's own job log (read-only; the bot may be writing)."""
    with contextlib.closing(sqlite3.connect(f"file:{easel.work / 'easel.db'}?mode=ro", uri=True)) as db:
        row = db.execute("SELECT status FROM jobs WHERE job_id = ?", (job,)).fetchone()
    return row[0] if row else None


def delivered(server: FakeDiscord) -> Counter[str]:
    """How many result messages Discord holds per job id."""
    return Counter(result_job(m) for m in results_in(server))


async def wait_all_delivered(server: FakeDiscord, easel: Easel, jobs: set[str]) -> None:
    """Until the job log holds every job as delivered. A delivered job is never posted again, so results
    counted after this are final."""
    await server.wait_for(lambda: all(job_status(easel, job) == "delivered" for job in jobs), timeout=180,
                          what=f"every job delivered; now {[job_status(easel, job) for job in sorted(jobs)]}")


async def restart(easel: Easel) -> None:
    await easel.kill()
    await easel.start()


async def test_sigkill_with_jobs_running_and_queued_then_each_is_delivered_once(server: FakeDiscord,
                                                                               easel_bot: Easel) -> None:
    alice, bob, carol = (Member(server, name) for name in ("alice", "bob", "carol"))
    early = job_id_of(await result_of(server, await alice.slash("imagine", prompt="an early sun", seed=1)))
    running = await alice.slash("imagine", prompt="a running fox", seed=2, **RUNNING)
    await server.wait_for(lambda: "Painting" in status_text(running), what="the job to run")
    queued_records = [await queue_job(server, member, f"a queued owl {n}", steps=4)
                      for member, n in ((bob, 1), (carol, 2), (bob, 3), (alice, 4))]
    queued = [job_of(record) for record in queued_records]
    await easel_bot.kill()
    running_job = job_id_of(running.original)
    unfinished = {running_job, *queued}
    assert not set(delivered(server)) & unfinished, "the jobs must still be unfinished when the bot is killed"

    await easel_bot.start()
    jobs = {early, running_job, *queued}
    await wait_all_delivered(server, easel_bot, jobs)
    counts = delivered(server)
    assert {job: counts[job] for job in jobs} == dict.fromkeys(jobs, 1)  # other tests' results aside
    assert "requeued 5 unfinished job(s)" in easel_bot.process.log()
    for record in (running, *queued_records):  # the "Queued"/"Painting" message became the result
        assert result_job(record.original) == job_id_of(record.original) and "Cancel" not in buttons(record.original)


async def test_a_job_killed_during_its_result_upload_is_posted_after_the_restart(server: FakeDiscord,
                                                                                 easel_bot: Easel) -> None:
    dora = Member(server, "dora")
    # The upload of the result gets a 429 asking to wait a minute: the job is "delivering" when killed.
    server.fail_next("PATCH", "/webhooks/*", status=429, retry_after=60, upload="easel-*")
    record = await dora.slash("imagine", prompt="a stuck boat", seed=3)
    prefix = f"/webhooks/{server.application_id}/{record.token}/"
    await server.wait_for(lambda: any(p.startswith(prefix) and s == 429 for _, p, _, s in server.requests),
                          what="the refused upload")
    job = job_id_of(record.original)
    assert job_status(easel_bot, job) == "delivering"
    await restart(easel_bot)
    await wait_all_delivered(server, easel_bot, {job})
    assert delivered(server)[job] == 1 and result_job(record.original) == job


async def crash_after_the_upload(server: FakeDiscord, easel: Easel, member: Member, prompt: str) -> InteractionRecord:
    """The result reaches Discord, and the bot is killed before it hears back (so before mark_delivered)."""
    server.hold_next("PATCH", "/webhooks/*", upload="easel-*")
    record = await member.slash("imagine", prompt=prompt, seed=5)
    await server.wait_for(lambda: server.held, what="the result upload")
    server.held.clear()
    assert result_attachment(record.original) is not None
    assert job_status(easel, job_id_of(record.original)) == "delivering"
    await easel.kill()
    return record


def carrying(server: FakeDiscord, job: str) -> list[dict]:
    """The bot's messages in the channel that show the job (its result, or what stands for it)."""
    return [m for m in server.channel_messages() if m["author"]["id"] == server.application_id
            and f"job `{job}`" in m["content"]]


async def test_a_result_cut_short_by_a_crash_in_a_busy_channel_is_posted_once(server: FakeDiscord,
                                                                              easel_bot: Easel) -> None:
    """60 chat messages arrive after the result: the restarted bot finds it by its recorded id, not by
    reading the channel's recent history."""
    erin, chatty = Member(server, "erin"), Member(server, "chatty")
    record = await crash_after_the_upload(server, easel_bot, erin, "a crowded harbour")
    job = job_id_of(record.original)
    for n in range(60):
        await chatty.post_message(f"chat {n}")
    await easel_bot.start()
    await wait_all_delivered(server, easel_bot, {job})
    assert delivered(server)[job] == 1 and carrying(server, job) == [record.original]


async def test_a_blocked_result_cut_short_by_a_crash_is_posted_once(server: FakeDiscord, easel_bot: Easel) -> None:
    """A result withheld as NSFW is text only (no file, no warning sign). The state a crash right after
    posting one leaves is made here from a plain result: its image flagged in the job log, its message
    turned into the withheld text."""
    fay = Member(server, "fay")
    record = await crash_after_the_upload(server, easel_bot, fay, "an orchard at dawn")
    job = job_id_of(record.original)
    with contextlib.closing(sqlite3.connect(easel_bot.work / "easel.db")) as db, db:
        db.execute("UPDATE images SET nsfw = 1 WHERE job_id = ?", (job,))
    blocked = "\n\U0001f6ab The result was flagged as NSFW and is not shown in this channel."
    record.original.update(content=record.original["content"] + blocked, attachments=[], components=[])
    await easel_bot.start()
    await wait_all_delivered(server, easel_bot, {job})
    assert carrying(server, job) == [record.original]


async def test_a_new_message_posted_just_before_a_crash_is_the_one_the_restart_fills(server: FakeDiscord,
                                                                                    easel_bot: Easel) -> None:
    """The status message was deleted by a moderator, so the result needs a new message; the bot dies
    after Discord made it and before the bot recorded its id. The restarted bot posts it again with the
    same nonce (enforce_nonce): Discord hands back that message, which becomes the result."""
    gus, hal = Member(server, "gus"), Member(server, "hal")
    blocker = await start_blocker(server, hal)
    record = await queue_job(server, gus, "a lost kite")
    job = job_of(record)
    server.delete_message(record.original)  # a moderator removes the "Queued" message
    server.hold_next("POST", "/channels/*/messages")
    await cancel_from_queue(server, hal, job_of(blocker))
    await server.wait_for(lambda: server.held, timeout=120, what="the new message for the result")
    server.held.clear()
    await easel_bot.kill()
    [placeholder] = carrying(server, job)
    await easel_bot.start()
    await wait_all_delivered(server, easel_bot, {job})
    assert carrying(server, job) == [placeholder] and result_job(placeholder) == job
