"""easel: a self-hosted Discord image studio. ``python bot.py`` starts the bot.

``python bot.py --check`` validates the configuration, loads the model on its device, makes one
small image and prints what it found, without contacting Discord.
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

import discord
from discord.ext import commands

if TYPE_CHECKING:
    from cogs.delivery import Delivery
    from config import Config
    from studio import Studio

log = logging.getLogger("easel")


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
    parser.add_argument("--log-level", default=os.environ.get("EASEL_LOG_LEVEL", "INFO"))
    return parser.parse_args(argv)


def _fail(message: str) -> int:
    print(f"easel: {message}", file=sys.stderr)
    return 2


def check(config_path: str | None) -> int:
    from config import ConfigError, load_config, read_token

    try:
        config = load_config(config_path)
        read_token()
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
    print("  token  : present (not shown)")
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
    print("  token  : present (not shown)")
    return 0


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
            await bot.start(token)

    try:
        asyncio.run(serve())
    except discord.LoginFailure:
        return _fail("Discord refused the token (DISCORD_TOKEN): check it in the Developer Portal")
    except discord.PrivilegedIntentsRequired:
        return _fail("enable the Message Content intent for the bot in the Developer Portal (Bot > Privileged Gateway Intents)")
    except (ConfigError, ModelLoadError) as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        pass
    return 0


EXTENSIONS = (
    "cogs.errors",
    "cogs.delivery",
    "cogs.imagine",
    "cogs.vary",
    "cogs.paint",
    "cogs.anime",
    "cogs.components",
    "cogs.reactions",
    "cogs.context_menus",
    "cogs.history",
    "cogs.queue",
    "cogs.admin",
)


class EaselBot(commands.Bot):
    """The Discord client: owns the studio (engine + job log) and loads one cog per feature."""

    def __init__(self, config: Config, *, studio: Studio | None = None,
                 extensions: Sequence[str] = EXTENSIONS, start_studio: bool = True) -> None:
        from studio import Studio

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

    async def setup_hook(self) -> None:
        if self.start_studio:
            await self.studio.start()
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
        await super().close()
        await self.studio.close()
        log.info("easel stopped")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    _quiet_libraries()
    setup_logging(args.log_level)
    if args.check:
        return check(args.config)
    return run(args.config)


if __name__ == "__main__":
    sys.exit(main())
