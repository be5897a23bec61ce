"""Reading images and masks that members upload, with errors they can act on.

Uploads are untrusted. The checks run cheapest first: byte size, then the file's magic bytes, then
the pixel count from the header (Pillow's plugins read only the header until ``load()``), and only
then are the pixels decoded. We build the PNG/JPEG/WebP/GIF plugin objects ourselves instead of
calling ``Image.open``: that skips Pillow's own decompression-bomb check, which warns or raises
with a message meant for developers, so our own limit (with a size the member can read) always
decides first.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from PIL import (
    GifImagePlugin,
    Image,
    ImageOps,
    JpegImagePlugin,
    PngImagePlugin,
    UnidentifiedImageError,
    WebPImagePlugin,
)

from inference.jobs import JobError

MB = 1024 * 1024
DEFAULT_MAX_BYTES = 25 * MB
DEFAULT_MAX_PIXELS = 40_000_000
ACCEPTED = "PNG, JPEG or WebP"

# Everything Pillow raises for a file whose header promised an image and whose bytes did not keep it.
_BROKEN = (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, struct.error, zlib.error)
_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"}
_ROTATING_ORIENTATIONS = {5, 6, 7, 8}
_ORIENTATION = 0x0112


class ImageInputError(JobError):
    """An uploaded image or mask cannot be used; ``str(err)`` tells the member why."""


@contextmanager
def _quiet_bomb_warnings() -> Iterator[None]:
    """Silence Pillow's DecompressionBombWarning (a GIF frame may trigger it; our own limit decides).

    ``catch_warnings`` swaps the process-wide filter list, so two threads decoding at once can leave
    this one "ignore" filter behind. That is harmless: ignoring this warning is what we want anyway.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        yield


_PLUGINS: dict[str, type[Image.Image]] = {
    "PNG": PngImagePlugin.PngImageFile,
    # The plain JPEG class, not jpeg_factory: a phone's MPO is read as its first (JPEG) picture.
    "JPEG": JpegImagePlugin.JpegImageFile,
    "WEBP": WebPImagePlugin.WebPImageFile,
    "GIF": GifImagePlugin.GifImageFile,
}


def sniff_format(data: bytes) -> str | None:
    """The accepted format the magic bytes announce ("PNG", "JPEG", "WEBP" or "GIF"), else None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    return None


def open_header(data: bytes, fmt: str) -> Image.Image:
    """A lazy image of an accepted format: header read, no pixels decoded, no Pillow bomb check."""
    return _PLUGINS[fmt](io.BytesIO(data))


def _subject(what: str) -> str:
    return "That file" if what == "image" else f"The {what} file"


def _unsupported(data: bytes, what: str) -> ImageInputError:
    """The error for bytes that are no accepted format: another image format, or no image at all."""
    if data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS:
        return ImageInputError(f"{_subject(what)} is a HEIC photo, which I cannot read. Please send a {ACCEPTED} "
                               "(on an iPhone: Settings > Camera > Formats > Most Compatible).")
    try:
        with _quiet_bomb_warnings(), Image.open(io.BytesIO(data)) as other:
            fmt = other.format
    except (UnidentifiedImageError, Image.DecompressionBombError, *_BROKEN):
        fmt = None
    if fmt:
        return ImageInputError(f"{_subject(what)} is a {fmt} image; I can only use {ACCEPTED}. Please convert it.")
    return ImageInputError(f"{_subject(what)} is not an image I can read ({ACCEPTED}).")


def _damaged(what: str) -> ImageInputError:
    return ImageInputError(f"The {what} seems damaged or incomplete. Please upload the file again, "
                           f"or save it anew as {ACCEPTED}.")


def _too_many_pixels(what: str, size: tuple[int, int] | None, max_pixels: int) -> ImageInputError:
    limit = f"the limit is {max_pixels / 1e6:g} megapixels"
    if size is None:
        return ImageInputError(f"The {what} is far too large to open safely; {limit}. Please send a smaller one.")
    w, h = size
    return ImageInputError(f"The {what} is {w:,} x {h:,} pixels ({w * h / 1e6:.1f} megapixels); {limit}. "
                           "Please send a smaller one.")


def load_upload(data: bytes, *, what: str = "image", max_bytes: int = DEFAULT_MAX_BYTES,
                max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Check and decode an upload: its first frame, loaded, EXIF orientation applied, in its own mode.

    :func:`decode_image` and :func:`decode_mask` build on this; it is public for callers that need
    the alpha channel or the original mode.
    """
    if not data:
        raise ImageInputError(f"The {what} file is empty.")
    if len(data) > max_bytes:
        raise ImageInputError(f"The {what} is {len(data) / MB:.1f} MB; the limit is {max_bytes / MB:g} MB.")
    fmt = sniff_format(data)
    if fmt is None:
        raise _unsupported(data, what)
    with _quiet_bomb_warnings():
        try:
            im = open_header(data, fmt)
        except Image.DecompressionBombError:
            raise _too_many_pixels(what, None, max_pixels) from None
        except _BROKEN:
            raise _damaged(what) from None
        if im.width * im.height > max_pixels:
            raise _too_many_pixels(what, im.size, max_pixels)
        try:
            im.load()
        except Image.DecompressionBombError:
            raise _too_many_pixels(what, None, max_pixels) from None
        except _BROKEN:
            raise _damaged(what) from None
    try:
        return ImageOps.exif_transpose(im)
    except _BROKEN:  # unreadable EXIF: the pixels are fine, show them as stored
        return im.copy()


