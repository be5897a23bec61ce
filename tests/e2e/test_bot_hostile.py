"""Hostile and careless input: each gets a clear answer only its sender sees, or a safe result, nobody is ever
pinged, and the bot serves the next request as usual.

Discord's client would refuse some of these values before sending them (a 10,000-character prompt, options
outside their declared range); a modified client or a raw API call does not, so the bot must refuse them too.
"""

from __future__ import annotations

import io
import random
import struct
import zlib
from collections.abc import Callable
from typing import Any

import pytest
from PIL import Image

from inference.imaging import read_parameters
from inference.imaging.pngmeta import parse_parameters
from tests.e2e.client import Member, pings
from tests.e2e.conftest import NSFW_WORD, Easel
from tests.e2e.easel_helpers import png, refusal_message, refusal_of, result_attachment, result_of
from tests.e2e.fake_discord import EPHEMERAL, FakeDiscord

pytestmark = pytest.mark.asyncio(loop_scope="module")

MB = 1024 * 1024


@pytest.fixture(scope="module")
def server(easel_bot: Easel) -> FakeDiscord:
    return easel_bot.server


@pytest.fixture(scope="module")
def mallory(server: FakeDiscord) -> Member:
    return Member(server, "mallory")


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(side: int = 10_000) -> bytes:
    """A valid 1-bit black PNG of ``side`` x ``side`` pixels: 100 megapixels in about 12 KB."""
    rows = (b"\x00" + bytes((side + 7) // 8)) * side
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", zlib.compress(rows, 9))
            + png_chunk(b"IEND", b""))


def truncated_png() -> bytes:
    """A noisy picture cut in the middle of its pixel data."""
    noise = random.Random(5).randbytes(64 * 64 * 3)
    buffer = io.BytesIO()
    Image.frombytes("RGB", (64, 64), noise).save(buffer, "PNG")
    data = buffer.getvalue()
    return data[: len(data) // 2]


def huge_upload() -> bytes:
    return b"\x89PNG\r\n\x1a\n" + bytes(30 * MB)


# (file name, bytes, what the refusal says)
BAD_UPLOADS = [
    pytest.param("photo.png", lambda: b"just some words, not a picture\n" * 20, "is not an image I can read",
                 id="text file named .png"),
    pytest.param("photo.png", truncated_png, "seems damaged or incomplete", id="truncated png"),
    pytest.param("bomb.png", png_bomb, "10,000 x 10,000 pixels (100.0 megapixels)", id="100-megapixel png bomb"),
    pytest.param("huge.png", huge_upload, "MB; the limit here is", id="30 MB upload"),
    pytest.param("huge.png", huge_upload, "The image is 30.0 MB; the limit here is 20 MB", id="30 MB upload in MB"),
]

# (options of /imagine, what the refusal says)
BAD_OPTIONS: list[Any] = [
    ({"prompt": "x" * 10_000}, "The prompt is 10,000 characters long; the limit here is 1,000"),
    ({"prompt": "a cat", "negative": "y" * 10_000}, "The negative prompt is 10,000 characters long"),
    ({"prompt": "\u200b\u200c\u200d\u2060\ufeff"}, "The prompt is empty"),
    ({"prompt": "a cat", "steps": 500}, "Steps must be between 1 and 150"),
    ({"prompt": "a cat", "steps": 0}, "Steps must be between 1 and 150"),
    ({"prompt": "a cat", "width": 4096}, "The width must be between 64 and 256 pixels"),
    ({"prompt": "a cat", "height": 100}, "The height must be a multiple of 8 (try 96 or 104)"),
    ({"prompt": "a cat", "count": 9}, "You can ask for 1 to 4 images at once"),
    ({"prompt": "a cat", "guidance": 99.0}, "Guidance must be between 0 and 20"),
    ({"prompt": "a cat", "seed": -5}, "The seed must be between 0 and"),
    ({"prompt": "a cat", "aspect": "gigantic"}, "Unknown aspect 'gigantic'"),
    ({"prompt": "a cat", "scheduler": "warp"}, "Unknown sampler 'warp'"),
    ({"prompt": "a cat", "model": "nonexistent"}, "no model called 'nonexistent'"),
    ({"prompt": "a cat", "lora": "ghost:0.5"}, "Unknown LoRA 'ghost'"),
]


def option_id(case: Any) -> str:
    options = case.values[0] if hasattr(case, "values") else case[0]
    return ",".join(f"{k}={v[:12] if isinstance(v, str) else v}" for k, v in options.items() if k != "prompt") \
        or f"prompt={options['prompt'][:12]!r}"


async def still_serving(server: FakeDiscord, member: Member) -> None:
    """The next ordinary request gets its image; no message the bot has sent so far pinged anyone."""
    await result_of(server, await member.slash("imagine", prompt="a calm sea", seed=42))
    sent = [m for m in server.messages_by_id.values() if m["author"]["id"] == server.application_id]
    assert [m["content"] for m in sent if pings(server, m)] == []


async def assert_private_refusal(server: FakeDiscord, record: Any, expected: str) -> None:
    text = await refusal_of(server, record)
    assert expected in text
    message = refusal_message(record)
    assert message is not None and message["flags"] & EPHEMERAL and message not in server.channel_messages()
    assert pings(server, message) == []
    if message is not record.original:  # deferred first: the public "thinking" message is gone
        await server.wait_for(lambda: record.original is None or record.original.get("deleted")
                              or record.original not in server.channel_messages(), 10, "the thinking message to go")


@pytest.mark.parametrize(("name", "make", "expected"), BAD_UPLOADS)
@pytest.mark.parametrize("command", ["vary", "anime", "paint"])
async def test_a_bad_upload_gets_a_clear_private_answer(server: FakeDiscord, mallory: Member, command: str, name: str,
                                                        make: Callable[[], bytes], expected: str) -> None:
    upload = server.attachment(name, make(), content_type="image/png")
    options = {"prompt": "a hat", "region": "centre"} if command == "paint" else {}
    record = await mallory.slash(command, image=upload, **options)
    await assert_private_refusal(server, record, expected)
    if name == "huge.png":  # refused from its declared size, never downloaded
        assert not any(path.startswith(f"/attachments/{upload['id']}/") for _, path, _, _ in server.requests)
    await still_serving(server, mallory)


async def test_a_bad_mask_gets_a_clear_private_answer(server: FakeDiscord, mallory: Member) -> None:
    record = await mallory.slash("paint", image=server.attachment("photo.png", png()), prompt="a hat",
                                 mask=server.attachment("mask.png", png_bomb(), content_type="image/png"))
    await assert_private_refusal(server, record, "100.0 megapixels")
    await still_serving(server, mallory)


@pytest.mark.parametrize(("options", "expected"), BAD_OPTIONS, ids=[option_id(case) for case in BAD_OPTIONS])
async def test_bad_imagine_options_get_a_clear_private_answer(server: FakeDiscord, mallory: Member,
                                                              options: dict[str, Any], expected: str) -> None:
    await assert_private_refusal(server, await mallory.slash("imagine", **options), expected)
    await still_serving(server, mallory)


async def test_out_of_range_strength_is_refused(server: FakeDiscord, mallory: Member) -> None:
    record = await mallory.slash("vary", image=server.attachment("photo.png", png()), strength=5.0)
    await assert_private_refusal(server, record, "Strength must be between 0.05 and 1")
    await still_serving(server, mallory)


async def test_mentions_in_a_prompt_ping_nobody(server: FakeDiscord, mallory: Member) -> None:
    victim = Member(server, "victim")
    prompt = f"@everyone @here <@&{server.admin_role_id}> <@{victim.id}> <@!{victim.id}> a cat"
    record = await mallory.slash("imagine", prompt=prompt, seed=5)
    message = await result_of(server, record)
    assert all(pings(server, m) == [] for m in record.messages)
    params = parse_parameters(read_parameters(result_attachment(message)["data"]))
    assert params["prompt"] == prompt  # the PNG keeps the prompt as written; only the message text is defused
    assert "@everyone" not in message["content"] and "<@&" not in message["content"]


async def test_zero_width_characters_are_dropped_from_a_prompt(server: FakeDiscord, mallory: Member) -> None:
    record = await mallory.slash("imagine", prompt="a\u200b red\u2060 \ufeffcat\u200d", seed=6)
    message = await result_of(server, record)
    assert parse_parameters(read_parameters(result_attachment(message)["data"]))["prompt"] == "a red cat"


async def test_nsfw_words_follow_the_server_policy(server: FakeDiscord, mallory: Member) -> None:
    prompt = f"a {NSFW_WORD} picture"
    await assert_private_refusal(server, await mallory.slash("imagine", prompt=prompt), "not allowed in this channel")
    admin = Member(server, "admin", admin=True)
    settings = await admin.slash("easel settings", nsfw="spoiler")
    await server.wait_for(lambda: settings.original, what="the settings answer")
    assert "NSFW outside age-restricted channels: spoiler" in settings.original["content"]
    message = await result_of(server, await mallory.slash("imagine", prompt=prompt, seed=7))
    assert result_attachment(message)["filename"].startswith("SPOILER_easel-")
    restore = await admin.slash("easel settings", nsfw="block")
    await server.wait_for(lambda: restore.original, what="the settings answer")
    await still_serving(server, mallory)

