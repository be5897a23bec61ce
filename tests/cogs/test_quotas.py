"""Daily image quotas through the in-process Discord: /easel limits, refusals at the limit, role
overrides, cancelled and failed jobs, the UTC-midnight reset and /queue's usage line.

The job log runs on a clock the test moves (the Database takes ``clock=``), set to 19:00 UTC so
that the count resets in 5 h."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from simcord.backend.errors import SetupError

import studio as studio_module
from inference import executor as executor_module
from storage import Database
from storage.quotas import day_start
from tests.cogs.conftest import eventually
from tests.cogs.helpers import button_ids, final, gpu_busy, make_world, refusal
from tests.storage.helpers import Clock

HOUR = 3600.0


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """The studio's job log on a settable clock: today, 19:00 UTC."""
    clock = Clock(day_start(time.time()) + 19 * HOUR)

    class ClockedDatabase:
        @staticmethod
        async def open(path: str | Path) -> Database:
            return await Database.open(path, clock=clock)

    monkeypatch.setattr(studio_module, "Database", ClockedDatabase)
    return clock


@pytest.fixture
def simcord_bot(clock: Clock, simcord_bot: Any) -> Any:
    """conftest's bot, made after the clock is in place (the studio opens the job log at start)."""
    return simcord_bot


async def limits(member: Any, w: Any, **options: Any) -> Any:
    return await member.slash(w.channel, "easel limits", **options)


async def imagine(member: Any, w: Any, count: int = 1, prompt: str = "a cat") -> Any:
    return await member.slash(w.channel, "imagine", prompt=prompt, count=count, steps=2)


async def status_of(bot: Any, job_id: str) -> str:
    row = await bot.studio.database.jobs.get(job_id)
    assert row is not None
    return row.status


def job_id_of(result: Any) -> str:
    return result.response.content.rsplit("job `", 1)[1].split("`", 1)[0]


# ---------------------------------------------------------------------------- /easel limits


