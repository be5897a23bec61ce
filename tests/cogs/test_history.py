"""/history (own jobs, search, kinds, pages, Redo, the server's view for admins) and /forget."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from simcord.backend.errors import SetupError

from inference.validation import build_imagine
from studio import new_job_id
from tests.cogs.helpers import button_ids, final, gpu_busy, image_of, job_posted_as, make_world, refusal


async def add_jobs(bot: Any, w: Any, member: Any, prompts: list[str], kind: str = "imagine") -> list[str]:
    """Write jobs to the job log directly: listing needs rows, not images."""
    ids = []
    info = bot.studio.model_info()
    for n, prompt in enumerate(prompts):
        job = build_imagine(new_job_id(), member.id, info, prompt=prompt, seed=n).job
        await bot.studio.database.jobs.add(job_id=job.job_id, kind=kind, user_id=member.id, guild_id=w.guild.id,
                                           channel_id=w.channel.id, params=job.to_params())
        ids.append(job.job_id)
    return ids


def listed(message: Any) -> list[str]:
    """The prompts shown in a history embed, top to bottom."""
    [embed] = message.embeds
    return [field.value.split("\n")[0] for field in embed.fields]


def footer(message: Any) -> str:
    return message.embeds[0].footer.text or ""


def disabled(message: Any, label: str) -> bool:
    for row in message.components:
        for child in row.get("components", []):
            if child.get("label") == label:
                return bool(child.get("disabled"))
    raise AssertionError(f"no button {label!r}")


def outputs(bot: Any) -> set[Path]:
    return {p for p in bot.studio.outputs.folder.rglob("*.png")}


async def test_history_lists_only_the_members_own_jobs_newest_first(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    await add_jobs(simcord_bot, w, w.alice, ["a red fox", "a blue owl"])
    await add_jobs(simcord_bot, w, w.bob, ["bob's secret"])
    result = await w.alice.slash(w.channel, "history")
    assert result.ephemeral
    assert listed(result.response) == ["a blue owl", "a red fox"]
    assert result.response.embeds[0].title == "Your history" and footer(result.response) == "1-2 of 2"


async def test_an_empty_history_suggests_imagine(simcord_env) -> None:
    w = make_world(simcord_env)
    result = await w.alice.slash(w.channel, "history")
    assert "Try `/imagine`" in result.response.embeds[0].description


async def test_history_searches_prompt_words_and_filters_by_kind(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    await add_jobs(simcord_bot, w, w.alice, ["a red fox", "a red owl", "a green frog"])
    await add_jobs(simcord_bot, w, w.alice, ["a red barn"], kind="vary")
    await add_jobs(simcord_bot, w, w.bob, ["a red car"])
    found = (await w.alice.slash(w.channel, "history", search="red")).response
    assert listed(found) == ["a red barn", "a red owl", "a red fox"]
    assert "\u201cred\u201d" in found.embeds[0].title
    assert listed((await w.alice.slash(w.channel, "history", search="red fox")).response) == ["a red fox"]
    assert listed((await w.alice.slash(w.channel, "history", kind="vary")).response) == ["a red barn"]
    nothing = (await w.alice.slash(w.channel, "history", search="purple")).response
    assert not nothing.embeds[0].fields


async def test_history_pages_with_next_and_previous(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    prompts = [f"picture number {n}" for n in range(7)]
    await add_jobs(simcord_bot, w, w.alice, prompts)
    shown = await w.alice.slash(w.channel, "history")
    first = listed(shown.response)
    assert first == [f"picture number {n}" for n in (6, 5, 4, 3, 2)] and footer(shown.response) == "1-5 of 7"
    assert disabled(shown.response, "Previous") and not disabled(shown.response, "Next")
    assert sum(i.startswith("easel:redo:") for i in button_ids(shown.response)) == 5

    await w.alice.click(shown.response, label="Next")
    assert listed(shown.response) == ["picture number 1", "picture number 0"]
    assert footer(shown.response) == "6-7 of 7" and disabled(shown.response, "Next")
    assert sum(i.startswith("easel:redo:") for i in button_ids(shown.response)) == 2

    await w.alice.click(shown.response, label="Previous")
    assert listed(shown.response) == first and disabled(shown.response, "Previous")


async def test_redo_reproduces_the_very_same_image(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    original = await final(await w.alice.slash(w.channel, "imagine", prompt="a quiet harbour", seed=7, steps=2))
    row = await job_posted_as(simcord_bot, original)
    shown = await w.alice.slash(w.channel, "history")
    redo = await w.alice.click(shown.response, custom_id=f"easel:redo:{row.job_id}")
    again = await final(redo)
    assert "seed `7`" in again.content and again.id != original.id
    before = np.asarray((await image_of(original)).convert("RGB"))
    after = np.asarray((await image_of(again)).convert("RGB"))
    assert np.array_equal(before, after)
    redone = await job_posted_as(simcord_bot, again)
    assert redone.job_id != row.job_id and redone.params == {**row.params, "seed": 7}


async def test_the_servers_history_needs_manage_server(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    await add_jobs(simcord_bot, w, w.alice, ["alice's cat"])
    await add_jobs(simcord_bot, w, w.bob, ["bob's dog"])
    assert refusal(await w.bob.slash(w.channel, "history", server=True)) == \
        "Seeing the server's history needs Manage Server."
    result = await w.admin.slash(w.channel, "history", server=True)
    assert result.ephemeral and result.response.embeds[0].title == "This server's history"
    assert listed(result.response) == ["bob's dog", "alice's cat"]


async def test_only_the_member_pages_their_history(simcord_env, simcord_bot) -> None:
    from cogs.history import HistoryView

    w = make_world(simcord_env)
    await add_jobs(simcord_bot, w, w.alice, [f"p{n}" for n in range(7)])
    view = HistoryView(simcord_bot, w.alice.id, {"user_id": w.alice.id}, "Your history")
    with simcord_env.time_context():  # shown in public here, to press it as someone else
        embed = await view.load()
        public = await simcord_bot.get_channel(w.channel.id).send(embed=embed, view=view)
    refused = await w.bob.click(public, label="Next")
    assert refusal(refused) == "This is someone else's history."
    assert footer(w.channel.history()[-1]) == "1-5 of 7"


async def test_forget_deletes_the_members_jobs_and_files_after_confirming(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    await final(await w.alice.slash(w.channel, "imagine", prompt="alice's lake", seed=1, steps=2))
    await final(await w.bob.slash(w.channel, "imagine", prompt="bob's mountain", seed=2, steps=2))
    db = simcord_bot.studio.database
    alice_files = {im.path for row in (await db.jobs.history(user_id=w.alice.id)).rows
                   for im in await db.images.for_job(row.job_id)}
    bob_files = {im.path for row in (await db.jobs.history(user_id=w.bob.id)).rows
                 for im in await db.images.for_job(row.job_id)}
    assert alice_files and bob_files and alice_files | bob_files <= outputs(simcord_bot)

    asked = await w.alice.slash(w.channel, "forget")
    assert asked.ephemeral and "Sure?" in asked.response.content
    await w.alice.click(asked.response, label="Yes, delete everything")
    assert asked.response.content.startswith("Done: deleted 1 job(s), 1 image record(s) and 1 file(s).")
    assert not asked.response.components
    assert (await db.jobs.history(user_id=w.alice.id)).total == 0
    assert (await db.jobs.history(user_id=w.bob.id)).total == 1
    assert not alice_files & outputs(simcord_bot) and bob_files <= outputs(simcord_bot)


async def test_keep_my_data_deletes_nothing(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    await add_jobs(simcord_bot, w, w.alice, ["a red fox"])
    asked = await w.alice.slash(w.channel, "forget")
    await w.alice.click(asked.response, label="Keep my data")
    assert asked.response.content == "Nothing was deleted." and not asked.response.components
    assert (await simcord_bot.studio.database.jobs.history(user_id=w.alice.id)).total == 1


async def test_another_member_cannot_confirm(simcord_env, simcord_bot) -> None:
    from cogs.history import ForgetView

    w = make_world(simcord_env)
    await add_jobs(simcord_bot, w, w.alice, ["a red fox"])
    asked = await w.alice.slash(w.channel, "forget")
    with pytest.raises(SetupError, match="not visible"):  # the confirmation is ephemeral: only alice sees it
        await w.bob.click(asked.response, label="Yes, delete everything")
    with simcord_env.time_context():  # and were it shown to others, the button still checks who pressed it
        public = await simcord_bot.get_channel(w.channel.id).send("Sure?", view=ForgetView(simcord_bot, w.alice.id))
    refused = await w.bob.click(public, label="Yes, delete everything")
    assert refusal(refused) == "Only the member who asked to be forgotten can confirm this."
    assert (await simcord_bot.studio.database.jobs.history(user_id=w.alice.id)).total == 1
    assert w.channel.history()[-1].components  # still there to be pressed by alice


async def test_forget_waits_until_the_members_queue_is_empty(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    with gpu_busy(simcord_bot):
        queued = await w.alice.slash(w.channel, "imagine", prompt="still waiting")
        refused = await w.alice.slash(w.channel, "forget")
        assert "You have 1 job(s) in the queue" in refusal(refused)
    await final(queued)
    asked = await w.alice.slash(w.channel, "forget")
    with gpu_busy(simcord_bot):
        await w.alice.slash(w.channel, "imagine", prompt="sneaked in before confirming")
        await w.alice.click(asked.response, label="Yes, delete everything")
        assert asked.response.content.startswith("Nothing was deleted. You have 1 job(s) in the queue")
        assert (await simcord_bot.studio.database.jobs.history(user_id=w.alice.id)).total == 2


async def test_paging_greys_out_when_the_view_times_out_but_redo_stays(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    await add_jobs(simcord_bot, w, w.alice, [f"p{n}" for n in range(7)])
    shown = await w.alice.slash(w.channel, "history")
    assert not disabled(shown.response, "Next")
    await simcord_env.advance_time(601)
    assert disabled(shown.response, "Next") and disabled(shown.response, "Previous")
    assert sum(i.startswith("easel:redo:") for i in button_ids(shown.response)) == 5


async def test_an_unanswered_forget_expires_and_deletes_nothing(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    await add_jobs(simcord_bot, w, w.alice, ["a red fox"])
    asked = await w.alice.slash(w.channel, "forget")
    await simcord_env.advance_time(121)
    assert asked.response.content.startswith("Nothing was deleted: the question expired.")
    assert not asked.response.components
    assert (await simcord_bot.studio.database.jobs.history(user_id=w.alice.id)).total == 1


async def test_a_refused_redo_is_answered_privately(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    [job_id] = await add_jobs(simcord_bot, w, w.alice, ["a red fox"])
    shown = await w.alice.slash(w.channel, "history")
    with gpu_busy(simcord_bot):
        for n in range(simcord_bot.config.queue.per_user):
            await w.alice.slash(w.channel, "imagine", prompt=f"busy {n}")
        redo = await w.alice.click(shown.response, custom_id=f"easel:redo:{job_id}")
        assert "already have" in refusal(redo)
