"""easel: a self-hosted Discord image studio. ``python bot.py`` starts the bot.

``python bot.py --check`` validates the configuration, loads the model on its device, makes one
small image, fetches missing AnimeGAN2 weights and prints what it found, without contacting
Discord (it needs no token).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import aiohttp
import discord
from discord.ext import commands

if TYPE_CHECKING:
    from cogs.delivery import Delivery
    from config import Config
    from studio import Studio

log = logging.getLogger("easel")

# While Discord cannot be reached at start-up: the first wait, doubled after each failure up to the last.
RETRY_FIRST_S = 5.0
RETRY_MAX_S = 300.0


def _quiet_libraries() -> None:
    """Library chatter (progress bars, deprecation notes) drowns the bot's own log lines."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*local_dir_use_symlinks.*")


def setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    logging.getLogger("discord").setLevel(max(logging.INFO, logging.getLogger().level))
    for noisy in ("httpx", "urllib3", "filelock", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bot.py", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="path to easel.toml (default: ./easel.toml, or $EASEL_CONFIG)")
    parser.add_argument("--check", action="store_true",
                        help="check the config and the model, make one small image, exit (no Discord)")
    parser.add_argument("--worker", action="store_true",
                        help="run as a GPU worker of a cluster ([cluster] redis_url; no Discord token)")
    parser.add_argument("--log-level", default=os.environ.get("EASEL_LOG_LEVEL", "INFO"))
    return parser.parse_args(argv)


def _fail(message: str) -> int:
    print(f"easel: {message}", file=sys.stderr)
    return 2


def check(config_path: str | None) -> int:
    """Never contacts Discord, so it needs no token: it only says whether one is set."""
    from config import ConfigError, load_config

    try:
        config = load_config(config_path)
    except ConfigError as exc:
        return _fail(str(exc))
    if config.backend == "remote":
        return _check_remote(config)
    from inference.check import run_check
    from inference.loader import ModelLoadError

    try:
        report = run_check(config)
    except ModelLoadError as exc:
        return _fail(str(exc))
    print("easel check: OK")
    print("  backend: local")
    print(f"  device : {report.device} ({report.dtype})")
    print(f"  model  : {report.model} [{report.family}] from {report.source}")
    print(f"  load   : {report.load_s:.2f} s")
    w, h = report.image_size
    print(f"  image  : {w}x{h}, {report.steps} step(s) in {report.generate_s:.2f} s")
    _print_anime_and_token(config)
    return 0


def _check_remote(config: Config) -> int:
    from inference.jobs import JobError
    from inference.loader import ModelLoadError
    from inference.remote.check import run_remote_check

    try:
        report = run_remote_check(config)
    except (ModelLoadError, JobError) as exc:
        return _fail(str(exc))
    w, h = report.image_size
    print("easel check: OK")
    print(f"  backend: remote ({report.where})")
    print(f"  model  : {report.model} [{report.family}] from {report.source}")
    print(f"  image  : {w}x{h}, {report.steps} step(s) in {report.generate_s:.2f} s (one request)")
    _print_anime_and_token(config)
    return 0


def _print_describe(config: Config) -> None:
    """/describe is optional: its model is fetched (describe.download) and reported, never required."""
    from inference.describe import CaptionSource

    source = CaptionSource.from_config(config)
    if not source.configured:
        print("  describe: off (describe.source is not set)")
        return
    problem = source.fetch()
    print(f"  describe: {source.source} ready" if problem is None else f"  describe: not ready; {problem}")


def _print_anime_and_token(config: Config) -> None:
    """The anime filter is optional: styles without weights are reported (where the file goes, how to
    get it) but do not fail the check. The token is reported, never shown and never required here."""
    from config import read_secret
    from inference.check import check_anime

    anime = check_anime(config)
    if not anime.problems:
        print(f"  anime  : ready ({', '.join(anime.ready)})")
    else:
        if anime.ready:
            print(f"  anime  : {', '.join(anime.ready)} ready; /anime refuses the other styles until their "
                  "weights are in place:")
        else:
            print("  anime  : not set up; /anime is refused until the weights are in place:")
        for problem in anime.problems:
            print(f"           {problem}")
    _print_describe(config)
    if config.upscalers:
        from inference.upscale import UpscalerWeights

        outcome = UpscalerWeights.from_config(config).fetch_missing()
        ready = [name for name, problem in outcome.items() if problem is None]
        print(f"  upscale: {', '.join(ready) or 'none'} ready")
        for problem in (p for p in outcome.values() if p is not None):
            print(f"           {problem}")
    if read_secret("DISCORD_TOKEN"):
        print("  token  : present (not shown)")
    else:
        print("  token  : not set; running the bot needs DISCORD_TOKEN (see README, 'Getting a bot token')")


def worker(config_path: str | None) -> int:
    """``--worker``: serve a cluster's jobs on this machine's GPU (inference/cluster/worker.py)."""
    from config import ConfigError, load_config

    try:
        config = load_config(config_path)
    except ConfigError as exc:
        return _fail(str(exc))
    from inference.cluster.worker import run_worker

    return run_worker(config)


def run(config_path: str | None) -> int:
    from config import ConfigError, load_config, read_token

    try:
        config = load_config(config_path)
        token = read_token()
    except ConfigError as exc:
        return _fail(str(exc))
    from inference.loader import ModelLoadError

    async def serve() -> None:
        async with EaselBot(config) as bot:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):  # stop cleanly: running jobs are requeued next start
                with contextlib.suppress(NotImplementedError):
                    loop.add_signal_handler(sig, lambda: asyncio.ensure_future(bot.close()))
            await start_with_retry(bot, token)

    try:
        asyncio.run(serve())
    except discord.LoginFailure:
        return _fail("Discord refused the token (DISCORD_TOKEN): check it in the Developer Portal")
    except discord.PrivilegedIntentsRequired:
        return _fail("enable the Message Content intent for the bot in the Developer Portal (Bot > Privileged Gateway Intents)")
    except (ConfigError, ModelLoadError) as exc:
        return _fail(str(exc))
    except OSError as exc:  # e.g. the database's or outputs' folder cannot be created
        log.debug("start-up failed", exc_info=True)  # the traceback, for --log-level debug
        return _fail(f"could not start: {exc}")
    except KeyboardInterrupt:
        pass
    return 0


