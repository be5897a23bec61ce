"""/vary, /paint and /anime with uploads, and uploads that must not hurt."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from tests.cogs.helpers import final, image_of, make_world, png, refusal


async def test_vary_makes_a_variation_with_the_source_aspect(simcord_env) -> None:
    w = make_world(simcord_env)
    result = await w.alice.slash(w.channel, "vary", image=("src.png", png((128, 64))), strength=0.6, seed=3)
    message = await final(result)
    image = await image_of(message)
    assert image.width > image.height  # the source was landscape
    assert "seed `3`" in message.content


async def test_paint_keeps_the_unmasked_area(simcord_env) -> None:
    w = make_world(simcord_env)
    source = Image.new("RGB", (64, 64), (10, 120, 200))
    buf = io.BytesIO()
    source.save(buf, format="PNG")
    result = await w.alice.slash(w.channel, "paint", image=("src.png", buf.getvalue()), prompt="a sun",
                                 region="right", seed=5)
    image = np.asarray((await image_of(await final(result))).convert("RGB"), dtype=int)
    left = image[:, :24]
    assert np.abs(left - np.array([10, 120, 200])).max() <= 2  # untouched half stays as it was
    assert np.abs(image[:, 40:] - np.array([10, 120, 200])).max() > 2  # the painted half changed


async def test_paint_with_a_mask_upload_and_with_a_box(simcord_env) -> None:
    w = make_world(simcord_env)
    mask = Image.new("L", (96, 80), 0)
    mask.paste(255, (0, 0, 40, 40))
    buf = io.BytesIO()
    mask.save(buf, format="PNG")
    result = await w.alice.slash(w.channel, "paint", image=("src.png", png()), prompt="a cat",
                                 mask=("mask.png", buf.getvalue()))
    assert (await final(result)).attachments
    result = await w.bob.slash(w.channel, "paint", image=("src.png", png()), prompt="a cat", box="25,25,50,50")
    assert (await final(result)).attachments


async def test_paint_without_a_region_explains_the_three_ways(simcord_env) -> None:
    w = make_world(simcord_env)
    result = await w.alice.slash(w.channel, "paint", image=("src.png", png()), prompt="a cat")
    assert "upload a `mask`" in refusal(result)
    result = await w.alice.slash(w.channel, "paint", image=("src.png", png()), prompt="a cat", region="upstairs")
    assert "upstairs" in refusal(result)


async def test_anime_paints_the_uploaded_picture(simcord_env) -> None:
    w = make_world(simcord_env)
    result = await w.alice.slash(w.channel, "anime", image=("me.png", png((64, 64), (180, 150, 120))))
    message = await final(result)
    assert "AnimeGAN2" in message.content and "No face found" in message.content
    assert (await image_of(message)).size == (512, 512)


async def test_a_missing_anime_style_is_a_private_refusal_not_a_crash(simcord_env) -> None:
    w = make_world(simcord_env)
    result = await w.alice.slash(w.channel, "anime", image=("me.png", png()), style="paprika")
    assert "not set up on this server yet" in refusal(result)
    assert (await final(await w.alice.slash(w.channel, "imagine", prompt="still here"))).attachments


@pytest.mark.parametrize(("name", "data", "expected"), [
    ("notes.png", b"just some text, not a picture", "not an image"),
    ("cut.png", png()[:60], "damaged"),
    ("empty.png", b"", "empty"),
])
async def test_uploads_that_are_not_usable_images_get_a_clear_message(simcord_env, name, data, expected) -> None:
    w = make_world(simcord_env)
    result = await w.alice.slash(w.channel, "vary", image=(name, data))
    assert expected in refusal(result).lower()


async def test_a_decompression_bomb_is_refused_before_decoding(simcord_env) -> None:
    w = make_world(simcord_env)
    bomb = io.BytesIO()
    Image.new("1", (12_000, 10_000), 0).save(bomb, format="PNG")
    result = await w.alice.slash(w.channel, "vary", image=("bomb.png", bomb.getvalue()))
    assert "megapixel" in refusal(result).lower() or "too large" in refusal(result).lower()


async def test_an_oversized_upload_is_refused_before_download(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    limit = int(simcord_bot.config.limits.max_upload_mb * 1024 * 1024)
    result = await w.alice.slash(w.channel, "vary", image=("huge.png", png() + b"\0" * limit))
    assert "limit" in refusal(result)


async def test_a_kind_the_backend_cannot_serve_is_refused_before_queueing(simcord_env, simcord_bot,
                                                                          monkeypatch) -> None:
    from inference.jobs import JobKind

    monkeypatch.setattr(simcord_bot.studio.engine.executor, "unsupported",
                        lambda kind: "This backend cannot paint." if kind is JobKind.PAINT else None, raising=False)
    w = make_world(simcord_env)
    result = await w.alice.slash(w.channel, "paint", image=("src.png", png()), prompt="a cat", region="left")
    assert refusal(result) == "This backend cannot paint."
    assert (await simcord_bot.studio.database.jobs.history(user_id=w.alice.id)).total == 0
