"""Masks for /paint: named regions and percent boxes, feathering, and putting the original back.

Masks are "L" images: 255 is repainted, 0 is kept. After inpainting, :func:`composite_unmasked`
pastes the original over everything the mask keeps, because the VAE round trip changes every pixel
slightly and "the rest stays as it was" should be literally true. :func:`feather` softens the edge
*inside* the painted area only, so the kept area is never touched.
"""

from __future__ import annotations

import math
import re

import numpy as np
from PIL import Image, ImageFilter

from inference.imaging.decode import ImageInputError

Fractions = tuple[float, float, float, float]  # left, top, right, bottom as fractions of the image

_T1, _T2 = 1 / 3, 2 / 3
REGIONS: dict[str, Fractions] = {
    "left": (0, 0, 0.5, 1), "right": (0.5, 0, 1, 1), "top": (0, 0, 1, 0.5), "bottom": (0, 0.5, 1, 1),
    "left-third": (0, 0, _T1, 1), "centre-third": (_T1, 0, _T2, 1), "right-third": (_T2, 0, 1, 1),
    "top-third": (0, 0, 1, _T1), "middle-third": (0, _T1, 1, _T2), "bottom-third": (0, _T2, 1, 1),
    "centre": (0.25, 0.25, 0.75, 0.75),
    "top-left": (0, 0, 0.5, 0.5), "top-right": (0.5, 0, 1, 0.5),
    "bottom-left": (0, 0.5, 0.5, 1), "bottom-right": (0.5, 0.5, 1, 1),
    # A 3x3 grid named like spreadsheet cells: the letter is the column, the digit the row.
    **{f"{col}{row}": (c / 3, r / 3, (c + 1) / 3, (r + 1) / 3)
       for r, row in enumerate("123") for c, col in enumerate("ABC")},
    "all": (0, 0, 1, 1),
}
ALIASES = {"center": "centre", "center-third": "centre-third", "everything": "all"}
REGION_NAMES: tuple[str, ...] = tuple(REGIONS)
_SEPARATORS = re.compile(r"[\s,+]+")
_BOX_SEPARATORS = re.compile(r"[\s,;]+")
BOX_TOLERANCE = 1.0  # percent: "30, 0, 71, 100" is read as reaching the edge, not as an error
_REGION_HELP = ("halves (left, right, top, bottom), thirds (left-third, centre-third, right-third, top-third, "
                "middle-third, bottom-third), centre, corners (top-left, top-right, bottom-left, bottom-right), "
                "grid cells A1-C3 (letter = column, number = row) or all")
_BOX_HELP = "A box is four percentages: x, y, width, height, e.g. `10, 20, 50, 40`."


def _canonical(word: str) -> str | None:
    word = word.replace("_", "-")
    if re.fullmatch(r"[a-cA-C][1-3]", word):
        return word.upper()
    word = word.lower()
    word = ALIASES.get(word, word)
    return word if word in REGIONS else None


def parse_regions(spec: str) -> tuple[str, ...]:
    """Region names from "left", "A1 B1", "top-left+centre", ...; aliases normalised, duplicates dropped."""
    words = [w for w in _SEPARATORS.split(spec or "") if w]
    if not words:
        raise ImageInputError(f"Name at least one region to repaint: {_REGION_HELP}.")
    names: list[str] = []
    for word in words:
        name = _canonical(word)
        if name is None:
            raise ImageInputError(f"I don't know the region {word!r}. Use {_REGION_HELP}.")
        if name not in names:
            names.append(name)
    return tuple(names)


def _pixel_span(lo: float, hi: float, length: int) -> tuple[int, int]:
    """Pixel [start, stop) of a fraction range; never empty, so a third of a tiny image is still something."""
    start, stop = round(lo * length), round(hi * length)
    start = min(start, length - 1)
    return start, max(stop, start + 1)


def _fractions_mask(boxes: list[Fractions], size: tuple[int, int]) -> Image.Image:
    w, h = size
    canvas = np.zeros((h, w), dtype=np.uint8)
    for left, top, right, bottom in boxes:
        x0, x1 = _pixel_span(left, right, w)
        y0, y1 = _pixel_span(top, bottom, h)
        canvas[y0:y1, x0:x1] = 255
    return Image.fromarray(canvas)


def region_mask(spec: str, size: tuple[int, int]) -> Image.Image:
    """The union of the named regions as an "L" mask of ``size`` (width, height)."""
    return _fractions_mask([REGIONS[name] for name in parse_regions(spec)], size)


