"""Per-member rate limits: commands and buttons get a friendly private "Slow down", reactions
over the limit are ignored (and logged), and ✉️ has its own, smaller budget."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import pytest

from cogs.utils.ratelimit import MemberLimits, RateLimiter
from config import ConfigError, LimitsConfig, load_config
from tests.cogs.conftest import eventually
from tests.cogs.helpers import button_ids, final, gpu_busy, make_world, png, refusal

MAIL, VARY, ANIME, REROLL, DELETE = "\u2709\ufe0f", "\U0001f3a8", "\U0001f338", "\U0001f501", "\u274c"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_a_burst_then_one_per_interval() -> None:
    clock = Clock()
    limiter = RateLimiter(3, clock=clock)
    assert [limiter.take(1) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take(1) == pytest.approx(20.0)  # 3 a minute: the next one in 20 s
    assert limiter.take(2) == 0.0  # another member has their own bucket
    clock.now += 19.0
    assert limiter.take(1) == pytest.approx(1.0)
    clock.now += 1.0
    assert limiter.take(1) == 0.0 and limiter.take(1) > 0
    clock.now += 3600
    assert [limiter.take(1) for _ in range(4)][-1] > 0  # refills to 3, never more


def test_zero_means_no_limit_and_an_interaction_is_charged_once() -> None:
    assert all(RateLimiter(0).take(1) == 0.0 for _ in range(1000))
    limits = MemberLimits(LimitsConfig(actions_per_minute=2, dms_per_minute=0), clock=Clock())
    assert limits.charge_interaction(77, member=1) == 0.0
    assert limits.charge_interaction(77, member=1) == 0.0  # the cog, the button handler and launch() ask
    assert limits.charge_interaction(78, member=1) == 0.0
    assert limits.charge_interaction(79, member=1) > 0
    assert all(limits.allow_reaction(1, dm=True) for _ in range(50))


@pytest.fixture
def strict(simcord_bot: Any) -> Any:
    """3 actions and 1 DM a minute per member (set before the bot's limits are first used)."""
    simcord_bot.config = dataclasses.replace(simcord_bot.config, limits=dataclasses.replace(
        simcord_bot.config.limits, actions_per_minute=3, dms_per_minute=1))
    return simcord_bot


async def test_commands_over_the_limit_get_a_private_slow_down(simcord_env, strict) -> None:
    w = make_world(simcord_env)
    for n in range(3):
        assert not (await w.alice.slash(w.channel, "imagine", prompt=f"one of three {n}")).ephemeral
    refused = await w.alice.slash(w.channel, "imagine", prompt="the fourth")
    assert refusal(refused).startswith("Slow down: easel takes 3 requests a minute from each member.")
    assert refusal(await w.alice.slash(w.channel, "vary", image=("a.png", b"not even read"))).startswith("Slow down")
    assert not (await w.bob.slash(w.channel, "imagine", prompt="bob is not alice")).ephemeral
    assert (await strict.studio.database.jobs.history(user_id=w.alice.id)).total == 3


async def test_a_button_counts_once_and_is_refused_over_the_limit(simcord_env, strict) -> None:
    w = make_world(simcord_env)
    original = await final(await w.alice.slash(w.channel, "imagine", prompt="a red fox", steps=2))
    [reroll] = [i for i in button_ids(original) if i.startswith("easel:r:")]
    assert not (await w.alice.click(original, custom_id=reroll)).ephemeral  # the 2nd action, not the 2nd and 3rd
    assert not (await w.alice.click(original, custom_id=reroll)).ephemeral
    assert refusal(await w.alice.click(original, custom_id=reroll)).startswith("Slow down")


async def test_reactions_over_the_limit_are_ignored_and_logged(simcord_env, strict, caplog) -> None:
    w = make_world(simcord_env)
    original = await final(await w.alice.slash(w.channel, "imagine", prompt="a green frog", steps=2))
    cog = strict.get_cog("Reactions")
    handled: list[str] = []
    real_handle = cog.handle

    async def handle(payload: Any, emoji: str) -> None:
        await real_handle(payload, emoji)
        handled.append(emoji)

    cog.handle = handle
    with caplog.at_level(logging.WARNING, logger="cogs.utils.ratelimit"):
        for _ in range(4):
            await w.bob.react(original, MAIL)
            await w.bob.unreact(original, MAIL)
        await eventually(lambda: len(handled) == 4)
    assert len(w.bob.user.dm_channel.history()) == 1  # one DM a minute, not four
    assert [m.id for m in w.channel.history()] == [original.id]  # and no public answer to the others
    assert "faster than limits.dms_per_minute allows" in caplog.text
    assert caplog.text.count("faster than") == 1  # logged once, not once per reaction


def count_handled(bot: Any) -> list[str]:
    """The emoji of each reaction the cog has finished with (its work ends on other threads)."""
    cog = bot.get_cog("Reactions")
    handled: list[str] = []
    real_handle = cog.handle

    async def handle(payload: Any, emoji: str) -> None:
        try:
            await real_handle(payload, emoji)
        finally:
            handled.append(emoji)

    cog.handle = handle
    return handled


async def test_reactions_easel_does_not_answer_cost_nothing(simcord_env, strict) -> None:
    """Chat reactions with easel's emoji, and on pictures where easel is off, are no requests: they
    must not use up the member's budget for /imagine (3 a minute here) nor their DM budget."""
    w = make_world(simcord_env)
    handled = count_handled(strict)
    chat = await w.alice.send(w.channel, "what a nice day")
    picture = await w.alice.send(w.channel, "", attachments=[("cat.png", png())])
    elsewhere = w.guild.create_text_channel("easel-only")
    await strict.studio.database.settings.update_guild(w.guild.id, enabled_channels=(elsewhere.id,))
    for emoji in (VARY, ANIME, REROLL, DELETE, MAIL) * 2:
        await w.bob.react(chat, emoji)
        await w.bob.unreact(chat, emoji)
    for emoji in (VARY, ANIME, MAIL):
        await w.bob.react(picture, emoji)
    await eventually(lambda: len(handled) == 13)
    results = [await w.bob.slash(elsewhere, "imagine", prompt=f"still mine {n}", steps=2) for n in range(3)]
    assert not any(r.ephemeral for r in results), [r.response.content for r in results if r.ephemeral]
    await w.bob.react(await final(results[0]), MAIL)  # the one DM of the minute is still there
    [dm] = await eventually(lambda: w.bob.user.dm_channel.history())
    assert "still mine 0" in dm.content


async def test_deleting_a_result_with_a_cross_costs_nothing(simcord_env, strict) -> None:
    w = make_world(simcord_env)
    handled = count_handled(strict)
    first = await final(await w.alice.slash(w.channel, "imagine", prompt="a first try", steps=2))
    await w.alice.react(first, DELETE)
    await eventually(lambda: handled == [DELETE])
    assert not any(m.id == first.id for m in w.channel.history())
    for n in range(2):  # the 2nd and 3rd of 3 requests a minute: the cleaning up took none
        assert not (await w.alice.slash(w.channel, "imagine", prompt=f"again {n}", steps=2)).ephemeral


async def test_cancel_and_delete_buttons_work_over_the_limit(simcord_env, strict) -> None:
    """Stopping one's own job or removing one's result starts no work: never refused as too fast."""
    w = make_world(simcord_env)
    done = await final(await w.alice.slash(w.channel, "imagine", prompt="a keeper", steps=2))
    with gpu_busy(strict):
        queued = [await w.alice.slash(w.channel, "imagine", prompt=f"queued {n}") for n in range(2)]
        assert refusal(await w.alice.slash(w.channel, "imagine", prompt="one too many")).startswith("Slow down")
        cancel = next(i for i in button_ids(queued[1].response) if i.startswith("easel:c:"))
        cancelled = await w.alice.click(queued[1].response, custom_id=cancel)
        assert refusal(cancelled).startswith("Cancelling job")
        delete = next(i for i in button_ids(done) if i.startswith("easel:x:"))
        await w.alice.click(done, custom_id=delete)
        assert not any(m.id == done.id for m in w.channel.history())


def test_the_limits_come_from_easel_toml_and_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "easel.toml"
    path.write_text("[limits]\nactions_per_minute = 7\nmax_stored_input_mb_per_member = 50\n", encoding="utf-8")
    cfg = load_config(path, environ={"EASEL_LIMITS__DMS_PER_MINUTE": "2"})
    assert (cfg.limits.actions_per_minute, cfg.limits.dms_per_minute) == (7, 2)
    assert cfg.limits.max_stored_input_mb_per_member == 50
    defaults = load_config(Path(__file__).resolve().parents[2] / "easel.example.toml", environ={}).limits
    assert (defaults.actions_per_minute, defaults.dms_per_minute, defaults.max_stored_input_mb_per_member) == \
        (20, 5, 200)


@pytest.mark.parametrize(("key", "value"), [("actions_per_minute", "-1"), ("dms_per_minute", "-3"),
                                            ("max_stored_input_mb_per_member", "-0.5")])
def test_a_negative_limit_is_refused_by_name(tmp_path: Path, monkeypatch, key: str, value: str) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=f"limits.{key}"):
        load_config(environ={f"EASEL_LIMITS__{key.upper()}": value})
