"""Frames into an animated WebP (GIF where Pillow cannot write animated WebP), fitted to an upload limit.

Pure Pillow. A morph is stored once, as made (:func:`encode_animation`); when it is posted where
the upload limit is smaller than the file, :func:`fit_animation` makes a copy that fits by
dropping frames first (every other one, first and last kept, the loop's length kept) and then by
shrinking the size, and says what it did in a note for the message.

Animated WebP and GIF carry no Automatic1111 ``parameters`` PNG chunk: a morph's parameters are
in the text of the message that posts it, and a WebP also carries them in its EXIF UserComment
(as re-encoded stills do), which *Describe* and ✉️ read back. A GIF has no place for them.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

from PIL import Image, ImageSequence, features

from inference.imaging.decode import to_rgb
from inference.imaging.pngmeta import read_parameters, user_comment_exif

LOOP_MS = 1600  # one pass through the frames, whatever their number
HOLD_ENDS = 2.0  # the first and last frames stay this many times longer than the others
QUALITY = 90
SHRINK_STEP = 0.75
MIN_SIDE = 32
MIN_FRAMES = 2
LOSSLESS_BUDGET = 4 * 1024 * 1024  # a stored morph stays lossless up to this size


@cache
def webp_possible() -> bool:
    """Whether this Pillow writes animated WebP (tried once: two 1-pixel frames)."""
    if not features.check_module("webp"):
        return False
    try:
        frames = [Image.new("RGB", (1, 1)), Image.new("RGB", (1, 1), (255, 255, 255))]
        frames[0].save(io.BytesIO(), "WEBP", save_all=True, append_images=frames[1:], duration=100)
    except (OSError, ValueError, KeyError):
        return False
    return True


def durations(count: int, loop_ms: int = LOOP_MS) -> list[int]:
    """Milliseconds per frame: the loop's length shared out, the two ends held longer."""
    if count <= 1:
        return [loop_ms]
    weights = [HOLD_ENDS if i in (0, count - 1) else 1.0 for i in range(count)]
    unit = loop_ms / sum(weights)
    return [max(20, round(unit * w)) for w in weights]


def encode_animation(frames: Sequence[Image.Image], fmt: str | None = None, *, loop_ms: int = LOOP_MS,
                     parameters: str | None = None, lossless: bool = False) -> bytes:
    """An endlessly looping animation of ``frames``: ``webp`` (the default where possible) or ``gif``.
    ``parameters``: the generation parameters, kept in a WebP's EXIF UserComment. A lossy WebP
    merges frames that differ by less than its quality notices; a lossless one keeps every frame
    that differs at all."""
    if not frames:
        raise ValueError("an animation needs at least one frame")
    fmt = fmt or ("webp" if webp_possible() else "gif")
    images = [to_rgb(frame) if frame.mode != "RGB" else frame for frame in frames]
    buffer = io.BytesIO()
    options: dict[str, object] = {"save_all": True, "append_images": images[1:], "duration": durations(len(images), loop_ms),
                                  "loop": 0}
    if fmt == "webp":
        exif = user_comment_exif(parameters) if parameters else b""
        if lossless:
            images[0].save(buffer, "WEBP", lossless=True, quality=50, method=3, exif=exif, **options)
        else:
            images[0].save(buffer, "WEBP", quality=QUALITY, method=4, exif=exif, **options)
    elif fmt == "gif":
        images[0].save(buffer, "GIF", optimize=False, disposal=1, **options)
    else:
        raise ValueError(f"unknown animation format {fmt!r}")
    return buffer.getvalue()


def encode_for_storage(frames: Sequence[Image.Image], *, parameters: str | None = None,
                       lossless_budget: int = LOSSLESS_BUDGET) -> bytes:
    """The file a morph is stored as: a lossless WebP when it stays within ``lossless_budget``
    bytes (every frame exactly as made, like a PNG), else a lossy one (or a GIF where WebP cannot
    be written)."""
    if not webp_possible():
        return encode_animation(frames, "gif")
    exact = encode_animation(frames, "webp", parameters=parameters, lossless=True)
    if len(exact) <= lossless_budget:
        return exact
    return encode_animation(frames, "webp", parameters=parameters)


