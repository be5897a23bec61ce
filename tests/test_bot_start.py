"""Starting the bot as a new admin sees it: Discord unreachable at start-up is one line per try and a
retry with backoff until it answers (or the bot is stopped), a bad token stays fatal, and the log
carries no voice-library warnings.

In-process: the real EaselBot and discord.py against the fake Discord of tests/e2e on loopback,
first pointed at a port where nothing listens."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import discord
import discord.gateway
import discord.http
import pytest
import yarl

import bot as bot_module
from bot import EaselBot, start_with_retry
from config import Config
from tests.e2e.fake_discord import FakeDiscord
from tests.fixtures.loopback import closed_port_url

UNREACHABLE = "cannot reach Discord"



@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    server = FakeDiscord()
    await server.start()
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
def offline_discord(monkeypatch: pytest.MonkeyPatch, fake: FakeDiscord) -> str:
    """REST at a closed port (as when DNS or the network is down); the gateway at the fake."""
    base = closed_port_url("/api/v10")
    monkeypatch.setattr(discord.http.Route, "BASE", base)
    monkeypatch.setattr(discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(fake.gateway_url))
    return base


@pytest.fixture
def easel(tiny_config: Config, tmp_path: Path) -> EaselBot:
    config = dataclasses.replace(tiny_config, base_dir=tmp_path,
                                 discord=dataclasses.replace(tiny_config.discord, sync_commands=False))
    return EaselBot(config, extensions=(), start_studio=False)


async def until(check, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


def unreachable_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "easel" and UNREACHABLE in r.getMessage()]


async def test_unreachable_discord_is_one_line_per_try_then_it_connects(
        easel: EaselBot, fake: FakeDiscord, offline_discord: str, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    task = asyncio.create_task(start_with_retry(easel, fake.token, first_wait_s=0.05, max_wait_s=0.2))
    await until(lambda: len(unreachable_lines(caplog)) >= 4)
    monkeypatch.setattr(discord.http.Route, "BASE", fake.rest_url)  # the network is back
    await asyncio.wait_for(easel.wait_until_ready(), 20)
    assert easel.user is not None and str(easel.user.id) == fake.application_id
    await easel.close()
    await asyncio.wait_for(task, 10)

    lines = unreachable_lines(caplog)
    port = yarl.URL(offline_discord).port
    assert lines[0].startswith(f"cannot reach Discord (Cannot connect to host 127.0.0.1:{port} ")
    assert [line.rsplit("trying again in ", 1)[1] for line in lines[:4]] == ["0.05 s", "0.1 s", "0.2 s", "0.2 s"]
    assert not any(r.exc_info for r in caplog.records if r.name == "easel"), "no traceback for an unreachable Discord"
    gc.collect()  # a login's session left open would be reported when collected
    assert not [r for r in caplog.records if "Unclosed" in r.getMessage()]


async def test_stopping_while_waiting_to_retry_ends_cleanly(easel: EaselBot, offline_discord: str,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    task = asyncio.create_task(start_with_retry(easel, "any-token", first_wait_s=60, max_wait_s=60))
    await until(lambda: unreachable_lines(caplog))
    await easel.close()  # what SIGTERM and Ctrl-C do
    await asyncio.wait_for(task, 5)  # not after the 60 s wait
    assert len(unreachable_lines(caplog)) == 1


async def test_a_stop_right_after_login_does_not_dispatch_ready_on_the_closed_client(
        easel: EaselBot, fake: FakeDiscord, monkeypatch: pytest.MonkeyPatch) -> None:
    """Stopped inside the 2 s discord.py waits after READY for more guilds (a quick test module, an
    admin's Ctrl-C at start-up): its pending 'ready' must not fire once the client is closed."""
    monkeypatch.setattr(discord.http.Route, "BASE", fake.rest_url)
    monkeypatch.setattr(discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(fake.gateway_url))
    task = asyncio.create_task(start_with_retry(easel, fake.token, first_wait_s=0.05))
    await until(lambda: getattr(easel._connection, "_ready_task", None) is not None)
    pending_ready = easel._connection._ready_task
    assert pending_ready is not None
    await easel.close()
    await asyncio.wait_for(task, 10)
    await asyncio.wait_for(asyncio.gather(pending_ready, return_exceptions=True), easel._connection.guild_ready_timeout + 5)
    assert pending_ready.cancelled() or pending_ready.exception() is None
    assert not easel.is_ready()


async def test_a_refused_token_is_not_retried(easel: EaselBot, fake: FakeDiscord, monkeypatch: pytest.MonkeyPatch,
                                              caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(discord.http.Route, "BASE", fake.rest_url)
    with pytest.raises(discord.LoginFailure):
        await asyncio.wait_for(start_with_retry(easel, "not-the-token", first_wait_s=0.01), 10)
    assert not unreachable_lines(caplog)
    await easel.close()


def test_only_network_trouble_is_retried() -> None:
    dns = aiohttp.ClientConnectorError(aiohttp.client_reqrep.ConnectionKey(  # type: ignore[attr-defined]
        "discord.com", 443, True, True, None, None, None), OSError(-2, "Name or service not known"))
    assert bot_module._unreachable(dns, setup_began=False)
    assert bot_module._unreachable(dns, setup_began=True)  # the command sync in setup_hook
    assert bot_module._unreachable(OSError(101, "Network is unreachable"), setup_began=False)
    assert bot_module._unreachable(TimeoutError(), setup_began=False)
    assert not bot_module._unreachable(OSError(28, "No space left on device"), setup_began=True)  # the job log
    assert not bot_module._unreachable(discord.LoginFailure("bad token"), setup_began=False)
    assert not bot_module._unreachable(RuntimeError("a bug"), setup_began=False)


async def test_setup_runs_once_when_a_login_is_retried(easel: EaselBot, monkeypatch: pytest.MonkeyPatch) -> None:
    """A retried login calls setup_hook again: the cogs are not loaded twice (which would fail)."""
    loads: list[str] = []

    async def load_extension(name: str, *, package: str | None = None) -> None:
        loads.append(name)

    monkeypatch.setattr(easel, "extensions_to_load", ("cogs.admin",))
    monkeypatch.setattr(easel, "load_extension", load_extension)
    await easel.setup_hook()
    await easel.setup_hook()
    assert loads == ["cogs.admin"] and easel.setup_began
    await easel.close()


def test_no_voice_library_warnings(tiny_config: Config, monkeypatch: pytest.MonkeyPatch,
                                   caplog: pytest.LogCaptureFixture) -> None:
    """discord.py warns once per process that PyNaCl and davey are missing; easel never uses voice."""
    monkeypatch.setattr(discord.VoiceClient, "warn_nacl", True)  # as in a fresh process without PyNaCl
    monkeypatch.setattr(discord.VoiceClient, "warn_dave", True)
    caplog.set_level(logging.INFO)
    EaselBot(tiny_config, extensions=(), start_studio=False)
    assert not [r for r in caplog.records if "voice will NOT be supported" in r.getMessage()]
