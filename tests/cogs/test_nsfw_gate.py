"""The NSFW gate holds on every path that shows an image (cogs/utils/gate.py): posted results,
U1-U4 picks, ✉️ DMs, previews, and the images made from a result (🌸 🎨 🔁, buttons, context
menus, /history's Redo), which inherit its flags. Also: ✉️ fits a DM's upload limit."""

from __future__ import annotations

import dataclasses
import io
import sys
from typing import Any

import discord
import numpy as np
import pytest
from PIL import Image

from cogs.delivery import Delivery, Tracked
from cogs.utils.gate import Flags, Place, Treatment, decide
from cogs.utils.origin import StatusMessage
from inference.jobs import AnimeJob, TextToImageJob, job_from_params
from storage.rows import ImageRow
from tests.cogs.conftest import eventually
from tests.cogs.helpers import button_ids, final, final_in, is_final, job_posted_as, make_world, refusal

REROLL, VARY, ANIME, MAIL = "\U0001f501", "\U0001f3a8", "\U0001f338", "\u2709\ufe0f"
WORD = "a nsfwword cat"  # tests/cogs/conftest.py: "nsfwword" is the configured NSFW word


# ---------------------------------------------------------------------------- the rule


@pytest.mark.parametrize(("flags", "policy", "age", "expected"), [
    (Flags(), "block", False, Treatment.PLAIN),
    (Flags(), "spoiler", False, Treatment.PLAIN),
    (Flags(), "off", False, Treatment.PLAIN),
    (Flags(word=True), "block", False, Treatment.WITHHELD),
    (Flags(word=True), "spoiler", False, Treatment.SPOILER),
    (Flags(word=True), "off", False, Treatment.PLAIN),
    (Flags(checker=True), "block", False, Treatment.WITHHELD),
    (Flags(checker=True), "spoiler", False, Treatment.SPOILER),
    (Flags(checker=True), "off", False, Treatment.SPOILER),  # "off" turns off the word list only
    (Flags(True, True), "off", False, Treatment.SPOILER),
    (Flags(True, True), "block", True, Treatment.PLAIN),  # age-restricted channels allow everything
    (Flags(checker=True), "off", True, Treatment.PLAIN),
    (Flags(word=True), "spoiler", True, Treatment.PLAIN),
])
def test_the_gate_decides_from_the_flags_the_policy_and_the_channel(flags, policy, age, expected) -> None:
    assert decide(flags, Place(policy, age)) is expected


def test_a_grid_is_as_flagged_as_its_most_flagged_cell() -> None:
    def row(idx: int, nsfw: bool, word: bool) -> ImageRow:
        return ImageRow("j", idx, idx, "/o/x.png", 8, 8, "00", 1, nsfw, nsfw_word=word)

    assert Flags.of([row(0, False, False), row(1, True, False)]) == Flags(checker=True)
    assert Flags.of([row(0, False, True), row(1, True, False)]) == Flags(True, True)
    assert not Flags.of([row(0, False, False)])


def test_a_jobs_flags_survive_the_job_log() -> None:
    job = TextToImageJob(job_id="j1", owner=1, prompt="x", nsfw=True, nsfw_word=True)
    assert job_from_params("j1", 1, job.to_params()) == job
    anime = AnimeJob(job_id="j2", owner=1, init_image="/o/a.png", nsfw_word=True)
    assert Flags.of_job(job_from_params("j2", 1, anime.to_params())) == Flags(word=True)


# ---------------------------------------------------------------------------- helpers


@dataclasses.dataclass
class Checker:
    on: bool = True


