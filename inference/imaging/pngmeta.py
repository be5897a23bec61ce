"""Generation parameters inside image files, the way Automatic1111 writes them.

The text has three parts, one per line::

    a lighthouse at dusk, oil painting
    Negative prompt: blurry
    Steps: 4, Sampler: Euler a, CFG scale: 7.0, Seed: 123, Size: 512x512, Model: sd-turbo

PNGs carry it in a ``parameters`` text chunk (which Discord leaves alone); JPEG and WebP copies
carry it in the EXIF UserComment, as A1111 does. Prompts are written as they are and may span
lines; values on the last line are JSON-quoted when they hold a comma, colon, newline or quote.
The one ambiguity of the format is a prompt line starting with "Negative prompt:": like A1111, the
first such line starts the negative prompt.
"""

from __future__ import annotations

import io
import json
import re
import struct
import zlib
from collections.abc import Collection, Iterator
from typing import Any

from PIL import Image, PngImagePlugin

from inference.imaging.decode import open_header, sniff_format

PARAMETERS_KEY = "parameters"
NEGATIVE_PREFIX = "Negative prompt:"
PNG_COMPRESS_LEVEL = 4  # zlib level 4 is ~3x faster than 9 and within a few percent of its size
MAX_TEXT_BYTES = 1024 * 1024  # a compressed text chunk inflating past this is not ours to read
PNG_MODES = frozenset({"1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA"})
_KEY = re.compile(r"\w[\w \-/]*")
_PAIR = re.compile(r'\s*(\w[\w \-/]*):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)')
_EXIF_IFD = 0x8769
_USER_COMMENT = 0x9286
_UNICODE_HEADER = b"UNICODE\0"
_ASCII_HEADER = b"ASCII\0\0\0"


# --------------------------------------------------------------------------- the text


def _quote(value: Any) -> str:
    text = str(value)
    if not text:
        return text
    if any(c in text for c in ",:\n\r") or text[0] == '"' or text != text.strip():
        return json.dumps(text, ensure_ascii=False)
    return text


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] == '"':
        try:
            value = json.loads(text)
        except ValueError:
            return text
        if isinstance(value, str):
            return value
    return text.strip()


def format_parameters(*, prompt: str, negative_prompt: str, steps: int, sampler: str, guidance: float, seed: int,
                      width: int, height: int, model: str, extra: dict[str, Any] | None = None) -> str:
    """The A1111 ``parameters`` text. ``extra`` entries follow ``Model`` (None values are left out)."""
    fields: dict[str, Any] = {"Steps": steps, "Sampler": sampler, "CFG scale": float(guidance), "Seed": seed,
                              "Size": f"{width}x{height}", "Model": model}
    for key, value in (extra or {}).items():
        if not _KEY.fullmatch(key) or key != key.strip():
            raise ValueError(f"parameter name {key!r} cannot be written (letters, digits, spaces, '-', '/')")
        if key in fields:
            raise ValueError(f"parameter {key!r} is already written")
        fields[key] = value
    line = ", ".join(f"{key}: {_quote(value)}" for key, value in fields.items() if value is not None)
    lines = [prompt]
    if negative_prompt:
        lines.append(f"{NEGATIVE_PREFIX} {negative_prompt}")
    lines.append(line)
    return "\n".join(lines)


def _parse_settings(line: str) -> dict[str, str] | None:
    """The ``Key: value`` pairs of a settings line, or None when the line is not one (prompt text)."""
    pairs: dict[str, str] = {}
    pos = 0
    while pos < len(line):
        match = _PAIR.match(line, pos)
        if match is None or match.end() == pos:
            return None
        pairs[match.group(1)] = _unquote(match.group(2))
        pos = match.end()
    # A1111's own rule: fewer than three pairs is prompt text that happens to hold a colon.
    return pairs if len(pairs) >= 3 else None


def parse_parameters(text: str) -> dict[str, str]:
    """Split a ``parameters`` text into "prompt", "negative_prompt" and the settings of its last line."""
    lines = text.split("\n")
    settings = _parse_settings(lines[-1])
    if settings is not None:
        lines = lines[:-1]
    prompt_lines, negative_lines = lines, []
    for i, line in enumerate(lines):
        if line.startswith(NEGATIVE_PREFIX):
            first = line[len(NEGATIVE_PREFIX):]
            negative_lines = [first[1:] if first.startswith(" ") else first, *lines[i + 1:]]
            prompt_lines = lines[:i]
            break
    result = dict(settings or {})
    result["prompt"] = "\n".join(prompt_lines)
    result["negative_prompt"] = "\n".join(negative_lines)
    return result


