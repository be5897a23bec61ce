"""Fixtures of the end-to-end tier: the fake Discord, and the real easel (``bot.py``, unchanged) against it.

``server`` is a fresh fake per test (the fake's self-tests use it). The easel tests share one fake and one
bot process per module (``easel_server``, ``easel_bot``): starting easel loads torch and a model, so each
module pays for it once. A module changes easel's configuration by overriding the ``easel_settings``
fixture. Every test that uses the bot fails when the bot logged a traceback while it ran, or when the bot
called a route the fake does not know.

Modules using these fixtures mark their tests ``pytest.mark.asyncio(loop_scope="module")``: the shared fake
lives in the module's event loop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.e2e.fake_discord import FakeDiscord
from tests.e2e.launcher import STOPPED, TRACEBACK, BotProcess, start_bot_process

BOT_SCRIPT = Path(__file__).resolve().parents[2] / "bot.py"
NSFW_WORD = "nsfwword"
LOGIN_TIMEOUT_S = 120.0

Settings = dict[str, Any]  # section -> table, or a list of tables for an array section ([[upscalers]])


@pytest.fixture
async def server() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as fake:
        yield fake
        fake.assert_clean()


@pytest.fixture(scope="session")
def anime_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight AnimeGAN2 generator saved like the upstream checkpoints (a plain state_dict)."""
    import torch

    from inference.anime import Generator

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("anime") / "face_paint_512_v2.pt"
    torch.save(Generator().state_dict(), path)
    return path


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML for {value!r}")


def render_toml(settings: Settings) -> str:
    """Sections as tables; a section given as a list of tables (``upscalers``) as ``[[section]]`` entries."""
    def table(header: str, values: dict[str, Any]) -> str:
        return f"{header}\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in values.items())

    return "\n".join(table(f"[{section}]", body) if isinstance(body, dict)
                     else "\n".join(table(f"[[{section}]]", entry) for entry in body)
                     for section, body in settings.items())


def default_settings(model_dir: Path, anime_weights: Path) -> Settings:
    """The tiny model on one CPU thread at 64 px by default (256 at most), a temporary job log and outputs folder,
    quick progress edits.

    One torch thread: with torch's default (every core) the GPU thread starves the bot's event loop on a
    2-core machine, and discord.py warns that its heartbeat is 10 s behind."""
    return {
        "model": {"source": model_dir, "name": "tiny", "family": "sd15", "size": 64, "min_size": 64,
                  "max_size": 256, "steps": 4, "max_steps": 150, "guidance": 0.0},
        "device": {"device": "cpu", "previews": True, "threads": 1},
        "queue": {"per_user": 4, "total": 50, "max_batch": 4, "batch_wait_ms": 0},
        "storage": {"database": "easel.db", "outputs": "outputs"},
        "anime": {"cache_dir": "anime-cache", "weights": {"face_paint_512_v2": anime_weights}, "download": False},
        "discord": {"progress_interval_s": 0.2, "nsfw_words": [NSFW_WORD]},
        # A test member fires dozens of requests in seconds; the per-member limits have in-process tests.
        "limits": {"actions_per_minute": 1000, "dms_per_minute": 1000},
    }


@dataclass
class Easel:
    """The easel bot of one test module: its config, its processes (one per start) and their logs."""

    server: FakeDiscord
    work: Path
    config_path: Path
    processes: list[BotProcess] = field(default_factory=list)

    @property
    def process(self) -> BotProcess:
        return self.processes[-1]

    async def start(self) -> BotProcess:
        """Run ``bot.py --config easel.toml`` through the launcher; wait until it logged in.

        easel syncs its commands in ``setup_hook``, before it connects, so a logged-in bot has synced."""
        number = len(self.processes) + 1
        process = await start_bot_process(
            BOT_SCRIPT, ["--config", str(self.config_path)], rest=self.server.rest_url,
            gateway=self.server.gateway_url, cwd=self.work, log_path=self.work / f"bot-{number}.log",
            env={"DISCORD_TOKEN": self.server.token, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
        self.processes.append(process)
        self.server.add_watchdog(process.crash_report)
        await self.server.wait_logged_in(number, timeout=LOGIN_TIMEOUT_S)
        return process

    async def kill(self) -> None:
        """SIGKILL the running bot: no shutdown code runs, as in a crash or a power cut."""
        await self.process.kill()

    async def stop(self) -> None:
        for process in self.processes:
            await process.stop()

    def assert_stopped_cleanly(self) -> None:
        """The last process ran its whole shutdown (last results stored, job log closed) and exited 0."""
        process = self.process
        tail = "\n".join(process.log().splitlines()[-20:])
        assert process.returncode == 0 and STOPPED in process.log(), \
            f"the bot did not stop cleanly (exit code {process.returncode}); {process.log_path} ends:\n{tail}"

    def log_marks(self) -> dict[int, int]:
        return {i: len(p.log()) for i, p in enumerate(self.processes)}

    def assert_no_traceback(self, since: dict[int, int] | None = None) -> None:
        """Fail when a bot process logged a traceback (after ``since``, from ``log_marks``)."""
        for i, process in enumerate(self.processes):
            log = process.log()[(since or {}).get(i, 0):]
            start = log.find(TRACEBACK)
            if start != -1:
                excerpt = "\n".join(log[start:].splitlines()[:60])
                raise AssertionError(f"the bot logged a traceback ({process.log_path}):\n{excerpt}")


@pytest.fixture(scope="module")
def easel_settings() -> Settings:
    """Overrides of :func:`default_settings`, section by section; a module overrides this fixture."""
    return {}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def easel_server() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as fake:
        yield fake


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def easel_bot(easel_server: FakeDiscord, easel_settings: Settings, tiny_model_dir: Path, anime_weights: Path,
                    tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Easel]:
    """easel started on a fresh database; stopped (SIGTERM) before the fake closes."""
    work = tmp_path_factory.mktemp("easel-e2e")
    settings = default_settings(tiny_model_dir, anime_weights)
    for section, table in easel_settings.items():
        settings[section] = {**settings.get(section, {}), **table} if isinstance(table, dict) else table
    config_path = work / "easel.toml"
    config_path.write_text(render_toml(settings), encoding="utf-8")
    easel = Easel(easel_server, work, config_path)
    try:
        await easel.start()
        yield easel
    finally:
        await easel.stop()
    easel.assert_no_traceback()
    easel.assert_stopped_cleanly()


@pytest.fixture(autouse=True)
def _bot_stays_healthy(request: pytest.FixtureRequest) -> Iterator[None]:
    """For tests using easel: no traceback in its log and no unknown route while the test ran."""
    if "easel_bot" not in request.fixturenames:
        yield
        return
    easel: Easel = request.getfixturevalue("easel_bot")
    marks = easel.log_marks()
    yield
    easel.assert_no_traceback(marks)
    easel.server.assert_clean()