def _unreachable(exc: BaseException, setup_began: bool) -> bool:
    """Whether ``exc`` means Discord could not be reached (worth trying again), not a fault of ours.

    Before ``setup_hook`` only Discord is being talked to, so any network error counts; after it
    began, only aiohttp's and Discord's own 5xx (the command sync), not e.g. a database's OSError."""
    if isinstance(exc, aiohttp.ClientError | discord.DiscordServerError):
        return True
    return not setup_began and isinstance(exc, OSError | TimeoutError)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


async def start_with_retry(bot: EaselBot, token: str, *, first_wait_s: float = RETRY_FIRST_S,
                           max_wait_s: float = RETRY_MAX_S) -> None:
    """Log in and connect. While Discord cannot be reached (DNS failure, network down, Discord's own
    5xx), log one line and try again, waiting ``first_wait_s`` and doubling up to ``max_wait_s``, until
    it connects or the bot is closed (SIGTERM, Ctrl-C). A refused token (LoginFailure) is raised at
    once. Once connected, discord.py itself reconnects after network trouble."""
    wait = first_wait_s
    while not bot.stopping.is_set():
        try:
            await bot.login(token)
        except Exception as exc:
            if bot.stopping.is_set():
                return
            if not _unreachable(exc, bot.setup_began):
                raise
            log.warning("cannot reach Discord (%s); trying again in %g s", _reason(exc), wait)
            await _drop_http_session(bot)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(bot.stopping.wait(), wait)
            wait = min(wait * 2, max_wait_s)
            continue
        await bot.connect(reconnect=True)
        return


async def _drop_http_session(bot: EaselBot) -> None:
    """discord.py opens a new aiohttp session on its connector at every login: close the failed one
    (and its connector) so that a retry starts afresh and no session is left unclosed."""
    await bot.http.close()
    bot.http.connector = discord.utils.MISSING
    bot.http.clear()


EXTENSIONS = (
    "cogs.errors",
    "cogs.delivery",
    "cogs.imagine",
    "cogs.vary",
    "cogs.paint",
    "cogs.anime",
    "cogs.morph",
    "cogs.describe",
    "cogs.upscale",
    "cogs.components",
    "cogs.reactions",
    "cogs.context_menus",
    "cogs.history",
    "cogs.queue",
    "cogs.admin",
    "cogs.prefs",
    "cogs.metrics",
)


