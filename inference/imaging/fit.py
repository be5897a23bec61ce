"""Making a result fit Discord's upload limit, and small previews for progress messages.

The PNG goes out untouched when it fits. Otherwise we step down, keeping as much as possible:
lossless WebP, WebP at quality 90, JPEG at quality 90, then JPEG at 75% of the size each step.
The generation parameters travel along in the EXIF UserComment of WebP and JPEG copies.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator

from PIL import Image

from inference.imaging.decode import to_rgb
from inference.imaging.pngmeta import PNG_COMPRESS_LEVEL, read_parameters, user_comment_exif

DOWNSCALE_STEP = 0.75
MIN_SIDE = 64
QUALITY = 90
MAX_EXIF_BYTES = 60_000  # a JPEG APP1 segment holds at most 65,533 bytes

Encoder = Callable[[Image.Image, bytes], bytes]


def _webp_lossless(image: Image.Image, exif: bytes) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "WEBP", lossless=True, quality=50, method=3, exif=exif)
    return buffer.getvalue()


def _webp(image: Image.Image, exif: bytes) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "WEBP", quality=QUALITY, method=4, exif=exif)
    return buffer.getvalue()


def _jpeg(image: Image.Image, exif: bytes) -> bytes:
    buffer = io.BytesIO()
    to_rgb(image).save(buffer, "JPEG", quality=QUALITY, optimize=True, exif=exif)
    return buffer.getvalue()


def _candidates(image: Image.Image) -> Iterator[tuple[Image.Image, Encoder, str]]:
    yield image, _webp_lossless, "webp"
    yield image, _webp, "webp"
    yield image, _jpeg, "jpg"
    scale = DOWNSCALE_STEP
    while True:
        size = (round(image.width * scale), round(image.height * scale))
        if min(size) < MIN_SIDE:
            return
        yield image.resize(size, Image.Resampling.LANCZOS), _jpeg, "jpg"
        scale *= DOWNSCALE_STEP


def fit_for_upload(png: bytes, limit_bytes: int, *, stem: str = "image") -> tuple[bytes, str]:
    """``(data, filename)`` no larger than ``limit_bytes``: the PNG itself when it fits, else a smaller copy.

    Raises ValueError when even a JPEG with its short side above 64 pixels does not fit.
    """
    if len(png) <= limit_bytes:
        return png, f"{stem}.png"
    with Image.open(io.BytesIO(png)) as opened:
        opened.load()
        image = opened if opened.mode in ("RGB", "RGBA") else to_rgb(opened)
    parameters = read_parameters(png)
    exif = user_comment_exif(parameters) if parameters else b""
    if len(exif) > MAX_EXIF_BYTES:
        exif = b""
    for candidate, encode, suffix in _candidates(image):
        try:
            data = encode(candidate, exif)
        except (OSError, ValueError):  # beyond a format's own limits (WebP: 16,383 px a side): try the next
            continue
        if len(data) <= limit_bytes:
            return data, f"{stem}.{suffix}"
    raise ValueError(f"cannot fit a {image.width}x{image.height} image into {limit_bytes:,} bytes")


def thumbnail_png(image: Image.Image, max_side: int) -> bytes:
    """A quickly encoded PNG no larger than ``max_side`` on its long side (never enlarged)."""
    if max_side < 1:
        raise ValueError(f"max_side must be at least 1, not {max_side}")
    small = to_rgb(image) if image.mode not in ("RGB", "L") else image.copy()
    small.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    small.save(buffer, "PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()
