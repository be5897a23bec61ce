"""Arranging a small server and waiting for the bot's answers in simcord tests."""

from __future__ import annotations

import contextlib
import io
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import discord
from PIL import Image

from tests.cogs.conftest import eventually


@dataclass
class World:
    env: Any
    guild: Any
    channel: Any
    alice: Any
    bob: Any
    admin: Any


def make_world(env: Any) -> World:
    guild = env.create_guild()
    channel = guild.create_text_channel("art")
    alice = guild.add_member(env.create_user("alice"))
    bob = guild.add_member(env.create_user("bob"))
    boss = guild.create_role("boss", permissions=discord.Permissions(manage_guild=True, manage_messages=True))
    admin = guild.add_member(env.create_user("admin"), roles=[boss])
    return World(env, guild, channel, alice, bob, admin)


def png(size: tuple[int, int] = (96, 80), colour: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


def is_final(content: str, message: Any) -> bool:
    if "job `" not in content:
        return False
    results = [i for i in button_ids(message) if not i.startswith("easel:c:")]  # Cancel is on queued jobs
    return bool(results) or content.startswith(("\u26a0", "\u2716")) or "NSFW" in content


async def final(result: Any, timeout: float = 60.0) -> Any:
    """The interaction's status message once it shows the result (or the failure)."""
    return await eventually(lambda: result.response if result.response is not None
                            and is_final(result.response.content, result.response) else None, timeout)


async def final_in(channel: Any, timeout: float = 60.0, *, after: int = 0) -> discord.Message:
    """The latest bot message in a channel that shows a finished job."""
    def check() -> discord.Message | None:
        for message in reversed(channel.history()):
            if message.id > after and message.author.bot and is_final(message.content, message):
                return message
        return None

    return await eventually(check, timeout)


async def image_of(message: Any) -> Image.Image:
    data = await message.attachments[0].read()
    return Image.open(io.BytesIO(data))


def button_ids(message: Any) -> list[str]:
    ids = []
    for row in message.components:
        children = row.get("components", [row]) if isinstance(row, dict) else getattr(row, "children", [row])
        for child in children:
            cid = child.get("custom_id") if isinstance(child, dict) else getattr(child, "custom_id", None)
            if cid:
                ids.append(cid)
    return ids


@contextlib.contextmanager
def gpu_busy(bot: Any) -> Iterator[None]:
    """Hold the one inference thread so that jobs stay queued while the test looks."""
    release = threading.Event()
    bot.studio.engine.executor.submit(release.wait, 60)
    try:
        yield
    finally:
        release.set()


def refusal(result: Any) -> str:
    """The ephemeral message a refused request got."""
    assert result.ephemeral and result.response is not None, f"expected an ephemeral refusal, got {result!r}"
    return result.response.content


def assert_no_pings(env: Any) -> None:
    """Every message the bot sent or edited asked Discord to ping nobody."""
    sent = [e for e in env.http_requests if isinstance(e.json, dict) and "content" in e.json]
    assert sent, "no message requests were recorded"
    for entry in sent:
        mentions = dict(entry.json.get("allowed_mentions") or {"missing": True})
        if mentions.get("replied_user") is False:  # a reply that does not ping its author
            del mentions["replied_user"]
        assert mentions == {"parse": []}, (entry.method, entry.path, entry.json)


async def job_posted_as(bot: Any, message: Any, timeout: float = 30.0) -> Any:
    """The job-log row of the job posted as ``message``. The log records the message right after
    Discord took the post, so a test that has just seen the message may ask a moment too early."""
    import asyncio

    deadline = asyncio.get_running_loop().time() + timeout
    while (row := await bot.studio.database.jobs.by_message(message.id)) is None:
        assert asyncio.get_running_loop().time() < deadline, f"no job posted as message {message.id}"
        await asyncio.sleep(0.05)
    return row
