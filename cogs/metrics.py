"""``/metrics`` for Prometheus and ``/healthz`` for a supervisor, over HTTP (``[metrics] port``).

Off unless ``metrics.port`` is set; listens on ``metrics.host`` (127.0.0.1 by default: the numbers
say how busy the server is, so they stay on the machine unless an admin opens them). Served by
aiohttp on the bot's own event loop: a scrape renders a few dozen lines, no thread needed.

``/healthz`` answers 200 when Discord's gateway is connected, the job log answers a query and the
engine is dispatching to the GPU thread, else 503; the JSON body says which part is down.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from aiohttp import web
from discord.ext import commands
from prometheus_client import CONTENT_TYPE_LATEST

from studio_metrics import StudioMetrics

if TYPE_CHECKING:
    from bot import EaselBot

log = logging.getLogger(__name__)

JOB_LOG_TIMEOUT_S = 2.0


class Metrics(commands.Cog):
    def __init__(self, bot: EaselBot) -> None:
        self.bot = bot
        self.metrics = StudioMetrics(bot.studio)
        self._runner: web.AppRunner | None = None
        self.port = 0  # the port listened on (the configured one, or the OS's pick for port 0 in tests)

    async def cog_load(self) -> None:
        self.bot.studio.add_listener(self.metrics.on_event)
        cfg = self.bot.config.metrics
        if cfg.port:
            await self.serve(cfg.host, cfg.port)

    async def cog_unload(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def serve(self, host: str, port: int) -> None:
        """Start the HTTP server (``port`` 0: any free port, as tests use)."""
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            self._runner = None
            log.error("metrics: cannot listen on %s:%s (%s); /metrics and /healthz are off", host, port, exc)
            return
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or ()
        self.port = sockets[0].getsockname()[1] if sockets else port
        log.info("metrics: serving /metrics and /healthz on http://%s:%s", host, self.port)

    @commands.Cog.listener()
    async def on_easel_post_failed(self, _job_id: str) -> None:
        self.metrics.post_failures.inc()

    async def _metrics(self, _request: web.Request) -> web.Response:
        workers = getattr(self.bot.studio.engine.executor, "workers", None)  # cluster mode only
        if workers is not None:
            try:
                self.metrics.set_workers(await asyncio.wrap_future(workers()))
            except Exception as exc:  # Redis unreachable: the other figures still go out
                log.warning("metrics: could not list the cluster's workers (%s)", exc)
        body = self.metrics.exposition()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, _request: web.Request) -> web.Response:
        parts = {"discord": self.bot.is_ready() and not self.bot.is_closed(),
                 "job_log": self.bot.studio.started and await self._job_log_up(),
                 "executor": self.bot.studio.started and self.bot.studio.engine.serving}
        return web.json_response({"ok": all(parts.values()), **parts}, status=200 if all(parts.values()) else 503)

    async def _job_log_up(self) -> bool:
        try:
            await asyncio.wait_for(self.bot.studio.database.jobs.counts(), JOB_LOG_TIMEOUT_S)
        except Exception:  # any failure of the job log is "down" here; the log has the details elsewhere
            return False
        return True


async def setup(bot: EaselBot) -> None:
    await bot.add_cog(Metrics(bot))