@pytest.fixture
def checker(monkeypatch: pytest.MonkeyPatch) -> Checker:
    """As if the safety checker flagged every image while ``on``."""
    from inference import executor as executor_module

    state = Checker()
    real = executor_module.run_diffusion_batch

    def flagged(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        results = real(*args, **kwargs)
        if results is None or not state.on:
            return results
        return [dataclasses.replace(r, nsfw=(True,) * len(r.images)) for r in results]

    monkeypatch.setattr(executor_module, "run_diffusion_batch", flagged)
    return state


async def policy(bot: Any, w: Any, value: str) -> None:
    await bot.studio.database.settings.update_guild(w.guild.id, nsfw_policy=value)


def age_restrict(bot: Any, channel: Any) -> None:
    bot.get_channel(channel.id).nsfw = True  # simcord's channels carry no NSFW flag: set it in the bot's cache


def spoilered(message: Any) -> bool:
    assert message.attachments, f"no image in {message.content!r}"
    return all(a.filename.startswith("SPOILER_") for a in message.attachments)


def withheld(message: Any) -> bool:
    return not message.attachments and "not shown in this channel" in message.content


async def imagine(w: Any, prompt: str = "a cat", **options: Any) -> Any:
    return await final(await w.alice.slash(w.channel, "imagine", prompt=prompt, steps=2, **options))


def replies_to(w: Any, message: Any) -> list[Any]:
    return [m for m in w.channel.history() if m.author.bot and m.reference is not None
            and m.reference.message_id == message.id]


async def result_replying_to(w: Any, message: Any) -> Any:
    found = await eventually(lambda: [m for m in replies_to(w, message) if is_final(m.content, m)])
    return found[-1]


async def job_of(bot: Any, message: Any) -> Any:
    row = await job_posted_as(bot, message)
    assert row is not None
    return row


async def flags_of(bot: Any, message: Any) -> Flags:
    return Flags.of(await bot.studio.database.images.for_job((await job_of(bot, message)).job_id))


def button(message: Any, prefix: str) -> str:
    return next(i for i in button_ids(message) if i.startswith(prefix))


async def dms(member: Any) -> list[Any]:
    return await eventually(lambda: member.user.dm_channel.history())


# ---------------------------------------------------------------------------- ✉️


async def test_mail_of_a_withheld_result_sends_no_image_and_says_why_privately(simcord_env, simcord_bot,
                                                                              checker) -> None:
    w = make_world(simcord_env)  # the default policy is block
    result = await imagine(w)
    assert withheld(result)
    await w.bob.react(result, MAIL)
    [dm] = await dms(w.bob)
    assert not dm.attachments and f"not shown in <#{w.channel.id}> (NSFW)" in dm.content
    assert not replies_to(w, result)  # nothing said in the channel


async def test_mail_of_a_withheld_result_with_dms_closed_says_why_in_a_passing_reply(simcord_env, simcord_bot,
                                                                                     checker) -> None:
    w = make_world(simcord_env)
    result = await imagine(w)
    dm = w.bob.user.dm_channel
    simcord_env.inject_error("POST", f"/channels/{dm.id}/messages", status=403, code=50007,
                             message="Cannot send messages to this user", times=None)
    await w.bob.react(result, MAIL)
    [reply] = await eventually(lambda: replies_to(w, result))
    assert "not shown in" in reply.content and not reply.attachments and not dm.history()
    assert len([r for r in simcord_env.http_requests if r.path == f"/channels/{dm.id}/messages"]) == 1  # DMed once


async def test_mail_of_a_spoilered_result_is_spoilered(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    await policy(simcord_bot, w, "spoiler")
    result = await imagine(w, WORD)
    assert spoilered(result)
    await w.bob.react(result, MAIL)
    [dm] = await dms(w.bob)
    assert spoilered(dm) and "nsfwword" in dm.content


async def test_mail_keeps_a_picture_that_fits_as_it_is(simcord_env) -> None:
    """Before: every picture without parameters was re-encoded as PNG (a 3 MiB JPEG became 17 MB)."""
    w = make_world(simcord_env)
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (96, 128, 3), dtype=np.uint8)).save(buffer, "JPEG")
    picture = await w.alice.send(w.channel, "", attachments=[("photo.jpg", buffer.getvalue())])
    await w.alice.react(picture, MAIL)
    [dm] = await dms(w.alice)
    assert dm.attachments[0].filename == "photo.jpg"
    assert await dm.attachments[0].read() == buffer.getvalue() and "Re-encoded" not in dm.content


