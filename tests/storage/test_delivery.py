"""Delivery happens exactly once, even across a crash between posting and recording."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from storage import Database
from tests.storage.helpers import Clock, add_job, finish


async def test_only_one_of_many_concurrent_posters_gets_the_job(db: Database) -> None:
    await add_job(db, "j1")
    await finish(db, "j1")
    claims = await asyncio.gather(*(db.jobs.begin_delivery("j1") for _ in range(10)))
    assert claims.count(True) == 1
    row = await db.jobs.get("j1")
    assert row is not None and row.status == "delivering" and row.outcome == "done"


@pytest.mark.parametrize("status", ["queued", "running", "cancelled"])
async def test_an_unfinished_or_cancelled_job_cannot_be_delivered(db: Database, status: str) -> None:
    await add_job(db, "j1")
    if status != "queued":
        await db.jobs.set_status("j1", status)
    assert await db.jobs.begin_delivery("j1") is False
    assert (await db.jobs.get("j1")).status == status  # type: ignore[union-attr]


async def test_begin_delivery_of_an_unknown_job_is_false(db: Database) -> None:
    assert await db.jobs.begin_delivery("ghost") is False


async def test_normal_delivery_records_the_message(db: Database, clock: Clock) -> None:
    await add_job(db, "j1")
    await finish(db, "j1")
    assert await db.jobs.begin_delivery("j1")
    clock.advance(2)
    await db.jobs.mark_delivered("j1", channel_id=100, message_id=4242)
    row = await db.jobs.get("j1")
    assert row is not None and (row.status, row.result_channel_id, row.result_message_id) == ("delivered", 100, 4242)
    assert row.delivered_at == clock.now and row.prior_status is None
    assert await db.jobs.undelivered() == []
    assert await db.jobs.begin_delivery("j1") is False


async def test_crash_between_posting_and_recording_is_never_posted_twice(db_path: Path) -> None:
    db = await Database.open(db_path)
    await add_job(db, "j1")
    await add_job(db, "j2")
    await finish(db, "j1")
    await finish(db, "j2", "failed", error="The GPU ran out of memory.")
    assert await db.jobs.begin_delivery("j1")
    posted_message_id = 555  # the poster posted to Discord… and the process dies before mark_delivered
    # (no close: a killed process never closes; a second connection is what the restarted bot opens)

    restarted = await Database.open(db_path)
    try:
        pending = await restarted.jobs.undelivered()
        assert [(r.job_id, r.status, r.outcome) for r in pending] == [("j1", "delivering", "done"),
                                                                      ("j2", "failed", "failed")]
        # j1 may already be in the channel: nobody may claim it for a fresh post
        assert await restarted.jobs.begin_delivery("j1") is False
        # the poster finds its message in the channel and records it instead of posting again
        await restarted.jobs.mark_delivered("j1", channel_id=100, message_id=posted_message_id)
        # j2 was never posted: it is claimed and posted normally, error intact
        assert await restarted.jobs.begin_delivery("j2")
        await restarted.jobs.mark_delivered("j2", channel_id=100, message_id=556)
        assert await restarted.jobs.undelivered() == []
        j2 = await restarted.jobs.get("j2")
        assert j2 is not None and j2.error == "The GPU ran out of memory." and j2.status == "delivered"
    finally:
        await restarted.close()
        await db.close()


async def test_a_failed_post_is_released_and_tried_again(db: Database) -> None:
    await add_job(db, "j1")
    await finish(db, "j1", "failed", error="bad mask")
    assert await db.jobs.begin_delivery("j1")
    assert await db.jobs.release_delivery("j1") is True
    row = await db.jobs.get("j1")
    assert row is not None and row.status == "failed" and row.error == "bad mask" and row.prior_status is None
    assert await db.jobs.begin_delivery("j1")


@pytest.mark.parametrize("status", ["queued", "done", "delivered"])
async def test_release_only_undoes_a_claim(db: Database, status: str) -> None:
    await add_job(db, "j1")
    if status != "queued":
        await finish(db, "j1")
    if status == "delivered":
        assert await db.jobs.begin_delivery("j1")
        await db.jobs.mark_delivered("j1", channel_id=1, message_id=2)
    assert await db.jobs.release_delivery("j1") is False
    assert (await db.jobs.get("j1")).status == status  # type: ignore[union-attr]


async def test_marking_twice_keeps_the_first_message(db: Database) -> None:
    await add_job(db, "j1")
    await finish(db, "j1")
    assert await db.jobs.begin_delivery("j1")
    await db.jobs.mark_delivered("j1", channel_id=1, message_id=10)
    await db.jobs.mark_delivered("j1", channel_id=1, message_id=11)
    assert (await db.jobs.get("j1")).result_message_id == 10  # type: ignore[union-attr]


async def test_a_finished_job_can_be_marked_without_a_claim(db: Database) -> None:
    await add_job(db, "j1")
    await finish(db, "j1")
    await db.jobs.mark_delivered("j1", channel_id=1, message_id=10)
    assert (await db.jobs.get("j1")).status == "delivered"  # type: ignore[union-attr]


async def test_marking_an_unfinished_job_is_refused(db: Database) -> None:
    await add_job(db, "j1")
    with pytest.raises(ValueError, match="j1 is queued"):
        await db.jobs.mark_delivered("j1", channel_id=1, message_id=10)
    with pytest.raises(LookupError, match="no job ghost"):
        await db.jobs.mark_delivered("ghost", channel_id=1, message_id=10)


async def test_undelivered_lists_results_in_order(db: Database) -> None:
    for job_id in ("a", "b", "c", "d", "e"):
        await add_job(db, job_id)
    await finish(db, "d")
    await finish(db, "b", "failed")
    await finish(db, "c", "cancelled")  # cancelled: nothing to post
    await finish(db, "a")
    assert await db.jobs.begin_delivery("a")
    assert [r.job_id for r in await db.jobs.undelivered()] == ["a", "b", "d"]


@pytest.mark.parametrize("claim", [False, True], ids=["done", "claimed for the poster"])
async def test_finishing_records_every_job_in_one_statement_and_returns_their_rows(db: Database, claim: bool) -> None:
    for jid in ("j1", "j2", "old"):
        await add_job(db, jid)
        await db.jobs.set_status(jid, "running")
    await finish(db, "old")
    assert await db.jobs.begin_delivery("old")
    await db.jobs.mark_delivered("old", channel_id=1, message_id=5)
    trips = db.jobs._conn._batcher.trips  # noqa: SLF001
    rows = await db.record_results([], ["j1", "j2", "ghost", "old"], claim=claim)
    assert db.jobs._conn._batcher.trips == trips + 1  # noqa: SLF001
    assert sorted(rows) == ["j1", "j2"]  # unknown and delivered jobs are left out (and left alone)
    assert (await db.jobs.get("old")).status == "delivered"  # type: ignore[union-attr]
    for jid in ("j1", "j2"):
        stored = await db.jobs.get(jid)
        assert stored == rows[jid] and stored is not None and stored.finished_at is not None
        assert stored.status == ("delivering" if claim else "done") and stored.outcome == "done"
    assert await db.jobs.begin_delivery("j1") is (not claim)  # claimed already, or free to claim


async def add_with_token(db: Database, job_id: str) -> None:
    await db.jobs.add(job_id=job_id, kind="imagine", user_id=1, guild_id=10, channel_id=100,
                      params={"prompt": "a cat", "steps": 4, "seed": 1}, interaction_id=11,
                      interaction_token="secret-token", application_id=12)


async def test_delivery_drops_the_interaction_token(db: Database) -> None:
    await add_with_token(db, "j1")
    await finish(db, "j1")
    assert (await db.jobs.get("j1")).interaction_token == "secret-token"  # type: ignore[union-attr]
    assert await db.jobs.begin_delivery("j1")
    await db.jobs.mark_delivered("j1", channel_id=100, message_id=7)
    assert (await db.jobs.get("j1")).interaction_token is None  # type: ignore[union-attr]


async def test_tokens_older_than_their_lifetime_are_dropped(db: Database, clock: Clock) -> None:
    await add_with_token(db, "old")
    clock.advance(16 * 60)
    await add_with_token(db, "new")
    assert await db.jobs.clear_interaction_tokens(clock.now - 15 * 60) == 1
    assert (await db.jobs.get("old")).interaction_token is None  # type: ignore[union-attr]
    assert (await db.jobs.get("new")).interaction_token == "secret-token"  # type: ignore[union-attr]


async def test_the_status_message_is_recorded_for_a_later_edit(db: Database) -> None:
    await add_job(db, "j1")
    assert (await db.jobs.get("j1")).status_message_id is None  # type: ignore[union-attr]
    await db.jobs.set_status_message("j1", 4242)
    await finish(db, "j1")
    assert [r.status_message_id for r in await db.jobs.undelivered()] == [4242]


async def test_a_failed_post_is_due_again_later_and_counted(db: Database, clock: Clock) -> None:
    await add_job(db, "j1")
    await finish(db, "j1")
    assert await db.jobs.begin_delivery("j1")
    row = await db.jobs.delivery_failed("j1", "Discord answered 503", retry_at=clock.now + 10)
    assert row is not None and (row.status, row.delivery_attempts, row.delivery_error) == ("done", 1,
                                                                                        "Discord answered 503")
    assert await db.jobs.next_delivery_due() == clock.now + 10
    assert await db.jobs.undelivered(due_by=clock.now + 9) == []
    assert [r.job_id for r in await db.jobs.undelivered(due_by=clock.now + 10)] == ["j1"]
    assert await db.jobs.begin_delivery("j1")  # due: claimed and posted again
    await db.jobs.mark_delivered("j1", channel_id=100, message_id=5)
    row = await db.jobs.get("j1")
    assert row is not None and row.next_delivery_at is None and row.delivery_error is None
    assert await db.jobs.next_delivery_due() is None


async def test_an_undeliverable_job_is_never_claimed_again_and_shows_as_such(db: Database) -> None:
    await add_job(db, "j1")
    await finish(db, "j1", "failed", error="out of memory")
    assert await db.jobs.begin_delivery("j1")
    row = await db.jobs.delivery_failed("j1", "missing permissions: Attach Files", retry_at=None)
    assert row is not None and row.undeliverable and row.status == "failed" and row.state == "undeliverable"
    assert await db.jobs.undelivered() == [] and await db.jobs.next_delivery_due() is None
    assert await db.jobs.begin_delivery("j1") is False
    assert (await db.jobs.history(user_id=1)).rows[0].state == "undeliverable"


async def test_a_failed_post_of_a_job_that_is_not_being_delivered_records_nothing(db: Database) -> None:
    await add_job(db, "j1")
    await finish(db, "j1")
    assert await db.jobs.delivery_failed("j1", "late", retry_at=None) is None
    row = await db.jobs.get("j1")
    assert row is not None and not row.undeliverable and row.delivery_attempts == 0


async def test_retention_prunes_undeliverable_results_like_delivered_ones(db: Database, clock: Clock) -> None:
    await add_job(db, "j1")
    await finish(db, "j1")
    assert await db.jobs.begin_delivery("j1")
    await db.jobs.delivery_failed("j1", "missing permissions", retry_at=None)
    clock.advance(3 * 86_400)
    report = await db.prune(1)
    assert report.jobs == 1 and await db.jobs.get("j1") is None
