"""GPU worker processes (``bot.py --worker``) beside the real bot, for the cluster's end-to-end tests.

Each worker gets a folder of its own (its TOML, job log and log file) and one torch thread. Waiting
happens through the fake Discord's ``wait_for``, never a blocking sleep: the fake and the test share
one event loop.
"""

from __future__ import annotations

import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import redis

from tests.cluster.helpers import start_worker, worker_log
from tests.e2e.conftest import Settings, render_toml
from tests.e2e.fake_discord import FakeDiscord
from tests.e2e.launcher import TRACEBACK

WORKER_START_TIMEOUT_S = 120.0  # two workers import torch and load the tiny model at once on 2 cores


def merged(base: Settings, overrides: Settings) -> Settings:
    """``base`` with each section's keys from ``overrides`` on top (as the e2e conftest merges them)."""
    out = dict(base)
    for section, table in overrides.items():
        out[section] = {**out.get(section, {}), **table} if isinstance(table, dict) else table
    return out


@dataclass
class Workers:
    """Named worker processes of one Redis prefix; a killed one can be started again under its name."""

    server: FakeDiscord
    client: redis.Redis
    settings: Settings  # the bot's settings, [cluster] included; each worker changes only its storage and name
    folder: Path
    prefix: str
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    killed: set[str] = field(default_factory=set)

    def toml(self, name: str) -> Path:
        """The worker's configuration, written to its folder: the bot's, with its own storage and name."""
        folder = self.folder / name
        folder.mkdir(parents=True, exist_ok=True)
        settings = merged(self.settings, {
            "storage": {"database": str(folder / "w.db"), "outputs": str(folder / "out")},
            "cluster": {"worker_name": name}})
        path = folder / "worker.toml"
        path.write_text(render_toml(settings), encoding="utf-8")
        return path

    def alive(self, name: str) -> bool:
        process = self.processes.get(name)
        return process is not None and process.poll() is None

    def crash_report(self) -> str | None:
        """Why waiting is pointless: a worker the test did not kill exited. For ``add_watchdog``."""
        for name, process in self.processes.items():
            if name not in self.killed and process.poll() is not None:
                return f"worker {name} exited with code {process.returncode}; its log ends:\n" \
                       f"{self.log(name)[-3000:]}"
        return None

    def start_missing(self, *names: str) -> None:
        """Start each named worker that is not running (never started, or killed by a test)."""
        for name in names:
            if not self.alive(name):
                self.killed.discard(name)
                self.processes[name] = start_worker(self.toml(name), name)

    async def ensure(self, *names: str) -> None:
        """Each named worker running and announced in Redis (started again if a test killed it)."""
        self.start_missing(*names)
        await self.server.wait_for(lambda: all(self.client.exists(f"{self.prefix}:worker:{n}") for n in names),
                                   WORKER_START_TIMEOUT_S, f"workers {names} to announce themselves")

    async def kill(self, name: str) -> None:
        """SIGKILL: the worker's job is left unacknowledged, its heartbeat stops."""
        self.killed.add(name)
        process = self.processes[name]
        process.send_signal(signal.SIGKILL)
        await self.server.wait_for(lambda: process.poll() is not None, 10, f"worker {name} to die")

    async def stop_all(self) -> None:
        for name, process in self.processes.items():
            self.killed.add(name)
            if process.poll() is None:
                process.terminate()
        for name, process in self.processes.items():
            try:
                await self.server.wait_for(lambda p=process: p.poll() is not None, 20, f"worker {name} to stop")
            except AssertionError:
                process.kill()
                process.wait(10)

    def running(self, job: str) -> str | None:
        """The worker that holds the job now (the cluster's ``running`` hash), or None."""
        holder = self.client.hget(f"{self.prefix}:running", job)
        return holder.decode() if holder else None

    def sent(self, model: str = "tiny") -> int:
        """Batches ever added to the model's job stream (the bot's sends; workers delete each entry
        they answer, so the entries left say nothing): its ``entries-added``, 0 before the first."""
        stream = f"{self.prefix}:jobs:{model}"
        return int(self.client.xinfo_stream(stream)["entries-added"]) if self.client.exists(stream) else 0

    def served(self) -> int:
        """Jobs served so far, summed over the live workers' announcements."""
        return sum(int(self.client.hget(f"{self.prefix}:worker:{name}", "served") or 0) for name in self.processes
                   if self.alive(name))

    def assert_no_traceback(self) -> None:
        """Fail when a worker logged a traceback (a failed batch or a crash in its Redis loop)."""
        for name in self.processes:
            log = self.log(name)
            if (start := log.find(TRACEBACK)) != -1:
                excerpt = "\n".join(log[start:].splitlines()[:40])
                raise AssertionError(f"worker {name} logged a traceback:\n{excerpt}")

    def log(self, name: str) -> str:
        """The worker's log (its output goes to ``worker-<name>.log`` in its folder)."""
        path = worker_log(self.folder / name / "worker.toml", name)
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
