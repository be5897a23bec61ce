"""/imagine tile:true end to end in process: the result message carries the tile's 2x2 preview as a
second attachment (no button, no pick), under the job's NSFW verdict, and again after a restart."""

from __future__ import annotations

import io
from typing import Any

from PIL import Image

from cogs.utils.inputs import upload_of_message
from inference.imaging import parse_parameters, read_parameters
from tests.cogs.helpers import button_ids, final, final_in, job_posted_as, make_world

WORD = "a nsfwword cat"  # tests/cogs/conftest.py: "nsfwword" is the configured NSFW word


async def tile(w: Any, prompt: str = "a brick wall", **options: Any) -> Any:
    return await final(await w.alice.slash(w.channel, "imagine", prompt=prompt, steps=2, seed=5, tile=True,
                                           **options))


async def opened(attachment: Any) -> Image.Image:
    with Image.open(io.BytesIO(await attachment.read())) as image:
        image.load()
        return image


async def rewind_and_repost(bot: Any, w: Any, message: Any) -> Any:
    """As if the bot had died after finishing the job and before posting it; then it starts again."""
    row = await job_posted_as(bot, message)
    await w.admin.delete(message)
    await bot.studio.database.jobs._conn.execute(  # noqa: SLF001 - rewinding the job log
        "UPDATE jobs SET status='done', delivered_at=NULL, result_message_id=NULL WHERE job_id=?", (row.job_id,))
    await bot.delivery.redeliver()
    return await final_in(w.channel, after=message.id)


async def test_a_tile_result_shows_its_2x2_preview_beside_the_image(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    message = await tile(w)
    result, preview = message.attachments
    assert result.filename.startswith("easel-") and preview.filename == "tile-preview.png"
    image, sheet = await opened(result), await opened(preview)
    assert sheet.size == (2 * image.width, 2 * image.height)
    assert list(sheet.crop((image.width, 0, 2 * image.width, image.height)).getdata()) == list(image.getdata())
    assert parse_parameters(read_parameters(await result.read()))["Tiling"] == "True"
    assert "easel:u:" not in " ".join(button_ids(message))  # one image: no U buttons, the preview none either
    row = await job_posted_as(simcord_bot, message)
    assert [im.idx for im in await simcord_bot.studio.database.images.for_job(row.job_id)] == [0]
    # A reaction or menu on the message works from the result, never from the preview.
    _data, picked, job_id = await upload_of_message(simcord_bot.studio, message, simcord_bot.config.limits)
    assert job_id == row.job_id and picked.size == image.size


async def test_a_plain_result_has_no_preview_and_no_tiling_parameter(simcord_env) -> None:
    w = make_world(simcord_env)
    message = await final(await w.alice.slash(w.channel, "imagine", prompt="a brick wall", steps=2, seed=5))
    [result] = message.attachments
    assert "Tiling" not in read_parameters(await result.read())


async def test_a_tile_grid_shows_one_preview_per_image(simcord_env) -> None:
    w = make_world(simcord_env)
    message = await tile(w, count=2)
    assert [a.filename for a in message.attachments][1:] == ["tile-preview-1.png", "tile-preview-2.png"]
    assert sum(i.startswith("easel:u:") for i in button_ids(message)) == 2  # buttons for the two images only


async def test_the_preview_gets_the_jobs_nsfw_verdict_spoilered_or_withheld(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    await simcord_bot.studio.database.settings.update_guild(w.guild.id, nsfw_policy="spoiler")
    message = await tile(w, WORD)
    assert [a.filename for a in message.attachments] == [message.attachments[0].filename, "SPOILER_tile-preview.png"]
    assert message.attachments[0].filename.startswith("SPOILER_easel-")
    await simcord_bot.studio.database.settings.update_guild(w.guild.id, nsfw_policy="block")
    again = await rewind_and_repost(simcord_bot, w, message)  # the policy in force when it is posted
    assert not again.attachments and "not shown in this channel" in again.content


async def test_after_a_restart_the_preview_is_posted_once_with_the_result(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    first = await tile(w)
    again = await rewind_and_repost(simcord_bot, w, first)
    assert [a.filename for a in again.attachments][1:] == ["tile-preview.png"]
    assert (await again.attachments[1].read()) == (await first.attachments[1].read())
    await simcord_bot.delivery.redeliver()  # nothing left to post
    assert [m.id for m in w.channel.history() if m.author.bot] == [again.id]


async def test_a_preview_that_no_longer_fits_or_exists_is_left_out_and_said(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    first = await tile(w)
    row = await job_posted_as(simcord_bot, first)
    [(label, path)] = await simcord_bot.studio.database.extras.for_job(row.job_id)
    assert label == "tile"
    path.unlink()  # deleted from outputs/ by hand
    again = await rewind_and_repost(simcord_bot, w, first)
    assert len(again.attachments) == 1 and "Not attached" in again.content and "the tile preview" in again.content


async def test_a_preview_that_could_not_be_stored_leaves_the_result_alone(simcord_env, simcord_bot,
                                                                          monkeypatch) -> None:
    writer = simcord_bot.studio.png_writer
    real_write = writer.write

    async def failing_extras(jobs: Any) -> Any:
        if all("shown with it" in label for label, _ in jobs):
            return [None] * len(jobs)  # as the writer answers when it could not store them
        return await real_write(jobs)

    monkeypatch.setattr(writer, "write", failing_extras)
    w = make_world(simcord_env)
    message = await tile(w)
    assert [a.filename for a in message.attachments] == [message.attachments[0].filename]
    assert message.attachments[0].filename.startswith("easel-") and "Not attached" not in message.content
    row = await job_posted_as(simcord_bot, message)
    assert row.status == "delivered" and await simcord_bot.studio.database.extras.for_job(row.job_id) == []
