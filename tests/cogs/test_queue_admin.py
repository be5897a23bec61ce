"""/queue (positions, Cancel) and the admin commands /easel settings and /easel status."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from simcord.backend.errors import SetupError

from cogs.utils.buttons import cancel_view
from inference import executor as executor_module
from tests.cogs.conftest import eventually
from tests.cogs.helpers import button_ids, final, gpu_busy, make_world, refusal


def job_id_of(result: Any) -> str:
    """The job id a status message shows (``job `abc123```)."""
    return result.response.content.rsplit("job `", 1)[1].split("`", 1)[0]


async def queue_until_one_waits(bot: Any, w: Any, member: Any) -> tuple[list[Any], Any]:
    """With the GPU held, queue jobs (of different shapes: no batching) until one is really waiting
    in the fair queue, not already taken for the GPU thread. Returns the others and the waiting one."""
    others = []
    for steps in range(2, 2 + bot.config.queue.per_user):
        result = await member.slash(w.channel, "imagine", prompt=f"job of {steps} steps", steps=steps)
        if bot.studio.engine.queue.position(job_id_of(result)) is not None:
            return others, result
        others.append(result)
    raise AssertionError("no job stayed in the queue")


async def status_of(bot: Any, job_id: str) -> str:
    row = await bot.studio.database.jobs.get(job_id)
    assert row is not None
    return row.status


def private(result: Any) -> str:
    """The ephemeral answer to a click or command (a refusal or a confirmation)."""
    return refusal(result)


def age_restricted(bot: Any, channel: Any) -> None:
    """simcord's channels carry no NSFW flag: set it where discord.py keeps it (the bot's cache)."""
    bot.get_channel(channel.id).nsfw = True


async def settings(member: Any, w: Any, **options: Any) -> Any:
    return await member.slash(w.channel, "easel settings", **options)


# ---------------------------------------------------------------------------- /queue


async def test_queue_shows_the_members_own_jobs_with_positions(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    with gpu_busy(simcord_bot):
        mine = [job_id_of(await w.alice.slash(w.channel, "imagine", prompt=f"cat {n}", steps=n + 2))
                for n in range(3)]
        theirs = job_id_of(await w.bob.slash(w.channel, "imagine", prompt="dog"))
        result = await w.alice.slash(w.channel, "queue")
        lines = result.response.content.split("\n")
        assert result.ephemeral
        assert lines[0] == "**4** waiting, 0 running."  # nothing has started on the held GPU thread
        # The first is taken for the GPU thread already: next, not running. Bob's first job comes
        # before Alice's second (taken for the thread too, and given back when Bob's arrived).
        for job_id, position in zip(mine, (1, 3, 4), strict=True):
            [line] = [li for li in lines if f"`{job_id}`" in li]
            assert f"position {position} of 4" in line, line
        assert theirs not in result.response.content
        assert sorted(button_ids(result.response)) == sorted(f"easel:c:{j}" for j in mine)


async def test_a_started_job_is_running_and_its_bar_starts_empty_at_its_own_steps(
        simcord_env, simcord_bot, monkeypatch) -> None:
    w = make_world(simcord_env)
    inside, release = threading.Event(), threading.Event()
    original = executor_module.run_diffusion_batch

    def held(model, batch, on_step):  # type: ignore[no-untyped-def]
        inside.set()
        release.wait(60)
        return original(model, batch, on_step)

    monkeypatch.setattr(executor_module, "run_diffusion_batch", held)
    try:
        result = await w.alice.slash(w.channel, "imagine", prompt="a slow one", steps=6)
        job_id = job_id_of(result)
        await eventually(inside.is_set)
        await eventually(lambda: "Painting" in result.response.content)
        assert " 0/6 " in result.response.content  # not 0/1
        shown = await w.alice.slash(w.channel, "queue")
        assert shown.response.content.split("\n")[:2] == ["**0** waiting, 1 running.",
                                                          f"\U0001f3a8 `{job_id}` imagine: running now"]
    finally:
        release.set()
    await final(result)


async def test_an_empty_queue_says_so(simcord_env) -> None:
    w = make_world(simcord_env)
    result = await w.alice.slash(w.channel, "queue")
    assert result.ephemeral and result.response.content.endswith("You have no jobs in the queue.")
    assert not button_ids(result.response)


async def test_cancel_button_cancels_the_members_queued_job(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    with gpu_busy(simcord_bot):
        [first, *_], second = await queue_until_one_waits(simcord_bot, w, w.alice)
        job_id = job_id_of(second)
        shown = await w.alice.slash(w.channel, "queue")
        answer = await w.alice.click(shown.response, custom_id=f"easel:c:{job_id}")
        assert private(answer) == f"Cancelling job `{job_id}`."
        await eventually(lambda: second.response.content.startswith("\u2716\ufe0f Cancelled"))
    assert f"job `{job_id}`" in second.response.content and simcord_bot.studio.engine.position(job_id) is None
    assert await status_of(simcord_bot, job_id) == "cancelled"  # recorded before the message said so
    await final(first)  # the other job still runs
    late = await w.alice.click(shown.response, custom_id=f"easel:c:{job_id_of(first)}")
    assert private(late) == f"Job `{job_id_of(first)}` has already finished."


async def test_another_members_job_cannot_be_cancelled_but_an_admin_can(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    with gpu_busy(simcord_bot):
        _, second = await queue_until_one_waits(simcord_bot, w, w.alice)
        job_id = job_id_of(second)
        with simcord_env.time_context():  # a Cancel button anyone can see
            public = await simcord_bot.get_channel(w.channel.id).send("cancel?", view=cancel_view(job_id))
        refused = await w.bob.click(public, custom_id=f"easel:c:{job_id}")
        assert refusal(refused) == "You can only cancel your own jobs."
        assert simcord_bot.studio.engine.position(job_id) is not None
        allowed = await w.admin.click(public, custom_id=f"easel:c:{job_id}")
        assert private(allowed) == f"Cancelling job `{job_id}`."
        await eventually(lambda: second.response.content.startswith("\u2716\ufe0f Cancelled"))


# ---------------------------------------------------------------------------- /easel settings


def easel_command(env: Any) -> int:
    root = env.backend.find_command("easel", None, type=1)
    assert root is not None
    return int(root["id"])


async def test_settings_are_hidden_from_members_without_manage_server(simcord_env) -> None:
    w = make_world(simcord_env)
    with pytest.raises(SetupError, match="default-member-permissions"):
        await settings(w.bob, w)
    assert "easel settings" not in w.bob.available_commands(w.channel)
    assert "easel settings" in w.admin.available_commands(w.channel)


async def test_settings_refuse_a_member_an_override_let_through(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    w.guild.set_command_permissions(easel_command(simcord_env), {w.bob: True})  # a server admin's override
    result = await settings(w.bob, w, per_user_cap=1)
    assert refusal(result) == "You need the Manage Server permission for that."
    assert (await simcord_bot.studio.database.settings.guild(w.guild.id)).per_user_cap is None


async def test_settings_show_the_current_values(simcord_env) -> None:
    w = make_world(simcord_env)
    result = await settings(w.admin, w)
    assert result.ephemeral
    assert result.response.content == ("**easel settings**\nChannels: every channel\n"
                                       "NSFW outside age-restricted channels: block\nJobs per member: 4\n"
                                       "Default model: tiny")


async def test_enabling_a_channel_refuses_imagine_elsewhere_until_disabled(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    other = w.guild.create_text_channel("chat")
    result = await settings(w.admin, w, enable_channel=w.channel)
    assert f"Channels: <#{w.channel.id}>" in result.response.content and "(updated)" in result.response.content
    refused = await w.alice.slash(other, "imagine", prompt="a cat")
    assert refusal(refused) == f"easel is not enabled in this channel. Try <#{w.channel.id}>."
    assert (await simcord_bot.studio.database.jobs.history(user_id=w.alice.id)).total == 0
    assert not (await w.alice.slash(w.channel, "imagine", prompt="a cat")).ephemeral

    result = await settings(w.admin, w, disable_channel=w.channel)
    assert "Channels: every channel" in result.response.content
    assert not (await w.alice.slash(other, "imagine", prompt="a dog")).ephemeral


async def test_nsfw_words_are_blocked_outside_age_restricted_channels(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    result = await settings(w.admin, w, nsfw="block")
    assert "NSFW outside age-restricted channels: block" in result.response.content
    refused = await w.alice.slash(w.channel, "imagine", prompt="a nsfwword cat")
    assert "not allowed in this channel (NSFW)" in refusal(refused)
    lounge = w.guild.create_text_channel("lounge")
    age_restricted(simcord_bot, lounge)
    allowed = await final(await w.alice.slash(lounge, "imagine", prompt="a nsfwword cat", steps=2))
    assert not allowed.attachments[0].is_spoiler()


async def test_the_spoiler_policy_posts_nsfw_results_behind_a_spoiler(simcord_env) -> None:
    w = make_world(simcord_env)
    result = await settings(w.admin, w, nsfw="spoiler")
    assert "NSFW outside age-restricted channels: spoiler" in result.response.content
    message = await final(await w.alice.slash(w.channel, "imagine", prompt="a nsfwword cat", steps=2))
    assert message.attachments[0].filename.startswith("SPOILER_")
    clean = await final(await w.alice.slash(w.channel, "imagine", prompt="a cat", steps=2))
    assert not clean.attachments[0].filename.startswith("SPOILER_")


async def test_the_off_policy_lets_nsfw_words_through(simcord_env) -> None:
    w = make_world(simcord_env)
    result = await settings(w.admin, w, nsfw="off")
    assert "NSFW outside age-restricted channels: off" in result.response.content
    assert not (await w.alice.slash(w.channel, "imagine", prompt="a nsfwword cat")).ephemeral


async def test_per_user_cap_limits_each_member(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    result = await settings(w.admin, w, per_user_cap=1)
    assert "Jobs per member: 1" in result.response.content
    with gpu_busy(simcord_bot):
        assert not (await w.alice.slash(w.channel, "imagine", prompt="one")).ephemeral
        refused = await w.alice.slash(w.channel, "imagine", prompt="two")
        assert refusal(refused) == "This server allows 1 job(s) per member at a time. Wait for one to finish."
        assert not (await w.bob.slash(w.channel, "imagine", prompt="bob's one")).ephemeral
    result = await settings(w.admin, w, per_user_cap=10)
    assert "Jobs per member: 4 (this bot allows at most 4)" in result.response.content
    result = await settings(w.admin, w, per_user_cap=0)  # 0: back to the bot's default
    assert "Jobs per member: 4\n" in result.response.content
    assert (await simcord_bot.studio.database.settings.guild(w.guild.id)).per_user_cap is None


async def test_default_model_must_be_a_known_model(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    refused = await settings(w.admin, w, default_model="nope")
    assert refusal(refused) == "There is no model called 'nope'. Known: tiny."
    assert (await simcord_bot.studio.database.settings.guild(w.guild.id)).default_model is None
    result = await settings(w.admin, w, default_model="tiny")
    assert "Default model: tiny" in result.response.content
    assert (await simcord_bot.studio.database.settings.guild(w.guild.id)).default_model == "tiny"
    offered = await w.admin.autocomplete(w.channel, "easel settings", "default_model", "ti")
    assert [c["value"] for c in offered] == ["tiny"]


# ---------------------------------------------------------------------------- /easel status


async def test_status_shows_device_model_and_queue(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    await final(await w.alice.slash(w.channel, "imagine", prompt="warm up", steps=2))
    with gpu_busy(simcord_bot):
        await w.alice.slash(w.channel, "imagine", prompt="waiting", steps=2)
        await w.alice.slash(w.channel, "imagine", prompt="waiting too", steps=3)
        engine = simcord_bot.studio.engine.status()
        result = await w.admin.slash(w.channel, "easel status")
    text = result.response.content
    assert result.ephemeral and text.startswith("**easel status**")
    assert "device `cpu`" in text and "Models loaded: tiny" in text
    assert f"Queue: {engine.queued} waiting, {engine.running} running" in text and engine.queued + engine.running == 2
    assert "all time: 1 delivered" in text
    with pytest.raises(SetupError, match="default-member-permissions"):
        await w.bob.slash(w.channel, "easel status")


@pytest.fixture
def safety_flags_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if the configured safety checker flagged every image."""
    import dataclasses as dc

    from inference import executor as executor_module

    real = executor_module.run_diffusion_batch

    def flagged(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        results = real(*args, **kwargs)
        return None if results is None else [dc.replace(r, nsfw=(True,) * len(r.images)) for r in results]

    monkeypatch.setattr(executor_module, "run_diffusion_batch", flagged)


async def test_flagged_images_are_never_posted_plainly_outside_age_restricted_channels(
        simcord_env, simcord_bot, safety_flags_everything) -> None:
    w = make_world(simcord_env)
    await settings(w.admin, w, nsfw="off")
    spoilered = await final(await w.alice.slash(w.channel, "imagine", prompt="a cat", steps=2))
    assert spoilered.attachments[0].filename.startswith("SPOILER_")
    lounge = w.guild.create_text_channel("lounge")
    age_restricted(simcord_bot, lounge)
    plain = await final(await w.alice.slash(lounge, "imagine", prompt="a cat", steps=2))
    assert not plain.attachments[0].filename.startswith("SPOILER_")
    await settings(w.admin, w, nsfw="block")
    blocked = await final(await w.alice.slash(w.channel, "imagine", prompt="a cat", steps=2))
    assert not blocked.attachments and "flagged as NSFW" in blocked.content