async def test_an_admin_sets_shows_and_clears_limits(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    supporter = w.guild.create_role("supporter")
    shown = await limits(w.admin, w)
    assert shown.ephemeral and shown.response.content == (
        "**easel limits**\nImages per member per day: no limit (counts reset at midnight UTC)\nRole overrides: none")
    result = await limits(w.admin, w, daily=20, role=supporter, role_daily=50)
    assert result.response.content == (
        "**easel limits** (updated)\nImages per member per day: 20 (counts reset at midnight UTC)\n"
        f"Role overrides: <@&{supporter.id}>: 50")
    result = await limits(w.admin, w, role=supporter, role_daily=0)
    assert result.response.content.endswith(f"Role overrides: <@&{supporter.id}>: no limit")
    result = await limits(w.admin, w, role=supporter, role_weight=3)  # its limit stays
    assert result.response.content.endswith(
        f"Role overrides: <@&{supporter.id}>: no limit, 3 jobs per turn in the queue")
    result = await limits(w.admin, w, clear_role=supporter, daily=0)
    assert result.response.content.endswith("per day: no limit (counts reset at midnight UTC)\nRole overrides: none")
    assert not (await simcord_bot.studio.database.quotas.limits(w.guild.id)).any


async def test_a_role_without_its_number_is_refused_and_changes_nothing(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    supporter = w.guild.create_role("supporter")
    for options in ({"role": supporter}, {"role_daily": 5}, {"daily": 3, "role": supporter}):
        result = await limits(w.admin, w, **options)
        assert refusal(result) == ("To give a role its own limit or queue weight, name the `role` with its "
                                   "`role_daily` images (0 = no limit) and/or `role_weight` (jobs per turn in the queue).")
    assert not (await simcord_bot.studio.database.quotas.limits(w.guild.id)).any


async def test_limits_are_hidden_from_members_without_manage_server(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    with pytest.raises(SetupError, match="default-member-permissions"):
        await limits(w.bob, w, daily=1000)
    assert "easel limits" not in w.bob.available_commands(w.channel)
    root = simcord_env.backend.find_command("easel", None, type=1)
    w.guild.set_command_permissions(int(root["id"]), {w.bob: True})  # a server admin's override
    assert refusal(await limits(w.bob, w, daily=1000)) == "You need the Manage Server permission for that."
    assert not (await simcord_bot.studio.database.quotas.limits(w.guild.id)).any


# ---------------------------------------------------------------------------- admission


async def test_a_member_at_the_limit_is_refused_with_their_count_and_the_reset(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    await limits(w.admin, w, daily=3)
    await final(await imagine(w.alice, w, count=2))
    too_many = await imagine(w.alice, w, count=2)
    assert refusal(too_many) == ("You have made 2 of 3 images today on this server, and this asks for 2 more: "
                                 "ask for 1 or fewer, or wait (the count resets in 5 h).")
    await final(await imagine(w.alice, w, count=1))
    refused = await imagine(w.alice, w)
    assert refusal(refused) == "You have made 3 of 3 images today on this server; the count resets in 5 h."
    assert (await simcord_bot.studio.database.jobs.history(user_id=w.alice.id)).total == 2  # nothing recorded
    assert not (await imagine(w.bob, w)).ephemeral  # each member has their own count


async def test_queued_jobs_count_so_fast_requests_cannot_pass_the_limit(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    await limits(w.admin, w, daily=2)
    with gpu_busy(simcord_bot):
        assert not (await imagine(w.alice, w, prompt="one")).ephemeral
        assert not (await imagine(w.alice, w, prompt="two")).ephemeral
        refused = await imagine(w.alice, w, prompt="three")
        assert refusal(refused) == "You have made 2 of 2 images today on this server; the count resets in 5 h."
        shown = await w.alice.slash(w.channel, "queue")
        assert shown.response.content.endswith("\n\U0001f4ca 2 of 2 images today, resets in 5 h.")


async def test_buttons_on_a_result_are_refused_at_the_limit(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    await limits(w.admin, w, daily=2)
    original = await final(await imagine(w.alice, w, count=2))
    expected = "You have made 2 of 2 images today on this server; the count resets in 5 h."
    for prefix in ("easel:r:", "easel:v:"):  # Reroll, a variation
        [button, *_] = [i for i in button_ids(original) if i.startswith(prefix)]
        assert refusal(await w.alice.click(original, custom_id=button)) == expected
    assert (await simcord_bot.studio.database.jobs.history(user_id=w.alice.id)).total == 1


async def test_a_role_override_raises_the_limit_and_the_highest_role_wins(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    supporter, patron = w.guild.create_role("supporter"), w.guild.create_role("patron")
    carol = w.guild.add_member(simcord_env.create_user("carol"), roles=[supporter, patron])
    await limits(w.admin, w, daily=1, role=supporter, role_daily=2)
    await limits(w.admin, w, role=patron, role_daily=3)
    await final(await imagine(carol, w, count=3))
    assert refusal(await imagine(carol, w)) == (
        "You have made 3 of 3 images today on this server; the count resets in 5 h.")
    await final(await imagine(w.alice, w))
    assert "1 of 1 images" in refusal(await imagine(w.alice, w))
    await limits(w.admin, w, role=patron, role_daily=0)  # no limit for patrons
    assert not (await imagine(carol, w, count=4)).ephemeral


async def test_a_roles_queue_weight_goes_to_the_fair_queue_when_its_member_asks(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    supporter = w.guild.create_role("supporter")
    carol = w.guild.add_member(simcord_env.create_user("carol"), roles=[supporter])
    result = await limits(w.admin, w, role=supporter, role_weight=2)
    assert result.response.content.endswith(
        f"Role overrides: <@&{supporter.id}>: the server's limit, 2 jobs per turn in the queue")
    queue = simcord_bot.studio.engine.queue
    await final(await imagine(carol, w))
    await final(await imagine(w.alice, w))
    assert (queue.weight(carol.id), queue.weight(w.alice.id)) == (2, 1)
    await limits(w.admin, w, clear_role=supporter)
    await final(await imagine(carol, w))
    assert queue.weight(carol.id) == 1


async def test_a_cancelled_job_gives_its_images_back(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    await limits(w.admin, w, daily=3)
    with gpu_busy(simcord_bot):
        first = await imagine(w.alice, w, count=2, prompt="kept")
        second = await imagine(w.alice, w, prompt="cancelled")
        assert "3 of 3 images" in refusal(await imagine(w.alice, w))
        job_id = job_id_of(second)
        await w.alice.click(second.response, custom_id=f"easel:c:{job_id}")
        await eventually(lambda: second.response.content.startswith("\u2716\ufe0f Cancelled"))
        assert await status_of(simcord_bot, job_id) == "cancelled"
        assert not (await imagine(w.alice, w, prompt="in its place")).ephemeral
    await final(first)


async def test_a_failed_job_does_not_count(simcord_env, simcord_bot, monkeypatch) -> None:
    w = make_world(simcord_env)
    await limits(w.admin, w, daily=2)

    def out_of_memory(*args: object, **kwargs: object) -> None:
        raise RuntimeError("CUDA out of memory")

    with monkeypatch.context() as patched:
        patched.setattr(executor_module, "run_diffusion_batch", out_of_memory)
        failed = await final(await imagine(w.alice, w, count=2))
    assert failed.content.startswith("\u26a0")
    await final(await imagine(w.alice, w, count=2))
    assert "2 of 2 images" in refusal(await imagine(w.alice, w))


async def test_the_count_resets_at_midnight_utc(simcord_env, simcord_bot, clock: Clock) -> None:
    w = make_world(simcord_env)
    await limits(w.admin, w, daily=1)
    await final(await imagine(w.alice, w))
    clock.advance(4 * HOUR + 20 * 60)  # 23:20
    assert refusal(await imagine(w.alice, w)) == (
        "You have made 1 of 1 images today on this server; the count resets in 40 min.")
    clock.advance(40 * 60)  # midnight
    shown = await w.alice.slash(w.channel, "queue")
    assert shown.response.content.endswith("\U0001f4ca 0 of 1 images today, resets in 24 h.")
    await final(await imagine(w.alice, w))


async def test_queue_shows_no_usage_where_no_limit_applies(simcord_env) -> None:
    w = make_world(simcord_env)
    shown = await w.alice.slash(w.channel, "queue")
    assert "images today" not in shown.response.content


async def test_a_reaction_at_the_limit_is_refused_by_dm(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    await limits(w.admin, w, daily=1)
    original = await final(await imagine(w.alice, w))
    await w.alice.react(original, "\U0001f501")  # 🔁 Reroll
    [dm] = await eventually(lambda: w.alice.user.dm_channel.history())
    assert "You have made 1 of 1 images today on this server; the count resets in 5 h." in dm.content
    assert (await simcord_bot.studio.database.jobs.history(user_id=w.alice.id)).total == 1
