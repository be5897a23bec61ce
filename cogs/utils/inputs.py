"""Member-supplied images: size-checked before download, type-checked from the bytes, decoded
off the event loop, and kept on disk once the request is accepted (buttons on old results read
from disk, not the CDN).

An input is stored compactly: the upload's own bytes when they are a PNG, JPEG or WebP that the
pipeline reads back as exactly the picture the member sent (a photo stays the JPEG it was, not a
PNG five times its size), else a lossless encoding.
"""

from __future__ import annotations

import asyncio
import io
import warnings
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

import discord
from PIL import Image, ImageOps

from config import LimitsConfig
from inference.imaging import ImageInputError, decode_image, decode_mask, sniff_format
from studio_admission import InputFile, input_file

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


@dataclass(frozen=True)
class PendingInput:
    """An input image, decoded and named; ``launch()`` stores it once the request is accepted."""

    image: Image.Image
    file: InputFile

    @property
    def path(self) -> str:
        return self.file.path

    @property
    def size(self) -> tuple[int, int]:
        return self.image.size


KEPT_FORMATS = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp"}
_ALPHA_OR_DEEP = {"RGBA", "LA", "PA", "RGBa", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"}
WEBP_MAX_SIDE = 16383


def reads_back_as(data: bytes, image: Image.Image) -> str | None:
    """The suffix to keep ``data`` under when the pipeline reads it back as exactly ``image``
    (inference/prepare.py opens the file, applies its EXIF orientation and converts to RGB);
    None when it would not (transparency, 16-bit, GIF, an EXIF Pillow cannot apply...)."""
    suffix = KEPT_FORMATS.get(sniff_format(data) or "")
    if suffix is None:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as opened:
                if opened.mode in _ALPHA_OR_DEEP or "transparency" in opened.info:
                    return None
                opened.load()
                again = ImageOps.exif_transpose(opened).convert("RGB")
    except Exception:  # whatever Pillow raises here, storing a lossless copy is the safe answer
        return None
    same = again.size == image.size and image.mode == "RGB" and again.tobytes() == image.tobytes()
    return suffix if same else None


def encode_lossless(image: Image.Image) -> tuple[bytes, str]:
    """A compact lossless file of ``image``: WebP (smaller than PNG and about as fast at this
    effort, measured on photos), PNG for masks and beyond WebP's 16383-pixel sides."""
    buffer = io.BytesIO()
    if image.mode == "RGB" and max(image.size) <= WEBP_MAX_SIDE:
        image.save(buffer, format="WEBP", lossless=True, quality=20, method=1)
        return buffer.getvalue(), ".webp"
    image.save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue(), ".png"


def storable(image: Image.Image, data: bytes | None) -> tuple[bytes, str]:
    """What to store for an input: the upload itself where it reads back unchanged, else lossless."""
    suffix = reads_back_as(data, image) if data is not None else None
    return (data, suffix) if data is not None and suffix is not None else encode_lossless(image)


async def pending(studio: Studio, image: Image.Image, data: bytes | None = None) -> PendingInput:
    """Name an input image (``data``: the upload it was decoded from, kept where possible)."""
    stored, suffix = await asyncio.to_thread(storable, image, data)
    return PendingInput(image, await input_file(studio, stored, suffix))


async def load_pending(studio: Studio, attachment: discord.Attachment, limits: LimitsConfig) -> PendingInput:
    """Download and check an upload and name it for storing (nothing is written yet)."""
    data = await read_attachment(attachment, limits)
    return await pending(studio, await decode(data, limits), data)


def image_attachment(message: discord.Message) -> discord.Attachment | None:
    """The first attachment that looks like an image (the bytes are checked later)."""
    for attachment in message.attachments:
        content_type = (attachment.content_type or "").split(";")[0]
        if content_type.startswith("image/") or PurePosixPath(attachment.filename).suffix.lower() in IMAGE_SUFFIXES:
            return attachment
    return None


async def upload_of_message(studio: Studio, message: discord.Message, limits: LimitsConfig,
                            index: int = 0) -> tuple[bytes, Image.Image, str | None]:
    """The image a member pointed at: from disk if it is one of our results, else its attachment.

    Returns its bytes, the decoded image and, for our own results, the job id that made it.
    """
    rows = await studio.database.images.by_message(message.id)
    if rows:
        row = sorted(rows, key=lambda r: r.idx)[min(index, len(rows) - 1)]
        try:
            data = await studio.outputs.read(row.path)
            return data, await decode(data, limits), row.job_id
        except (OSError, ImageInputError):
            pass  # the file was pruned: fall back to the attachment
    attachment = image_attachment(message)
    if attachment is None:
        raise ImageInputError("That message has no image I can use.")
    data = await read_attachment(attachment, limits)
    return data, await decode(data, limits), None


async def image_of_message(studio: Studio, message: discord.Message, limits: LimitsConfig,
                           index: int = 0) -> tuple[Image.Image, str | None]:
    """:func:`upload_of_message` without the bytes."""
    _data, image, job_id = await upload_of_message(studio, message, limits, index)
    return image, job_id


async def pending_of_message(studio: Studio, message: discord.Message, limits: LimitsConfig,
                             index: int = 0) -> tuple[PendingInput, str | None]:
    """:func:`upload_of_message`, named for storing (one of our results names its own file)."""
    data, image, job_id = await upload_of_message(studio, message, limits, index)
    return await pending(studio, image, data), job_id


def png_file(data: bytes, filename: str, *, spoiler: bool = False) -> discord.File:
    return discord.File(io.BytesIO(data), filename=filename, spoiler=spoiler)
