"""Member-supplied images: size-checked before download, type-checked from the bytes, decoded
off the event loop, and kept on disk (buttons on old results read from disk, not the CDN)."""

from __future__ import annotations

import asyncio
import io
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

import discord
from PIL import Image

from config import LimitsConfig
from inference.imaging import ImageInputError, decode_image, decode_mask, encode_png

if TYPE_CHECKING:
    from studio import Studio

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".gif"}


MB = 1024 * 1024


def max_bytes(limits: LimitsConfig) -> int:
    return int(limits.max_upload_mb * MB)


def too_big(what: str, size: int, limits: LimitsConfig) -> ImageInputError:
    return ImageInputError(f"The {what} is {size / MB:.1f} MB; the limit here is {limits.max_upload_mb:g} MB.")


async def read_attachment(attachment: discord.Attachment, limits: LimitsConfig, what: str = "image") -> bytes:
    """Download an attachment Discord handed us, refusing oversized files before downloading."""
    limit = max_bytes(limits)
    if attachment.size > limit:
        raise too_big(what, attachment.size, limits)
    try:
        data = await attachment.read()
    except discord.HTTPException:
        raise ImageInputError(f"I could not download the {what} from Discord. Please upload it again.") from None
    if len(data) > limit:
        raise too_big(what, len(data), limits)
    return data


async def decode(data: bytes, limits: LimitsConfig, what: str = "image") -> Image.Image:
    return await asyncio.to_thread(decode_image, data, what=what, max_bytes=max_bytes(limits),
                                   max_pixels=limits.max_input_pixels)


async def decode_mask_for(data: bytes, size: tuple[int, int], limits: LimitsConfig) -> Image.Image:
    return await asyncio.to_thread(decode_mask, data, size, max_bytes=max_bytes(limits),
                                   max_pixels=limits.max_input_pixels)


async def load(attachment: discord.Attachment, limits: LimitsConfig, what: str = "image") -> Image.Image:
    return await decode(await read_attachment(attachment, limits, what), limits, what)


async def load_and_keep(studio: Studio, attachment: discord.Attachment,
                        limits: LimitsConfig) -> tuple[Image.Image, str]:
    image = await load(attachment, limits)
    return image, await keep(studio, image)


async def keep(studio: Studio, image: Image.Image) -> str:
    """Store a (decoded, normalised) input image; returns the path a job refers to."""
    data = await asyncio.to_thread(encode_png, image)
    return await studio.store_input(data, suffix=".png")


def image_attachment(message: discord.Message) -> discord.Attachment | None:
    """The first attachment that looks like an image (the bytes are checked later)."""
    for attachment in message.attachments:
        content_type = (attachment.content_type or "").split(";")[0]
        if content_type.startswith("image/") or PurePosixPath(attachment.filename).suffix.lower() in IMAGE_SUFFIXES:
            return attachment
    return None


async def image_of_message(studio: Studio, message: discord.Message, limits: LimitsConfig,
                           index: int = 0) -> tuple[Image.Image, str | None]:
    """The image a member pointed at: from disk if it is one of our results, else its attachment.

    Returns the decoded image and, for our own results, the job id that made it.
    """
    rows = await studio.database.images.by_message(message.id)
    if rows:
        row = sorted(rows, key=lambda r: r.idx)[min(index, len(rows) - 1)]
        try:
            data = await studio.outputs.read(row.path)
            return await decode(data, limits), row.job_id
        except (OSError, ImageInputError):
            pass  # the file was pruned: fall back to the attachment
    attachment = image_attachment(message)
    if attachment is None:
        raise ImageInputError("That message has no image I can use.")
    return await decode(await read_attachment(attachment, limits), limits), None


def png_file(data: bytes, filename: str, *, spoiler: bool = False) -> discord.File:
    return discord.File(io.BytesIO(data), filename=filename, spoiler=spoiler)