def animation_format(data: bytes) -> str:
    """``webp`` or ``gif`` from the file's first bytes (ValueError for anything else)."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    raise ValueError("not an animated WebP or GIF")


def fit_stored(data: bytes, limit_bytes: int) -> Fitted:
    """A stored animation as it is when it fits ``limit_bytes``, else :func:`fit_animation` of its frames."""
    if len(data) <= limit_bytes:
        with Image.open(io.BytesIO(data)) as opened:
            size, count = opened.size, int(getattr(opened, "n_frames", 1))
        return Fitted(data, animation_format(data), count, size)
    return fit_animation(read_frames(data), limit_bytes, encoded=data)


def read_frames(data: bytes) -> list[Image.Image]:
    """The frames of an animation, as RGB images."""
    with Image.open(io.BytesIO(data)) as opened:
        return [to_rgb(frame.copy()) for frame in ImageSequence.Iterator(opened)]


def frame_count(data: bytes) -> int:
    with Image.open(io.BytesIO(data)) as opened:
        return int(getattr(opened, "n_frames", 1))


def fewer(frames: Sequence[Image.Image]) -> list[Image.Image]:
    """Every other frame, the first and last always kept."""
    if len(frames) <= MIN_FRAMES:
        return list(frames)
    kept = list(frames[::2])
    if (len(frames) - 1) % 2:
        kept.append(frames[-1])
    return kept


@dataclass(frozen=True)
class Fitted:
    data: bytes
    fmt: str
    frames: int
    size: tuple[int, int]
    note: str = ""  # what was given up to fit, for the message ("" when nothing was)


def fit_animation(frames: Sequence[Image.Image], limit_bytes: int, fmt: str | None = None, *,
                  encoded: bytes | None = None) -> Fitted:
    """The animation of ``frames`` in at most ``limit_bytes``: all of them at full size when that
    fits (``encoded``: that file, when it is made already), else fewer frames, then a smaller size.
    Raises ValueError when two frames of ``MIN_SIDE`` pixels do not fit either."""
    fmt = fmt or (animation_format(encoded) if encoded is not None else ("webp" if webp_possible() else "gif"))
    parameters = read_parameters(encoded) if encoded is not None else None
    full = (frames[0].width, frames[0].height)
    current = list(frames)
    scale = 1.0
    halved = False
    while True:
        size = (max(1, round(full[0] * scale)), max(1, round(full[1] * scale)))
        if encoded is not None and scale == 1.0 and len(current) == len(frames):
            data = encoded
        else:
            shown = current if scale == 1.0 else [f.resize(size, Image.Resampling.LANCZOS) for f in current]
            data = encode_animation(shown, fmt, parameters=parameters)
        if len(data) <= limit_bytes:
            return Fitted(data, fmt, len(current), size, _note(len(frames), len(current), full, size))
        if len(current) > MIN_FRAMES and not halved:  # about half the frames first
            current, halved = fewer(current), True
        elif min(full) * scale * SHRINK_STEP >= MIN_SIDE:
            scale *= SHRINK_STEP
        elif len(current) > MIN_FRAMES:
            current = fewer(current)
        else:
            raise ValueError(f"cannot fit an animation of {len(frames)} frames into {limit_bytes:,} bytes")


def _note(frames: int, kept: int, full: tuple[int, int], size: tuple[int, int]) -> str:
    changes = []
    if kept < frames:
        changes.append(f"{kept} of its {frames} frames")
    if size != full:
        changes.append(f"{size[0]}x{size[1]} instead of {full[0]}x{full[1]}")
    if not changes:
        return ""
    return "Shortened to fit Discord's upload limit: " + " at ".join(changes) + "."
