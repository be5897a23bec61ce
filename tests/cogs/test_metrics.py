"""/metrics and /healthz over HTTP on loopback: the counters move with jobs, health says what is down."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from config import ConfigError, load_config
from inference.executor import OOM_MESSAGE, internal_error_message
from studio_metrics import failure_reason
from tests.cogs.helpers import final, gpu_busy, make_world
from tests.cogs.test_queue_admin import job_id_of, queue_until_one_waits


async def fetch(port: int, path: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}{path}") as response:
        return response.status, await response.text()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def serving(bot: Any) -> Any:
    cog = bot.get_cog("Metrics")
    await cog.serve("127.0.0.1", 0)
    assert cog.port
    return cog


async def test_a_finished_job_moves_the_served_counter_and_the_time_histograms(simcord_env, simcord_bot) -> None:
    cog = await serving(simcord_bot)
    try:
        w = make_world(simcord_env)
        await final(await w.alice.slash(w.channel, "imagine", prompt="a red fox", seed=1, steps=2))
        labels = (("kind", "imagine"), ("model", "tiny"))

        async def served() -> dict:
            status, text = await fetch(cog.port, "/metrics")
            assert status == 200
            return samples(text)

        found: dict = {}

        async def check() -> bool:
            found.update(await served())
            return found.get(("easel_jobs_served_total", labels)) == 1.0

        await eventually_async(check)
        assert found[("easel_job_wait_seconds_count", labels)] == 1.0
        assert found[("easel_job_run_seconds_count", labels)] == 1.0
        assert found[("easel_queue_jobs", (("state", "waiting"),))] == 0.0
        assert found[("easel_models_loaded", (("model", "tiny"), ("where", "device")))] == 1.0
        assert 0.0 < found[("easel_gpu_busy_ratio", ())] <= 1.0
    finally:
        await cog.cog_unload()


async def test_a_cancelled_job_and_a_failed_post_are_counted(simcord_env, simcord_bot) -> None:
    cog = await serving(simcord_bot)
    try:
        w = make_world(simcord_env)
        with gpu_busy(simcord_bot):
            _, waiting = await queue_until_one_waits(simcord_bot, w, w.alice)
            _, text = await fetch(cog.port, "/metrics")
            assert samples(text)[("easel_queue_jobs", (("state", "waiting"),))] >= 1.0
            assert await simcord_bot.studio.cancel(job_id_of(waiting), w.alice.id)
        simcord_bot.dispatch("easel_post_failed", "some-job")

        async def check() -> bool:
            _, text = await fetch(cog.port, "/metrics")
            found = samples(text)
            return (found.get(("easel_jobs_cancelled_total", (("kind", "imagine"), ("model", "tiny")))) == 1.0
                    and found.get(("easel_delivery_failures_total", ())) == 1.0)

        await eventually_async(check)
    finally:
        await cog.cog_unload()


async def test_healthz_is_ok_while_serving_and_503_naming_the_executor_once_the_engine_stops(simcord_env,
                                                                                            simcord_bot) -> None:
    cog = await serving(simcord_bot)
    try:
        status, text = await fetch(cog.port, "/healthz")
        assert status == 200 and '"ok": true' in text
        await simcord_bot.studio.engine.stop()
        status, text = await fetch(cog.port, "/healthz")
        assert status == 503
        assert '"executor": false' in text and '"job_log": true' in text and '"discord": true' in text
    finally:
        await cog.cog_unload()


async def test_a_port_already_taken_logs_one_line_and_leaves_the_bot_running(simcord_env, simcord_bot,
                                                                             caplog: pytest.LogCaptureFixture) -> None:
    first = await serving(simcord_bot)
    try:
        from cogs.metrics import Metrics

        second = Metrics(simcord_bot)
        await second.serve("127.0.0.1", first.port)
        assert "cannot listen" in caplog.text and second._runner is None
    finally:
        await first.cog_unload()


def test_failure_reasons_are_a_fixed_set() -> None:
    assert failure_reason(OOM_MESSAGE) == "out_of_memory"
    assert failure_reason(internal_error_message()) == "internal"
    assert failure_reason("The source image of this job could not be read any more.") == "refused"


@pytest.mark.parametrize(("line", "message"), [("port = 70000", "metrics.port"), ('host = " "', "metrics.host")])
def test_bad_metrics_settings_are_clear_config_errors(tmp_path: Path, line: str, message: str) -> None:
    toml = tmp_path / "easel.toml"
    toml.write_text(f'[model]\nsource = "x/y"\n[metrics]\n{line}\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_config(toml, environ={})


async def eventually_async(check: Any, timeout: float = 60.0) -> None:
    import asyncio

    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out waiting for the metrics")
        await asyncio.sleep(0.05)


def fake_studio(redis_url: str) -> Any:
    from types import SimpleNamespace

    from inference.engine import EngineStatus

    status = EngineStatus(device="cuda", dtype="float16", models=(), queued=0, running=0, served=0, failed=0,
                          uptime_s=1.0)
    return SimpleNamespace(config=SimpleNamespace(cluster=SimpleNamespace(redis_url=redis_url),
                                                  model=SimpleNamespace(display_name="m")),
                           engine=SimpleNamespace(status=lambda: status))


def test_a_clusters_workers_are_counted_with_their_heartbeat_age_free_slots_and_jobs() -> None:
    from studio_metrics import StudioMetrics

    metrics = StudioMetrics(fake_studio("redis://127.0.0.1:6379/0"))
    metrics.set_workers([{"name": "gpu-a", "free": 1, "served": 7, "beat": 98.0},
                         {"name": "gpu-b", "free": 0, "served": 3, "beat": 99.5}], now=100.0)
    found = samples(metrics.exposition().decode())
    assert found[("easel_cluster_workers", ())] == 2.0
    assert found[("easel_cluster_worker_heartbeat_age_seconds", (("worker", "gpu-a"),))] == 2.0
    assert found[("easel_cluster_worker_free_slots", (("worker", "gpu-b"),))] == 0.0
    assert found[("easel_cluster_worker_jobs_served", (("worker", "gpu-a"),))] == 7.0
    metrics.set_workers([{"name": "gpu-b", "free": 1, "served": 4, "beat": 100.0}], now=100.0)
    found = samples(metrics.exposition().decode())
    assert found[("easel_cluster_workers", ())] == 1.0
    assert ("easel_cluster_worker_free_slots", (("worker", "gpu-a"),)) not in found  # gone with its worker


def test_a_bot_without_a_cluster_exports_no_worker_figures() -> None:
    from studio_metrics import StudioMetrics

    text = StudioMetrics(fake_studio("")).exposition().decode()
    assert "easel_cluster" not in text and "easel_queue_jobs" in text
