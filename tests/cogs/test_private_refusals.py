"""Refusals are always private: after a slow download that made easel defer publicly, and when a
member's requests arrive together beyond the caps."""

from __future__ import annotations

import asyncio
from typing import Any

import discord
import pytest

from tests.cogs.helpers import gpu_busy, make_world


async def test_a_slow_bad_upload_is_refused_privately_and_leaves_no_public_message(simcord_env, simcord_bot,
                                                                                   monkeypatch) -> None:
    real_read = discord.Attachment.read

    async def slow_read(self: discord.Attachment, **kwargs: Any) -> bytes:
        await asyncio.sleep(2.0)  # past the 1.5 s easel waits before deferring with a public "thinking"
        return await real_read(self, **kwargs)

    monkeypatch.setattr(discord.Attachment, "read", slow_read)
    w = make_world(simcord_env)
    result = await w.alice.slash(w.channel, "vary", image=("notes.png", b"just some text, not a picture"))
    await simcord_env.advance_time(3)
    assert result.deferred or result.acknowledged
    assert result.response is None  # the public "thinking" message is gone
    [refusal] = result.followups
    assert refusal.ephemeral and "not an image I can read" in refusal.content
    assert not [m for m in w.channel.history() if m.author.bot]  # nothing of it in front of the channel


@pytest.mark.parametrize("server_cap", [None, 2], ids=["queue cap", "server cap"])
async def test_requests_arriving_together_beyond_the_cap_are_refused_privately(simcord_env, simcord_bot,
                                                                              monkeypatch, server_cap) -> None:
    """Five /imagine at the same instant: while the first ones are being recorded (slowly here),
    the later ones must already count them."""
    w = make_world(simcord_env)
    if server_cap is not None:
        await w.admin.slash(w.channel, "easel settings", per_user_cap=server_cap)
    jobs = simcord_bot.studio.database.jobs
    real_add = jobs.add
    disk = asyncio.Event()

    async def slow_add(**kwargs: Any) -> Any:  # a busy disk: every request waits here until all five arrived
        await simcord_env.external_wait(disk.wait(), reason="a busy disk")
        return await real_add(**kwargs)

    monkeypatch.setattr(jobs, "add", slow_add)
    allowed = server_cap or simcord_bot.config.queue.per_user
    with gpu_busy(simcord_bot):
        results = [await w.alice.slash(w.channel, "imagine", prompt=f"at once {n}") for n in range(5)]
        disk.set()
        await simcord_env.settle()
        refused = [r for r in results if r.ephemeral]
        accepted = [r for r in results if not r.ephemeral]
        assert len(accepted) == allowed and len(refused) == 5 - allowed
        for result in refused:
            assert result.response is not None and not result.followups
            assert "per member" in result.response.content or "already have" in result.response.content
        assert all("Queued" in r.response.content for r in accepted)
        assert simcord_bot.studio.engine.queue.pending_for(w.alice.id) == allowed
        assert not [m for m in w.channel.history() if m.author.bot and "\u26a0" in m.content]