class EaselBot(commands.Bot):
    """The Discord client: owns the studio (engine + job log) and loads one cog per feature."""

    def __init__(self, config: Config, *, studio: Studio | None = None,
                 extensions: Sequence[str] = EXTENSIONS, start_studio: bool = True) -> None:
        from studio import Studio

        # easel never joins voice: discord.py's start-up warnings about missing voice libraries
        # (PyNaCl, davey) concern nobody here and look like errors to a new admin.
        discord.VoiceClient.warn_nacl = False
        discord.VoiceClient.warn_dave = False
        intents = discord.Intents.default()
        intents.message_content = True  # attachments of image messages reacted to in enabled channels
        super().__init__(command_prefix=commands.when_mentioned, intents=intents, help_command=None,
                         allowed_mentions=discord.AllowedMentions.none())
        self.config = config
        self.studio = studio or Studio(config)
        self.extensions_to_load = tuple(extensions)
        self.started_at = time.time()
        self.start_studio = start_studio  # False: the caller starts it (in-process tests)
        self.delivery: Delivery  # set by the delivery cog, which every request goes through
        self._shutdown: asyncio.Future[None] | None = None
        self.stopping = asyncio.Event()  # set when close() begins
        self.setup_began = False

    async def setup_hook(self) -> None:
        """Start the studio, load the cogs, sync the commands. Runs again when a login is retried
        after Discord could not be reached (see start_with_retry): only the sync is repeated."""
        if not self.setup_began:
            self.setup_began = True
            if self.start_studio:
                await self.studio.start()
                # Missing AnimeGAN2 weights are fetched once, on a thread of their own (start-up goes on).
                self.studio.anime_weights.fetch_in_background()
                self.studio.captions.fetch_in_background()  # and /describe's model (describe.download)
                if self.config.upscalers:  # and those of the [[upscalers]] given by URL
                    self.studio.upscaler_weights.fetch_in_background()
            for name in self.extensions_to_load:
                await self.load_extension(name)
        if self.config.discord.sync_commands:
            guild = discord.Object(self.config.discord.dev_guild) if self.config.discord.dev_guild else None
            if guild is not None:
                self.tree.copy_global_to(guild=guild)
            synced = await self.tree.sync(guild=guild)
            log.info("synced %d application commands%s", len(synced), " to the dev guild" if guild else "")

    async def on_ready(self) -> None:
        log.info("logged in as %s (%s) in %d guild(s)", self.user, getattr(self.user, "id", "?"), len(self.guilds))

    async def close(self) -> None:
        """Shut down, once: later calls (a second signal, ``async with``'s exit) wait for the first.

        Shielded, so the shutdown a signal began is not cut short when ``asyncio.run`` ends."""
        if self._shutdown is None:
            self.stopping.set()
            self._shutdown = asyncio.ensure_future(self._shut_down())
        await asyncio.shield(self._shutdown)

    async def __aexit__(self, *exc_info: object) -> None:
        # discord.py's own exit only waits for its part of a close that a signal began; this waits
        # for all of it (the studio's last results and the job log included).
        await self.close()

    async def _shut_down(self) -> None:
        """Stop the GPU work first (running jobs go back to the queue at the next start), then
        posting, then Discord, then the studio (its last results, the job log)."""
        await self.studio.engine.stop()
        delivery = getattr(self, "delivery", None)
        if delivery is not None:
            await delivery.close()
        await self._cancel_pending_ready()
        await super().close()
        await self.studio.close()
        log.info("easel stopped")

    async def _cancel_pending_ready(self) -> None:
        """discord.py dispatches ``ready`` from a task that waits ``guild_ready_timeout`` (2 s) after
        READY for more GUILD_CREATEs, and its close() leaves that task running: a stop inside that
        window would have it dispatch on the closed client (a traceback in the admin's log)."""
        pending = getattr(self._connection, "_ready_task", None)
        if pending is not None and not pending.done():
            pending.cancel()
            await asyncio.gather(pending, return_exceptions=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    _quiet_libraries()
    setup_logging(args.log_level)
    if args.check:
        return check(args.config)
    if args.worker:
        return worker(args.config)
    return run(args.config)


if __name__ == "__main__":
    sys.exit(main())
