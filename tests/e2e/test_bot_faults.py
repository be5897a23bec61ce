"""Discord misbehaving: a 429 on the result upload, a dropped gateway connection, expired interaction tokens."""

from __future__ import annotations

import pytest

from tests.e2e.client import Member, pings
from tests.e2e.conftest import Easel
from tests.e2e.easel_helpers import (
    cancel_from_queue,
    job_id_of,
    job_of,
    queue_job,
    result_attachment,
    result_job,
    result_of,
    results_in,
    start_blocker,
)
from tests.e2e.fake_discord import FakeDiscord, InteractionRecord
from tests.e2e.fake_gateway import IDENTIFY, RESUME

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
def server(easel_bot: Easel) -> FakeDiscord:
    return easel_bot.server


@pytest.fixture(scope="module")
def alice(server: FakeDiscord) -> Member:
    return Member(server, "alice")


def webhook_statuses(server: FakeDiscord, record: InteractionRecord, method: str = "PATCH") -> list[int]:
    prefix = f"/webhooks/{server.application_id}/{record.token}"
    return [status for m, path, _, status in server.requests if m == method and path.startswith(prefix)]


async def channel_result(server: FakeDiscord, job: str) -> dict:
    return await server.wait_for(lambda: next((m for m in results_in(server) if result_job(m) == job), None),
                                 what=f"the result of job {job} in the channel")


async def test_a_429_on_the_result_upload_is_retried(server: FakeDiscord, easel_bot: Easel, alice: Member) -> None:
    server.fail_next("PATCH", "/webhooks/*", status=429, retry_after=0.3, upload="easel-*")
    record = await alice.slash("imagine", prompt="a patient cat", seed=11)
    message = await result_of(server, record)
    statuses = webhook_statuses(server, record)
    assert 429 in statuses and statuses[-1] == 200
    assert statuses.index(429) == len(statuses) - 2  # the upload itself was refused once, then sent again
    assert "is rate limited. Retrying in 0.30 seconds" in easel_bot.process.log()  # discord.py waited, then retried
    assert [m for m in results_in(server) if result_job(m) == job_id_of(message)] == [message]


async def test_a_dropped_gateway_resumes_and_the_missed_request_is_served(server: FakeDiscord,
                                                                          alice: Member) -> None:
    running = await alice.slash("imagine", prompt="a long river", seed=12)
    await server.drop_gateway()
    missed = await alice.slash("imagine", prompt="a short river", seed=13)  # raised while the bot is away
    for record in (running, missed):
        await result_of(server, record)
    assert len(server.gateway.ops(RESUME)) == 1 and len(server.gateway.ops(IDENTIFY)) == 1
    assert len(server.gateway.sent("RESUMED")) == 1


async def test_an_expired_token_sends_the_result_to_the_channel(server: FakeDiscord, alice: Member) -> None:
    server.expire_tokens_after_ack()
    try:
        record = await alice.slash("imagine", prompt="a late owl", seed=14)
        status = await server.wait_for(
            lambda: record.original and next(
                (m for m in server.channel_messages() if "interaction_metadata" not in m and job_id_of(m)
                 and m["author"]["id"] == server.application_id and int(m["id"]) > int(record.original["id"])),
                None),
            what="the status posted to the channel")
        job = job_id_of(status)
        message = await channel_result(server, job)
    finally:
        server.expire_tokens_after_ack(False)
    assert message is status  # the channel message became the result
    assert 401 in webhook_statuses(server, record) and record.followups == []
    assert f"<@{alice.id}>" in message["content"] and pings(server, message) == []
    assert result_attachment(record.original) is None


async def test_a_token_expiring_while_queued_edits_the_status_as_the_bots_own_message(server: FakeDiscord,
                                                                                     alice: Member) -> None:
    """Discord lets a bot edit its own non-ephemeral interaction response by id once the token is gone."""
    dave = Member(server, "dave")
    blocker = await start_blocker(server, dave)
    record = await queue_job(server, alice, "a slow fox")
    server.expire_interaction_tokens()  # as if the job had waited in the queue for more than 15 minutes
    await cancel_from_queue(server, dave, job_of(blocker))
    message = await channel_result(server, job_of(record))
    assert message is record.original and pings(server, message) == []  # the status became the result
    assert 401 in webhook_statuses(server, record)
    edits = [s for m, path, _, s in server.requests
             if m == "PATCH" and path == f"/channels/{server.channel_id}/messages/{record.original['id']}"]
    assert edits and edits[-1] == 200
    assert [m for m in results_in(server) if result_job(m) == job_of(record)] == [message]