def _has_alpha(im: Image.Image) -> bool:
    return im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info


def _sixteen_bit_to_l(im: Image.Image) -> Image.Image:
    """Greyscale of 16 (or 32) bits per pixel to 8 bits, scaled rather than clipped at 255."""
    values = np.asarray(im).astype(np.int64).clip(0, 65535)
    return Image.fromarray(((values * 255 + 32767) // 65535).astype(np.uint8))


def to_rgb(im: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Any mode to RGB; transparent pixels are flattened onto ``background`` (white by default)."""
    if im.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N"):
        im = _sixteen_bit_to_l(im)
    if _has_alpha(im):
        rgba = im.convert("RGBA")
        flat = Image.new("RGB", rgba.size, background)
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    return im if im.mode == "RGB" else im.convert("RGB")


def decode_image(data: bytes, *, what: str = "image", max_bytes: int = DEFAULT_MAX_BYTES,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """An uploaded image as a loaded RGB picture, or an :class:`ImageInputError` for the member."""
    return to_rgb(load_upload(data, what=what, max_bytes=max_bytes, max_pixels=max_pixels))


def decode_mask(data: bytes, size: tuple[int, int], *, max_bytes: int = DEFAULT_MAX_BYTES,
                max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """An uploaded mask as an "L" image of ``size``: white (255) is repainted, black kept.

    A mask with real transparency means "repaint what is transparent" (what image editors' erasers
    make); otherwise its brightness is the mask, grey kept as grey. Diffusers binarises the mask at
    one half, so a mask with no pixel of 128 or more would change nothing and is refused.
    """
    im = load_upload(data, what="mask", max_bytes=max_bytes, max_pixels=max_pixels)
    mask = None
    if _has_alpha(im):
        alpha = im.convert("RGBA").getchannel("A")
        if alpha.getextrema()[0] < 255:
            mask = ImageOps.invert(alpha)
    if mask is None:
        mask = to_rgb(im).convert("L")
    if mask.size != tuple(size):
        mask = mask.resize(tuple(size), Image.Resampling.BILINEAR)
    if mask.getextrema()[1] < 128:
        raise ImageInputError("The mask is empty: paint the area to change in white.")
    return mask


def image_size_of(data: bytes) -> tuple[int, int] | None:
    """The (width, height) an upload will have once decoded, from its header alone; None if unreadable.

    EXIF orientation is taken into account where it is in the header (JPEG, WebP, PNG with an early
    eXIf chunk), so the size matches what :func:`decode_image` returns.
    """
    fmt = sniff_format(data)
    try:
        with _quiet_bomb_warnings():
            im = open_header(data, fmt) if fmt else Image.open(io.BytesIO(data))
            size = im.size
            orientation = im.getexif().get(_ORIENTATION) if "exif" in im.info else None
    except (UnidentifiedImageError, Image.DecompressionBombError, *_BROKEN):
        return None
    if orientation in _ROTATING_ORIENTATIONS:
        return size[1], size[0]
    return size
