"""A member's uploads are stored only when the request is accepted, compactly, within a cap, and
/forget takes them even where another member reused them, but not another member's own use of the
same picture."""

from __future__ import annotations

import asyncio
import dataclasses
import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.cogs.conftest import eventually
from tests.cogs.helpers import button_ids, final, gpu_busy, job_posted_as, make_world, refusal

VARY, ANIME = "\U0001f3a8", "\U0001f338"


def stored(bot: Any) -> set[Path]:
    return {p for p in bot.studio.outputs.folder.rglob("*") if p.is_file()}


def noisy_jpeg(seed: int = 0, size: tuple[int, int] = (96, 64)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def fill_queue(bot: Any, w: Any) -> Any:
    """Alice's four places taken (the GPU held, so they stay queued)."""
    async def fill() -> None:
        for n in range(bot.config.queue.per_user):
            assert not (await w.alice.slash(w.channel, "imagine", prompt=f"busy {n}")).ephemeral
    return fill()


@pytest.mark.parametrize("why", ["channel not enabled", "cap reached", "prompt too long"])
async def test_a_refused_vary_leaves_no_file(simcord_env, simcord_bot, why) -> None:
    w = make_world(simcord_env)
    options: dict[str, Any] = {"image": ("photo.jpg", noisy_jpeg())}
    if why == "channel not enabled":
        other = w.guild.create_text_channel("easel-only")
        await simcord_bot.studio.database.settings.update_guild(w.guild.id, enabled_channels=(other.id,))
    if why == "prompt too long":
        options["prompt"] = "x" * (simcord_bot.config.limits.max_prompt_chars + 1)
    with gpu_busy(simcord_bot):
        if why == "cap reached":
            await fill_queue(simcord_bot, w)
        result = await w.alice.slash(w.channel, "vary", **options)
        assert refusal(result)
        assert stored(simcord_bot) == set()


async def test_refused_paint_anime_menus_and_reactions_leave_no_file(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    picture = await w.bob.send(w.channel, "", attachments=[("cat.jpg", noisy_jpeg(1))])
    with gpu_busy(simcord_bot):
        await fill_queue(simcord_bot, w)
        assert refusal(await w.alice.slash(w.channel, "paint", image=("a.jpg", noisy_jpeg(2)), prompt="a hat",
                                           region="top"))
        assert refusal(await w.alice.slash(w.channel, "anime", image=("a.jpg", noisy_jpeg(3))))
        assert refusal(await w.alice.context_menu(w.channel, "Vary image", picture))
        assert refusal(await w.alice.context_menu(w.channel, "Anime", picture))
        await w.alice.react(picture, VARY)
        await w.alice.react(picture, ANIME)
        await eventually(lambda: len(w.alice.user.dm_channel.history()) >= 2)  # the two refusals, by DM
        assert stored(simcord_bot) == set()
        assert simcord_bot.studio.reservations.held(w.alice.id) == 0


async def test_an_accepted_photo_is_stored_as_the_very_bytes_uploaded(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    photo = noisy_jpeg(4)
    message = await final(await w.alice.slash(w.channel, "vary", image=("photo.jpg", photo), seed=1))
    assert message.attachments  # the pipeline read it back
    row = await job_posted_as(simcord_bot, message)
    kept = (await simcord_bot.studio.database.jobs.files(row.job_id))["init_image"]
    assert kept.suffix == ".jpg" and kept.read_bytes() == photo  # not a PNG several times its size


async def test_a_transparent_upload_is_stored_lossless_as_the_picture_the_job_uses(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    rgba = Image.new("RGBA", (80, 64), (30, 60, 90, 255))
    rgba.paste((200, 10, 10, 0), (0, 0, 40, 64))  # transparent half: flattened onto white
    buffer = io.BytesIO()
    rgba.save(buffer, format="PNG")
    message = await final(await w.alice.slash(w.channel, "vary", image=("logo.png", buffer.getvalue()), seed=2))
    row = await job_posted_as(simcord_bot, message)
    kept = (await simcord_bot.studio.database.jobs.files(row.job_id))["init_image"]
    assert kept.suffix == ".webp"
    with Image.open(kept) as im:
        pixels = np.asarray(im.convert("RGB"))
    assert (pixels[:, :40] == 255).all() and (pixels[:, 40:] == (30, 60, 90)).all()


async def test_anime_of_our_own_result_stores_no_new_file(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    original = await final(await w.alice.slash(w.channel, "imagine", prompt="a red fox", seed=5, steps=2))
    before = stored(simcord_bot)
    await w.alice.react(original, ANIME)
    db = simcord_bot.studio.database
    anime = await eventually(lambda: [m for m in w.channel.history()
                                      if m.reference is not None and m.reference.message_id == original.id
                                      and "AnimeGAN2" in m.content])
    row = await job_posted_as(simcord_bot, anime[0])
    [source] = await db.images.for_job((await job_posted_as(simcord_bot, original)).job_id)
    assert (await db.jobs.files(row.job_id))["init_image"] == source.path
    assert stored(simcord_bot) - before == {Path(im.path) for im in await db.images.for_job(row.job_id)}


async def test_a_member_over_the_stored_input_cap_is_refused_privately(simcord_env, simcord_bot) -> None:
    studio = simcord_bot.studio
    first, second = noisy_jpeg(5), noisy_jpeg(6)
    cap_mb = (len(first) + len(second) // 2) / (1024 * 1024)
    studio.config = dataclasses.replace(studio.config, limits=dataclasses.replace(
        studio.config.limits, max_stored_input_mb_per_member=cap_mb))
    w = make_world(simcord_env)
    assert (await final(await w.alice.slash(w.channel, "vary", image=("one.jpg", first)))).attachments
    files = stored(simcord_bot)

    refused = await w.alice.slash(w.channel, "vary", image=("two.jpg", second))

    assert "the limit is" in refusal(refused) and "per member" in refusal(refused)
    assert stored(simcord_bot) == files and studio.reservations.held(w.alice.id) == 0
    again = await final(await w.alice.slash(w.channel, "vary", image=("one-again.jpg", first)))
    assert again.attachments  # the same upload again takes no more room
    assert (await final(await w.bob.slash(w.channel, "vary", image=("two.jpg", second)))).attachments  # bob's own


async def test_two_uploads_at_the_same_moment_cannot_pass_the_stored_input_cap_together(
        simcord_env, simcord_bot, monkeypatch) -> None:
    """Each upload fits the cap alone, not both: while the first job is being recorded (slowly
    here), its input's bytes must already count for the second request."""
    studio = simcord_bot.studio
    first, second = noisy_jpeg(8), noisy_jpeg(9)
    cap_mb = (len(first) + len(second) // 2) / (1024 * 1024)
    studio.config = dataclasses.replace(studio.config, limits=dataclasses.replace(
        studio.config.limits, max_stored_input_mb_per_member=cap_mb))
    jobs = studio.database.jobs
    real_add = jobs.add
    disk = asyncio.Event()

    async def slow_add(**kwargs: Any) -> Any:  # a busy disk: both requests wait here
        await simcord_env.external_wait(disk.wait(), reason="a busy disk")
        return await real_add(**kwargs)

    monkeypatch.setattr(jobs, "add", slow_add)
    w = make_world(simcord_env)
    with gpu_busy(simcord_bot):
        results = [await w.alice.slash(w.channel, "vary", image=(f"{n}.jpg", data))
                   for n, data in enumerate((first, second))]
        disk.set()
        await simcord_env.settle()
        refused = [r for r in results if r.ephemeral]
        assert len(refused) == 1 and "the limit is" in refusal(refused[0])
        assert studio.reservations.held(w.alice.id) == 0 and studio.reservations.held_bytes(w.alice.id) == 0


async def test_a_reroll_of_a_forgotten_upload_says_its_owner_deleted_it(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    db = simcord_bot.studio.database
    alices = await final(await w.alice.slash(w.channel, "vary", image=("me.jpg", noisy_jpeg(7)), seed=1))
    upload = (await db.jobs.files((await job_posted_as(simcord_bot, alices)).job_id))["init_image"]
    [reroll_id] = [i for i in button_ids(alices) if i.startswith("easel:r:")]
    bobs = await final(await w.bob.click(alices, custom_id=reroll_id))
    bob_job = await job_posted_as(simcord_bot, bobs)
    assert bob_job.user_id == w.bob.id and (await db.jobs.files(bob_job.job_id))["init_image"] == upload

    asked = await w.alice.slash(w.channel, "forget")
    await w.alice.click(asked.response, label="Yes, delete everything")

    assert not upload.exists()
    bob_job = await db.jobs.get(bob_job.job_id)
    assert bob_job is not None and bob_job.params["init_image"] == ""  # bob keeps his result, not her photo
    assert all(Path(im.path).exists() for im in await db.images.for_job(bob_job.job_id))
    [bob_reroll] = [i for i in button_ids(bobs) if i.startswith("easel:r:")]
    again = await w.bob.click(bobs, custom_id=bob_reroll)
    assert refusal(again) == "The source image of that job was deleted by its owner, so it cannot be made again."


async def finished_job(db: Any, member_id: int) -> Any:
    """The member's one job, once its result is posted."""
    for _ in range(1200):
        rows = (await db.jobs.history(user_id=member_id)).rows
        if rows and rows[0].status == "delivered":
            return rows[0]
        await asyncio.sleep(0.05)
    raise AssertionError(f"member {member_id}'s job was not posted")


async def test_two_members_who_vary_the_same_picture_keep_it_when_one_forgets(simcord_env, simcord_bot) -> None:
    """Alice and Bob both 🎨 Carol's picture: one stored file, each of them its supplier for their own
    job. Alice's /forget takes her job, not Bob's input."""
    w = make_world(simcord_env)
    db = simcord_bot.studio.database
    carol = w.guild.add_member(simcord_env.create_user("carol"))
    picture = await carol.send(w.channel, "", attachments=[("cat.jpg", noisy_jpeg(8))])
    await w.alice.react(picture, VARY)
    alices = await finished_job(db, w.alice.id)
    await w.bob.react(picture, VARY)
    bobs = await finished_job(db, w.bob.id)
    upload = (await db.jobs.files(bobs.job_id))["init_image"]
    assert (await db.jobs.files(alices.job_id))["init_image"] == upload  # the same bytes: one file

    asked = await w.alice.slash(w.channel, "forget")
    await w.alice.click(asked.response, label="Yes, delete everything")

    assert await db.jobs.get(alices.job_id) is None and upload.exists()
    bobs = await db.jobs.get(bobs.job_id)
    assert bobs is not None and bobs.params["init_image"] == str(upload)
    assert await db.jobs.files(bobs.job_id) == {"init_image": upload}


async def test_a_variation_of_a_result_loses_it_when_the_results_owner_forgets(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    db = simcord_bot.studio.database
    alices = await final(await w.alice.slash(w.channel, "imagine", prompt="a red fox", seed=5, steps=2))
    [result] = await db.images.for_job((await job_posted_as(simcord_bot, alices)).job_id)
    await w.bob.react(alices, VARY)
    bobs = await finished_job(db, w.bob.id)
    assert await db.jobs.suppliers(bobs.job_id) == {"init_image": w.alice.id}  # her result, his input

    asked = await w.alice.slash(w.channel, "forget")
    await w.alice.click(asked.response, label="Yes, delete everything")

    assert not Path(result.path).exists()
    bobs = await db.jobs.get(bobs.job_id)
    assert bobs is not None and bobs.params["init_image"] == "" and await db.jobs.files(bobs.job_id) == {}
    assert all(Path(im.path).exists() for im in await db.images.for_job(bobs.job_id))


async def test_forget_waits_for_a_request_being_recorded_right_now(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    place = simcord_bot.studio.reservations.reserve(w.alice.id)  # past its checks, not queued yet
    try:
        assert "You have 1 job(s) in the queue" in refusal(await w.alice.slash(w.channel, "forget"))
    finally:
        place.release()
    assert not (await w.alice.slash(w.channel, "forget")).response.content.startswith("You have")
