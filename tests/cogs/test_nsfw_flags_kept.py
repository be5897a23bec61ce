"""A result's NSFW flags are kept where the job log lost them or never had them.

Rows gone (retention, the owner's /forget): a spoilered image of ours still counts as flagged
(cogs/utils/gate.py ``message_flags``), and a withheld one (no file) is no source at all. Rows
recorded before images carried the word flag get it from the prompt at start-up."""

from __future__ import annotations

from typing import Any

import pytest

from tests.cogs.conftest import eventually
from tests.cogs.helpers import final, make_world, refusal
from tests.cogs.test_nsfw_gate import (
    ANIME,
    VARY,
    WORD,
    checker,  # noqa: F401 - the fixture, used by name
    imagine,
    job_of,
    policy,
    replies_to,
    result_replying_to,
    rewind_and_repost,
    spoilered,
    withheld,
)


async def forget(bot: Any, member: Any) -> None:
    """The member's /forget: their jobs and images leave the job log; the posted messages stay."""
    await bot.studio.database.forget(member.id)


async def test_a_spoilered_result_whose_rows_are_gone_still_makes_spoilered_images(simcord_env, simcord_bot) -> None:
    """Before: with no rows its flags were none, and 🌸 🎨 and the menus posted the new image plainly."""
    w = make_world(simcord_env)
    await policy(simcord_bot, w, "spoiler")
    source = await imagine(w, WORD)
    assert spoilered(source)
    await forget(simcord_bot, w.alice)
    assert not await simcord_bot.studio.database.images.by_message(source.id)

    await w.bob.react(source, ANIME)
    by_reaction = await result_replying_to(w, source)
    await w.bob.react(source, VARY)
    by_vary = await eventually(lambda: [m for m in replies_to(w, source) if m.id != by_reaction.id
                                        and m.attachments and "job `" in m.content])
    by_menu = await final(await w.bob.context_menu(w.channel, "Vary image", source))
    painted = await final(await w.bob.submit_modal(await w.bob.context_menu(w.channel, "Paint...", source),
                                                   {"easel:paint:prompt": "a red hat",
                                                    "easel:paint:region": "centre"}))
    for made in (by_reaction, by_vary[-1], by_menu, painted):
        assert spoilered(made), made.content


async def test_a_spoilered_result_whose_rows_are_gone_counts_as_the_checkers_flag(simcord_env, simcord_bot) -> None:
    """Cautiously: under block it is withheld as a source; under off it is still spoilered."""
    w = make_world(simcord_env)
    await policy(simcord_bot, w, "spoiler")
    source = await imagine(w, WORD)
    await forget(simcord_bot, w.alice)

    await policy(simcord_bot, w, "off")  # a word flag alone would be plain here
    anime = await final(await w.bob.context_menu(w.channel, "Anime", source))
    assert "AnimeGAN2" in anime.content and spoilered(anime)

    await policy(simcord_bot, w, "block")
    assert "not shown in this channel (NSFW)" in refusal(await w.bob.context_menu(w.channel, "Anime", source))
    history = await simcord_bot.studio.database.jobs.history(user_id=w.bob.id)
    assert history.total == 1  # only the anime made under off


@pytest.mark.usefixtures("checker")
async def test_a_withheld_result_whose_rows_are_gone_is_no_source(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)  # block, and the checker flags everything
    source = await imagine(w)
    assert withheld(source)
    await forget(simcord_bot, w.alice)

    await w.bob.react(source, ANIME)
    await w.bob.react(source, VARY)
    menu = await w.bob.context_menu(w.channel, "Anime", source)
    assert "no image" in refusal(menu)
    paint = await w.bob.context_menu(w.channel, "Paint...", source)
    assert "no image" in refusal(paint)
    assert (await simcord_bot.studio.database.jobs.history(user_id=w.bob.id)).total == 0
    assert not [m for m in replies_to(w, source) if m.attachments]


async def test_a_result_recorded_before_the_word_flag_is_spoilered_after_a_restart(simcord_env, simcord_bot) -> None:
    """Before: its row said word-free (no backfill) and the restart posted it plainly under spoiler."""
    w = make_world(simcord_env)
    await policy(simcord_bot, w, "spoiler")
    first = await imagine(w, WORD)
    job_id = (await job_of(simcord_bot, first)).job_id
    db = simcord_bot.studio.database
    await db.jobs._conn.execute(  # noqa: SLF001 - as recorded before migration 0005 added the flag
        "UPDATE images SET nsfw_word = 0 WHERE job_id = ?", (job_id,))
    await db.jobs._conn.execute("DELETE FROM word_flag_scan")  # noqa: SLF001 - and before 0010 remembered a scan
    await simcord_bot.studio.flag_prompt_words()  # what the studio's start does (tests/test_studio.py)
    assert [r.nsfw_word for r in await db.images.for_job(job_id)] == [True]
    assert spoilered(await rewind_and_repost(simcord_bot, w, first))