async def test_mail_fits_the_upload_limit_of_direct_messages(simcord_env, simcord_bot, monkeypatch) -> None:
    cog_module = sys.modules[type(simcord_bot.get_cog("Reactions")).__module__]  # as the bot loaded it
    monkeypatch.setattr(cog_module, "DM_UPLOAD_LIMIT", 6000, raising=False)
    w = make_world(simcord_env)
    noise = np.random.default_rng(2).integers(0, 255, (160, 160, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, "PNG")
    assert len(buffer.getvalue()) > 6000
    picture = await w.alice.send(w.channel, "", attachments=[("noise.png", buffer.getvalue())])
    await w.alice.react(picture, MAIL)
    [dm] = await dms(w.alice)
    assert dm.attachments[0].size <= 6000 and not dm.attachments[0].filename.endswith(".png")
    assert "Re-encoded to fit" in dm.content


# ---------------------------------------------------------------------------- 🌸 anime


async def test_anime_of_a_spoilered_result_is_spoilered_by_reaction_button_and_menu(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    await policy(simcord_bot, w, "spoiler")
    source = await imagine(w, WORD)
    await w.bob.react(source, ANIME)
    by_reaction = await result_replying_to(w, source)
    by_button = await final(await w.bob.click(source, custom_id=button(source, "easel:a:")))
    by_menu = await final(await w.bob.context_menu(w.channel, "Anime", source))
    for painted in (by_reaction, by_button, by_menu):
        assert "AnimeGAN2" in painted.content and spoilered(painted)
        assert await flags_of(simcord_bot, painted) == Flags(word=True)


async def test_anime_of_a_withheld_result_is_refused(simcord_env, simcord_bot, checker) -> None:
    w = make_world(simcord_env)
    source = await imagine(w)
    assert withheld(source)
    await w.bob.react(source, ANIME)
    [dm] = await dms(w.bob)  # refused privately
    assert "not shown in this channel (NSFW)" in dm.content and not replies_to(w, source)
    menu = await w.bob.context_menu(w.channel, "Anime", source)
    assert "not shown in this channel (NSFW)" in refusal(menu)
    assert (await simcord_bot.studio.database.jobs.history(user_id=w.bob.id)).total == 0


async def test_anime_inherits_the_checkers_flag_under_the_off_policy(simcord_env, simcord_bot, checker) -> None:
    w = make_world(simcord_env)
    await policy(simcord_bot, w, "off")
    source = await imagine(w)
    assert spoilered(source)
    checker.on = False  # AnimeGAN2 has no checker: the flag can only come from the source
    painted = await final(await w.bob.click(source, custom_id=button(source, "easel:a:")))
    assert spoilered(painted) and await flags_of(simcord_bot, painted) == Flags(checker=True)


# ---------------------------------------------------------------------------- U1-U4


async def test_a_pick_of_a_spoilered_grid_is_spoilered(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    await policy(simcord_bot, w, "spoiler")
    grid = await imagine(w, WORD, count=2)
    assert spoilered(grid)
    clicked = await w.bob.click(grid, label="U1")
    single = await eventually(lambda: clicked.response if clicked.response and clicked.response.attachments else None)
    assert spoilered(single)
    # The pick is a message of ours that is not the recorded result: it still carries the grid's flags.
    painted = await final(await w.bob.context_menu(w.channel, "Anime", single))
    assert spoilered(painted)


async def test_a_pick_the_channel_now_withholds_is_refused_privately(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    await policy(simcord_bot, w, "spoiler")
    grid = await imagine(w, WORD, count=2)
    await policy(simcord_bot, w, "block")
    clicked = await w.bob.click(grid, label="U2")
    assert "not shown in this channel (NSFW)" in refusal(clicked)


# ---------------------------------------------------------------------------- vary, paint, reroll, redo


async def test_variations_and_rerolls_inherit_the_flags_of_their_source(simcord_env, simcord_bot, checker) -> None:
    w = make_world(simcord_env)
    await policy(simcord_bot, w, "off")
    source = await imagine(w, "a quiet harbour")
    assert spoilered(source)
    checker.on = False  # the new images themselves pass the checker
    varied = await final(await w.bob.click(source, custom_id=button(source, "easel:v:")))
    await w.bob.react(source, REROLL)
    rerolled = await result_replying_to(w, source)
    for derived in (varied, rerolled):
        assert spoilered(derived) and await flags_of(simcord_bot, derived) == Flags(checker=True)


async def test_a_vary_reaction_on_a_withheld_result_is_refused(simcord_env, simcord_bot, checker) -> None:
    w = make_world(simcord_env)
    source = await imagine(w)
    await w.bob.react(source, VARY)
    [dm] = await dms(w.bob)  # refused privately
    assert "not shown in this channel (NSFW)" in dm.content and not replies_to(w, source)
    assert (await simcord_bot.studio.database.jobs.history(user_id=w.bob.id)).total == 0


async def test_paint_on_a_spoilered_result_is_spoilered(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    await policy(simcord_bot, w, "spoiler")
    source = await imagine(w, WORD)
    result = await w.bob.context_menu(w.channel, "Paint...", source)
    submitted = await w.bob.submit_modal(result, {"easel:paint:prompt": "a red hat", "easel:paint:region": "centre"})
    painted = await final(submitted)
    assert "a red hat" in painted.content and spoilered(painted)


async def test_redo_from_history_keeps_the_flag(simcord_env, simcord_bot, checker) -> None:
    w = make_world(simcord_env)
    await policy(simcord_bot, w, "off")
    source = await imagine(w, "a quiet harbour", seed=7)
    checker.on = False
    row = await job_of(simcord_bot, source)
    shown = await w.alice.slash(w.channel, "history")
    assert not shown.response.attachments  # /history shows text only
    again = await final(await w.alice.click(shown.response, custom_id=f"easel:redo:{row.job_id}"))
    assert spoilered(again)
    await policy(simcord_bot, w, "block")
    refused = await w.alice.click(shown.response, custom_id=f"easel:redo:{row.job_id}")
    assert "not shown in this channel (NSFW)" in refusal(refused)


# ---------------------------------------------------------------------------- after a restart, previews


async def rewind_and_repost(bot: Any, w: Any, message: Any) -> Any:
    """As if the bot had died after finishing the job and before posting it; then it starts again."""
    row = await job_of(bot, message)
    await w.admin.delete(message)
    await bot.studio.database.jobs._conn.execute(  # noqa: SLF001 - rewinding the job log
        "UPDATE jobs SET status='done', delivered_at=NULL, result_message_id=NULL WHERE job_id=?", (row.job_id,))
    await bot.delivery.redeliver()
    return await final_in(w.channel, after=message.id)


async def test_a_word_flagged_result_keeps_its_treatment_after_a_restart(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    await policy(simcord_bot, w, "spoiler")
    first = await imagine(w, WORD)
    assert spoilered(first)
    again = await rewind_and_repost(simcord_bot, w, first)
    assert spoilered(again)
    await policy(simcord_bot, w, "block")  # the policy in force when it is posted
    assert withheld(await rewind_and_repost(simcord_bot, w, again))


async def test_after_a_restart_an_age_restricted_channel_shows_flagged_results_plainly(
        simcord_env, simcord_bot, checker) -> None:
    w = make_world(simcord_env)
    age_restrict(simcord_bot, w.channel)
    first = await imagine(w)
    assert first.attachments and not spoilered(first)
    again = await rewind_and_repost(simcord_bot, w, first)
    assert again.attachments and not spoilered(again)


class Status(StatusMessage):
    def __init__(self) -> None:
        self.files: list[list[str] | None] = []

    async def edit(self, content: str, *, files: list[discord.File] | None = None,
                   view: discord.ui.View | None = None) -> None:
        self.files.append(None if files is None else [f.filename for f in files])


@pytest.mark.parametrize(("how", "sent"), [(Treatment.PLAIN, ["preview.png"]),
                                           (Treatment.SPOILER, ["SPOILER_preview.png"]),
                                           (Treatment.WITHHELD, None)])
async def test_progress_previews_are_shown_as_the_gate_says(how, sent) -> None:
    delivery = Delivery.__new__(Delivery)  # _keep_current needs only the edit interval
    delivery.interval = 0.0
    tracked = Tracked("j1", previews=how)
    tracked.preview, tracked.text, tracked.dirty = Image.new("RGB", (32, 32)), "Painting 1/2", True
    status = Status()
    await delivery._keep_current(tracked, status)  # noqa: SLF001
    assert status.files == [sent]


async def test_launch_decides_how_previews_are_shown(simcord_env, simcord_bot, monkeypatch) -> None:
    """Previews come before the checker's verdict: with a checker on they are shown as a flagged image."""
    w = make_world(simcord_env)
    seen: list[Treatment] = []
    real_expect = simcord_bot.delivery.expect

    def expect(job_id: str, *, previews: Treatment = Treatment.PLAIN, kind: str = "") -> None:
        seen.append(previews)
        real_expect(job_id, previews=previews, kind=kind)

    monkeypatch.setattr(simcord_bot.delivery, "expect", expect)
    await policy(simcord_bot, w, "spoiler")
    await imagine(w, WORD)
    await imagine(w, "a cat")
    config = simcord_bot.config
    monkeypatch.setattr(simcord_bot, "config", dataclasses.replace(
        config, model=dataclasses.replace(config.model, safety_checker=True)))
    await imagine(w, "a cat")
    await policy(simcord_bot, w, "block")
    await imagine(w, "a cat")
    assert seen == [Treatment.SPOILER, Treatment.PLAIN, Treatment.SPOILER, Treatment.WITHHELD]