# --------------------------------------------------------------------------- writing


def in_mode_among(image: Image.Image, modes: Collection[str] = PNG_MODES) -> Image.Image:
    """``image`` itself when its mode is one of ``modes``, else converted to RGBA (when it has
    alpha) or RGB: the modes a PNG holds by default, or fewer for a caller that needs fewer."""
    if image.mode in modes:
        return image
    return image.convert("RGBA" if "A" in image.mode or "a" in image.mode else "RGB")


def encode_png(image: Image.Image, parameters: str | None = None) -> bytes:
    """PNG bytes with ``parameters`` in a tEXt chunk (iTXt when the text is not Latin-1)."""
    image = in_mode_among(image)
    info = None
    if parameters:
        info = PngImagePlugin.PngInfo()
        info.add_text(PARAMETERS_KEY, parameters)  # Pillow falls back to iTXt for non-Latin-1 text
    buffer = io.BytesIO()
    image.save(buffer, "PNG", pnginfo=info, compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def user_comment_exif(text: str) -> bytes:
    """EXIF bytes holding ``text`` as UserComment (UTF-16BE, as A1111 writes JPEG and WebP)."""
    exif = Image.Exif()
    exif.get_ifd(_EXIF_IFD)[_USER_COMMENT] = _UNICODE_HEADER + text.encode("utf-16-be")
    return exif.tobytes()


# --------------------------------------------------------------------------- reading


def _inflate(data: bytes) -> bytes:
    inflater = zlib.decompressobj()
    out = inflater.decompress(data, MAX_TEXT_BYTES)
    if inflater.unconsumed_tail:
        raise ValueError("text chunk too large")
    return out


def _text_chunk(kind: bytes, body: bytes) -> tuple[str, str]:
    key, _, rest = body.partition(b"\0")
    if kind == b"tEXt":
        return key.decode("latin-1"), rest.decode("latin-1")
    if kind == b"zTXt":
        return key.decode("latin-1"), _inflate(rest[1:]).decode("latin-1")
    compressed = rest[0]
    _language, _, rest = rest[2:].partition(b"\0")
    _translated, _, text = rest.partition(b"\0")
    return key.decode("latin-1"), (_inflate(text) if compressed else text).decode("utf-8")


def png_text_chunks(data: bytes) -> Iterator[tuple[str, str]]:
    """(keyword, text) of every tEXt/zTXt/iTXt chunk, before and after the pixels, without decoding them."""
    pos = 8
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if len(body) < length or kind == b"IEND":
            return
        pos += 12 + length
        if kind in (b"tEXt", b"zTXt", b"iTXt"):
            yield _text_chunk(kind, body)


def _decode_user_comment(raw: bytes | str) -> str:
    if isinstance(raw, str):
        return raw.rstrip("\0")
    head, body = raw[:8], raw[8:]
    if head == _UNICODE_HEADER:
        if body[:2] in (b"\xfe\xff", b"\xff\xfe"):
            text = body.decode("utf-16", errors="replace")
        else:  # no byte-order mark: mostly-ASCII UTF-16 has its zero bytes first in big-endian
            big = body[0::2].count(0) >= body[1::2].count(0)
            text = body.decode("utf-16-be" if big else "utf-16-le", errors="replace")
    elif head == _ASCII_HEADER:
        text = body.decode("latin-1")
    else:
        text = body.decode("utf-8", errors="replace")
    return text.rstrip("\0")


def read_parameters(data: bytes) -> str | None:
    """The ``parameters`` text of a PNG (or EXIF UserComment of a JPEG/WebP); None when there is none.

    Never raises: any file, broken or not an image at all, simply has no parameters.
    """
    try:
        fmt = sniff_format(data)
        if fmt == "PNG":
            return next((text for key, text in png_text_chunks(data) if key == PARAMETERS_KEY), None)
        if fmt in ("JPEG", "WEBP"):
            raw = open_header(data, fmt).getexif().get_ifd(_EXIF_IFD).get(_USER_COMMENT)
            return (_decode_user_comment(raw) or None) if raw else None
    except Exception:  # noqa: BLE001 - a best-effort read of untrusted bytes; "no parameters" is the answer
        return None
    return None