def parse_box(spec: str) -> tuple[float, float, float, float]:
    """(x, y, width, height) in percent from "10,20,50,40", "10 20 50 40" or "10%, 20%, 50%, 40%"."""
    parts = [p for p in _BOX_SEPARATORS.split((spec or "").replace("%", " ")) if p]
    if len(parts) != 4:
        raise ImageInputError(f"{_BOX_HELP} I found {len(parts)} value{'s' if len(parts) != 1 else ''}.")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise ImageInputError(f"{_BOX_HELP} Use plain numbers.") from None
    if not all(math.isfinite(v) and 0 <= v <= 100 for v in values):
        raise ImageInputError(f"{_BOX_HELP} Each value must be between 0 and 100.")
    x, y, w, h = values
    if w <= 0 or h <= 0:
        raise ImageInputError("The box has no area: its width and height must be more than 0.")
    for start, extent, edge in ((x, w, "right"), (y, h, "bottom")):
        if start + extent > 100 + BOX_TOLERANCE:
            raise ImageInputError(f"The box goes past the {edge} edge: {start:g} + {extent:g} is more than 100%.")
    return x, y, min(w, 100 - x), min(h, 100 - y)


def box_mask(box: tuple[float, float, float, float], size: tuple[int, int]) -> Image.Image:
    """An "L" mask of ``size`` with the percent box ``(x, y, width, height)`` white."""
    x, y, w, h = (v / 100 for v in box)
    return _fractions_mask([(x, y, x + w, y + h)], size)


def default_feather_radius(size: tuple[int, int]) -> float:
    """About 2% of the short side, at least 2 pixels."""
    return max(2.0, 0.02 * min(size))


def _erode(white: np.ndarray, distance: int) -> np.ndarray:
    """Binary erosion by a square of ``distance`` pixels each way, via an integral image (O(1) per pixel).

    Outside the image counts as white: the picture's own border is not an edge with kept pixels.
    """
    padded = np.pad(white, distance, constant_values=True).astype(np.int32)
    integral = np.pad(padded.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    k = 2 * distance + 1
    h, w = white.shape
    window = (integral[k:k + h, k:k + w] - integral[:h, k:k + w]
              - integral[k:k + h, :w] + integral[:h, :w])
    return window == k * k


def _feather_once(values: np.ndarray, radius: float) -> np.ndarray:
    distance = math.ceil(radius / 2)
    core = _erode(values >= 128, distance).astype(np.uint8) * 255
    # Blur the eroded core by sigma = radius/6: it reaches ~0 at the original edge and 255 at ~radius
    # inside. Edge-replicating padding keeps the picture's border white where the mask touches it.
    pad = distance + math.ceil(radius)
    padded = Image.fromarray(np.pad(core, pad, mode="edge"))
    blurred = np.asarray(padded.filter(ImageFilter.GaussianBlur(radius / 6)))[pad:-pad, pad:-pad]
    return np.minimum(blurred, values)


def feather(mask: Image.Image, radius_px: float | None = None) -> Image.Image:
    """Soften the mask's edge over about ``radius_px`` pixels, inward.

    The result is 0 wherever ``mask`` is below 128 (kept pixels stay exactly kept), rises across a
    band of about ``radius_px`` inside the painted area, and is 255 deeper in. The image border is
    not treated as an edge. A small painted area would drown in a wide band, so the radius is halved
    until at least half of the painted pixels are still more generated than original.
    """
    mask = mask.convert("L")
    values = np.asarray(mask)
    radius = default_feather_radius(mask.size) if radius_px is None else float(radius_px)
    painted = np.count_nonzero(values >= 128)
    while radius >= 1:
        soft = _feather_once(values, radius)
        if np.count_nonzero(soft >= 128) * 2 >= painted:
            return Image.fromarray(soft)
        radius /= 2
    return mask.copy()


def composite_unmasked(original: Image.Image, generated: Image.Image, mask: Image.Image) -> Image.Image:
    """``generated`` where the mask is white, ``original`` where black, blended in between.

    Works at the generated image's size: the original and the mask are resized to it if needed.
    """
    generated = generated.convert("RGB")
    original = original.convert("RGB")
    if original.size != generated.size:
        original = original.resize(generated.size, Image.Resampling.LANCZOS)
    mask = mask.convert("L")
    if mask.size != generated.size:
        mask = mask.resize(generated.size, Image.Resampling.BILINEAR)
    return Image.composite(generated, original, mask)


def mask_coverage(mask: Image.Image) -> float:
    """The fraction of the image the mask repaints (pixels above 127)."""
    values = np.asarray(mask.convert("L"))
    return float(np.count_nonzero(values > 127)) / max(1, values.size)
