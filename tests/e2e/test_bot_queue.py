"""The fair queue as members meet it: round-robin delivery across members, and cancelling.

To hold requests in the queue, a blocker job keeps the one GPU thread busy until its owner cancels it from
/queue. Nothing here depends on how fast jobs run: requests are queued behind the blocker before it is
cancelled. Batching is off in this module, so each job runs alone and the order results arrive in is the
order the queue handed them out.
"""

from __future__ import annotations

import pytest

from tests.e2e.client import Member
from tests.e2e.conftest import Easel, Settings
from tests.e2e.easel_helpers import (
    RESULT_FILE,
    buttons,
    cancel_from_queue,
    job_of,
    queue_job,
    refusal_of,
    result_job,
    result_of,
    results_in,
    start_blocker,
    status_text,
    wait_cancelled,
)
from tests.e2e.fake_discord import FakeDiscord, InteractionRecord

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
def easel_settings() -> Settings:
    return {"queue": {"max_batch": 1}}


@pytest.fixture(scope="module")
def server(easel_bot: Easel) -> FakeDiscord:
    return easel_bot.server


def upload_position(server: FakeDiscord, record: InteractionRecord) -> int:
    """Where in the fake's request log the bot uploaded this interaction's result."""
    uploads = [i for i, edit in enumerate(record.edits) if any(RESULT_FILE.fullmatch(f) for f in edit["files"])]
    assert uploads, f"no result was uploaded for {status_text(record)!r}"
    prefix = f"/webhooks/{server.application_id}/{record.token}/messages/"
    patches = [i for i, (method, path, _, status) in enumerate(server.requests)
               if method == "PATCH" and path.startswith(prefix) and status == 200]
    return patches[uploads[0]]


async def test_twelve_requests_from_three_members_are_served_in_turn(server: FakeDiscord) -> None:
    dave = Member(server, "dave")
    members = [Member(server, name) for name in ("alice", "bob", "carol")]
    blocker = await start_blocker(server, dave)
    sent: list[tuple[str, InteractionRecord]] = []
    for member in members:  # each member sends all four, one member after the other
        for n in range(1, 5):
            sent.append((f"{member.name}{n}", await queue_job(server, member, f"{member.name} picture {n}")))
    await cancel_from_queue(server, dave, job_of(blocker))
    await wait_cancelled(server, blocker)
    for _, record in sent:
        await result_of(server, record)
    arrived = [name for name, record in sorted(sent, key=lambda item: upload_position(server, item[1]))]
    # First come first served would be alice1-4, bob1-4, carol1-4. Fair: one job per member per round.
    assert arrived == ["alice1", "bob1", "carol1", "alice2", "bob2", "carol2",
                       "alice3", "bob3", "carol3", "alice4", "bob4", "carol4"]


async def test_a_member_cancels_a_queued_job_from_its_status_or_from_queue(server: FakeDiscord) -> None:
    erin, frank = Member(server, "erin"), Member(server, "frank")
    blocker = await start_blocker(server, frank)
    first = await queue_job(server, erin, "erin picture 1")
    second = await queue_job(server, erin, "erin picture 2")
    third = await queue_job(server, erin, "erin picture 3")

    refused = await frank.click(second.original, buttons(second.original)["Cancel"])
    assert "only cancel your own jobs" in await refusal_of(server, refused)
    click = await erin.click(second.original, buttons(second.original)["Cancel"])  # the button on the status
    await wait_cancelled(server, second)
    await server.wait_for(lambda: click.original, what="the answer to Cancel")
    assert click.original["content"] == f"Cancelling job `{job_of(second)}`."
    await cancel_from_queue(server, erin, job_of(third))
    await wait_cancelled(server, third)

    await cancel_from_queue(server, frank, job_of(blocker))
    await wait_cancelled(server, blocker)
    await result_of(server, first)
    assert buttons(first.original).get("Cancel") is None  # the result replaced the Cancel button
    cancelled = {job_of(second), job_of(third), job_of(blocker)}
    assert not cancelled & {result_job(m) for m in results_in(server)}
    listing = await erin.slash("queue")
    await server.wait_for(lambda: listing.original, what="the /queue listing")
    assert "You have no jobs in the queue." in listing.original["content"]
