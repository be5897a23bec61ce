"""The real bot in cluster mode against simcord's Discord: a member whose model no worker holds is told
so in the queue message, and the job is made once a worker comes; with a worker there, no such note."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from inference.cluster.local import LocalWorker
from tests.cluster.helpers import cluster_config, wait_for
from tests.cogs.conftest import bot_config, eventually, simcord_env  # noqa: F401 - fixtures used by these tests
from tests.cogs.helpers import final, make_world

NOTE = 'No GPU worker with model "tiny" is connected right now'


@pytest.fixture
def local_worker() -> bool:
    return False


@pytest.fixture
def simcord_bot(bot_config, valkey, local_worker: bool) -> Any:  # noqa: F811 - this module's bot: cluster mode
    from bot import EaselBot

    config = cluster_config(bot_config, valkey.connection_url, local_worker=local_worker, worker_name="here")
    return EaselBot(config, start_studio=False)


def _sent_texts(env: Any) -> list[str]:
    return [e.json["content"] for e in env.http_requests if isinstance(e.json, dict) and e.json.get("content")]


async def test_the_queue_message_says_no_worker_holds_the_model_until_one_comes(
        simcord_bot, simcord_env, client) -> None:  # noqa: F811 - simcord_env: a fixture
    w = make_world(simcord_env)
    result = await w.alice.slash(w.channel, "imagine", prompt="a lighthouse", steps=2)
    waiting = await eventually(lambda: result.response is not None and NOTE in result.response.content
                               and result.response.content, 30)
    assert "Queued: position **1**" in waiting and "up to 10 min" in waiting
    worker = LocalWorker(simcord_bot.config)  # a worker with the model connects
    worker.start()
    try:
        await asyncio.to_thread(wait_for, lambda: client.exists("t:worker:here"), 60, "the worker")
        message = await final(result)
        assert message.attachments and NOTE not in message.content
    finally:
        await asyncio.to_thread(worker.stop)


@pytest.mark.parametrize("local_worker", [True])
async def test_no_note_while_a_worker_holds_the_model(simcord_bot, simcord_env, client) -> None:  # noqa: F811
    await asyncio.to_thread(wait_for, lambda: client.exists("t:worker:here"), 60, "the bot's own worker")
    w = make_world(simcord_env)
    results = [await member.slash(w.channel, "imagine", prompt="a lighthouse", steps=2)
               for member in (w.alice, w.bob, w.alice)]
    for result in results:
        assert (await final(result)).attachments
    texts = _sent_texts(simcord_env)
    assert any("Queued" in t for t in texts) and not any("No GPU worker" in t for t in texts)
