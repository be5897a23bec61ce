"""Run a bot script unchanged with discord.py pointed at the fake Discord.

    python tests/e2e/launcher.py --rest http://127.0.0.1:PORT/api/v10 --gateway ws://127.0.0.1:PORT/ -- bot.py [args…]

(``python -m tests.e2e.launcher …`` works too from the repository root). The two overrides are made here,
by the test launcher, never by the bot: ``discord.http.Route.BASE`` carries every REST call including
interaction callbacks and webhooks, and ``DiscordWebSocket.DEFAULT_GATEWAY`` is where a non-sharded client
connects. Then the script runs as ``__main__`` with its own ``sys.argv`` and its folder first on
``sys.path``, exactly as ``python bot.py`` would run it.

``start_bot_process`` runs that as a subprocess for tests, with its output captured to a log file.
This module imports nothing from ``tests`` so it also runs by path from any working directory.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import runpy
import signal
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

TRACEBACK = "Traceback (most recent call last)"
STOPPED = "easel: easel stopped"  # bot.py logs it as the last step of a clean shutdown


def point_discord_at(rest: str, gateway: str) -> None:
    import discord.gateway
    import discord.http
    import yarl

    discord.http.Route.BASE = rest.rstrip("/")
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway)


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="launcher.py", description="Run a discord.py bot script against a fake Discord.",
                                     usage="%(prog)s --rest URL --gateway URL -- script.py [args...]")
    parser.add_argument("--rest", required=True, help="REST base, e.g. http://127.0.0.1:PORT/api/v10")
    parser.add_argument("--gateway", required=True, help="gateway URL, e.g. ws://127.0.0.1:PORT/")
    if "--" not in argv or argv.index("--") == len(argv) - 1:
        parser.error("give the bot script after '--'")
    split = argv.index("--")
    options = parser.parse_args(argv[:split])
    script, *script_args = argv[split + 1:]
    point_discord_at(options.rest, options.gateway)
    script_path = os.path.abspath(script)
    sys.argv = [script_path, *script_args]
    sys.path[0] = os.path.dirname(script_path)
    runpy.run_path(script_path, run_name="__main__")


class BotProcess:
    """A bot running through the launcher. Its stdout and stderr go to ``log_path``."""

    def __init__(self, process: asyncio.subprocess.Process, log_path: Path) -> None:
        self.process = process
        self.log_path = log_path
        self._stopping = False

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    async def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, then SIGKILL if the bot has not exited after ``timeout`` seconds."""
        self._stopping = True
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return await asyncio.wait_for(self.process.wait(), timeout)
            except TimeoutError:
                pass
        return await self.kill()

    async def kill(self) -> int:
        """SIGKILL: the bot gets no chance to clean up (a crash, as far as it can tell)."""
        self._stopping = True
        if self.process.returncode is None:
            self.process.kill()
        return await self.process.wait()

    def crash_report(self) -> str | None:
        """Why waiting for this bot is pointless (it exited on its own), or None. For ``add_watchdog``."""
        if self._stopping or self.process.returncode is None:
            return None
        tail = "\n".join(self.log().splitlines()[-30:])
        return f"the bot process exited with code {self.process.returncode}; log {self.log_path} ends:\n{tail}"

    async def wait_for_log(self, text: str, timeout: float = 60.0) -> None:
        """Until ``text`` appears in the bot's log; fails early if the bot exits."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while text not in self.log():
            if (reason := self.crash_report()) is not None:
                raise AssertionError(f"waiting for {text!r} in the log: {reason}")
            if loop.time() > deadline:
                raise AssertionError(f"{text!r} did not appear in {self.log_path} within {timeout:.0f} s")
            await asyncio.sleep(0.1)

    def assert_no_traceback(self) -> None:
        log = self.log()
        start = log.find(TRACEBACK)
        if start != -1:
            excerpt = "\n".join(log[start:].splitlines()[:60])
            raise AssertionError(f"the bot logged a traceback ({self.log_path}):\n{excerpt}")


async def start_bot_process(script: str | os.PathLike[str], args: Sequence[str] = (), *, rest: str, gateway: str,
                            env: Mapping[str, str] | None = None, cwd: str | os.PathLike[str] | None = None,
                            log_path: str | os.PathLike[str] | None = None) -> BotProcess:
    """Start ``python launcher.py --rest … --gateway … -- script args…``; ``env`` adds to os.environ."""
    if log_path is None:
        fd, name = tempfile.mkstemp(prefix="bot-", suffix=".log")
        os.close(fd)
        log_path = name
    log_path = Path(log_path)
    command = [sys.executable, str(Path(__file__).resolve()), "--rest", rest, "--gateway", gateway, "--",
               str(Path(script).resolve()), *args]
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    with open(log_path, "ab") as log:
        process = await asyncio.create_subprocess_exec(*command, stdin=asyncio.subprocess.DEVNULL, stdout=log,
                                                       stderr=asyncio.subprocess.STDOUT, env=full_env, cwd=cwd)
    return BotProcess(process, log_path)


if __name__ == "__main__":
    main()
