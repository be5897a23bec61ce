"""The real bot (its cogs, studio and job log, against simcord's Discord) in cluster mode: a member's
/imagine is made by a worker process and posted, and /easel status lists the worker."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.helpers import cluster_config, start_worker, stop, wait_for_worker, worker_toml
from tests.cogs.conftest import bot_config, simcord_env  # noqa: F401 - fixtures used by these tests
from tests.cogs.helpers import final, make_world


@pytest.fixture
def simcord_bot(bot_config, valkey) -> Any:  # noqa: F811 - this module's bot: cluster mode
    from bot import EaselBot

    return EaselBot(cluster_config(bot_config, valkey.connection_url), start_studio=False)


async def test_a_members_image_is_made_by_a_worker_and_status_lists_it(
        tiny_config, valkey, client, simcord_env, tmp_path: Path) -> None:  # noqa: F811 - simcord_env: a fixture
    worker = start_worker(worker_toml(tiny_config, valkey.connection_url, tmp_path), "gpu-a")
    try:
        await asyncio.to_thread(wait_for_worker, client, "gpu-a", worker)
        w = make_world(simcord_env)
        message = await final(await w.alice.slash(w.channel, "imagine", prompt="a lighthouse", steps=2))
        assert message.attachments, message.content
        status = (await w.admin.slash(w.channel, "easel status")).response.content
        assert "Backend: cluster" in status
        assert "- gpu-a: tiny on `cpu` (float32), 1 served" in status
    finally:
        stop(worker)
