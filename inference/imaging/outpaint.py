"""Canvases and masks for zooming out and panning (outpainting): pure Pillow and numpy.

A zoom-out grows the canvas around the image on every side; a pan grows it on one side. The
original sits in the canvas at whole-pixel offsets; the mask is white (repaint) over the new area
and ramps down across a narrow band just inside the original, so the new part blends over the
seam. Deeper inside the original the mask is 0, and the inpainting path pastes the original back
there (:func:`inference.imaging.masks.composite_unmasked`): those pixels come out exactly as they
went in.

Canvas sides are multiples of 8 (what the pipelines need) and no larger than the model's
``max_side``. When the grown canvas would be larger, the whole canvas, the original included, is
scaled down first (never up): the plan says so, and the member is told.

The new area is filled with the original's edge pixels carried outward and blurred, not with a flat
colour. With strength 1 the pipeline starts the masked area from pure noise, so the fill matters
most at the seam: the VAE encodes the canvas with a receptive field much wider than 8 pixels, so
the latents of the kept band "see" the fill. Continued edge colours keep them consistent with the
picture, where a black or grey border would pull the seam towards that colour; the blur removes
the streaks plain edge replication makes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

ZOOM_FACTORS = (1.5, 2.0)
PAN_DIRECTIONS = ("left", "right", "up", "down")
PAN_FRACTION = 0.5  # a pan adds half the image's width (or height) on the arrow's side
BAND_FRACTION = 1 / 16  # the feathered band reaches this share of the original's short side inside it
MIN_BAND = 2

# Where the original sits in the grown canvas: (x, y) as fractions of the free space before it.
_ANCHORS = {"zoom": (0.5, 0.5), "left": (1.0, 0.5), "right": (0.0, 0.5), "up": (0.5, 1.0), "down": (0.5, 0.0)}


def _ceil8(value: float) -> int:
    """The next multiple of 8 (float noise such as 96.0000001 does not count)."""
    return max(8, math.ceil(round(value, 6) / 8) * 8)


@dataclass(frozen=True)
class CanvasPlan:
    """The grown canvas: its size, the box the (scaled) original fills, and the scale applied."""

    canvas: tuple[int, int]
    box: tuple[int, int, int, int]  # left, top, right, bottom of the original in the canvas
    scale: float  # 1.0: the original's pixels are used as they are
    wanted: tuple[int, int]  # the canvas size before any scaling down

    @property
    def scaled_down(self) -> bool:
        return self.scale < 1.0

    @property
    def placed_size(self) -> tuple[int, int]:
        left, top, right, bottom = self.box
        return right - left, bottom - top

    def note(self, max_side: int) -> str:
        """What the member should know about the canvas ("" when nothing was scaled)."""
        if not self.scaled_down:
            return ""
        (ww, wh), (cw, ch) = self.wanted, self.canvas
        return (f"The grown canvas ({ww}x{wh}) is larger than this model's {max_side} px limit, so it was scaled "
                f"down to {cw}x{ch} first (the original part too).")


def plan_zoom(size: tuple[int, int], factor: float, max_side: int) -> CanvasPlan:
    """The canvas for zooming out by ``factor`` (each side grows by that factor, the image centred)."""
    if factor <= 1.0:
        raise ValueError(f"a zoom-out factor must be above 1, not {factor}")
    w, h = size
    return _plan(size, (w * factor, h * factor), _ANCHORS["zoom"], max_side)


def plan_pan(size: tuple[int, int], direction: str, max_side: int, fraction: float = PAN_FRACTION) -> CanvasPlan:
    """The canvas for panning ``direction``: ``fraction`` of the image added on that side."""
    if direction not in PAN_DIRECTIONS:
        raise ValueError(f"unknown pan direction {direction!r}")
    w, h = size
    wanted = (w * (1 + fraction), h) if direction in ("left", "right") else (w, h * (1 + fraction))
    return _plan(size, wanted, _ANCHORS[direction], max_side)


def _plan(size: tuple[int, int], wanted: tuple[float, float], anchor: tuple[float, float], max_side: int) -> CanvasPlan:
    w, h = size
    limit = max(8, max_side // 8 * 8)
    full = (_ceil8(wanted[0]), _ceil8(wanted[1]))
    scale = min(1.0, limit / full[0], limit / full[1])
    cw, ch = (min(limit, _ceil8(v * scale)) for v in wanted)
    ow, oh = min(cw, max(1, round(w * scale))), min(ch, max(1, round(h * scale)))
    x0, y0 = round((cw - ow) * anchor[0]), round((ch - oh) * anchor[1])
    return CanvasPlan((cw, ch), (x0, y0, x0 + ow, y0 + oh), scale, full)


def band_width(plan: CanvasPlan) -> int:
    """The default width of the feathered band inside the original, in pixels."""
    return max(MIN_BAND, round(min(plan.placed_size) * BAND_FRACTION))


def outpaint_mask(plan: CanvasPlan, band: int | None = None) -> Image.Image:
    """An "L" mask of the canvas: 255 over the new area, a smooth ramp from about 255 to 0 across
    ``band`` pixels inside the original's sides that border new area, and exactly 0 deeper in."""
    band = band_width(plan) if band is None else band
    cw, ch = plan.canvas
    x0, y0, x1, y1 = plan.box
    mask = np.full((ch, cw), 255, dtype=np.uint8)
    xs = np.arange(x0, x1, dtype=np.float64)[None, :]
    ys = np.arange(y0, y1, dtype=np.float64)[:, None]
    distance = np.full((y1 - y0, x1 - x0), np.inf)
    if x0 > 0:
        distance = np.minimum(distance, xs - x0 + 1)  # 1 for the first column of the original
    if x1 < cw:
        distance = np.minimum(distance, x1 - xs)
    if y0 > 0:
        distance = np.minimum(distance, ys - y0 + 1)
    if y1 < ch:
        distance = np.minimum(distance, y1 - ys)
    t = np.clip(1.0 - distance / (band + 1), 0.0, 1.0)
    ramp = t * t * (3 - 2 * t)  # smoothstep: no visible kink where the band starts or ends
    mask[y0:y1, x0:x1] = np.round(ramp * 255).astype(np.uint8)
    return Image.fromarray(mask, "L")


def _filled(original: np.ndarray, plan: CanvasPlan) -> Image.Image:
    """The original's edge pixels carried out over the new area, blurred (see the module's docstring)."""
    cw, ch = plan.canvas
    x0, y0, x1, y1 = plan.box
    padded = np.pad(original, ((y0, ch - y1), (x0, cw - x1), (0, 0)), mode="edge")
    return Image.fromarray(padded, "RGB").filter(ImageFilter.GaussianBlur(max(2.0, min(cw, ch) / 16)))


def outpaint_canvas(image: Image.Image, plan: CanvasPlan) -> Image.Image:
    """The init image: the (scaled) original in its box, the new area filled."""
    ow, oh = plan.placed_size
    original = image.convert("RGB")
    if original.size != (ow, oh):
        original = original.resize((ow, oh), Image.Resampling.LANCZOS)
    canvas = _filled(np.asarray(original), plan)
    canvas.paste(original, plan.box[:2])
    return canvas


def prepare_outpaint(image: Image.Image, plan: CanvasPlan, band: int | None = None) -> tuple[Image.Image, Image.Image]:
    """``(canvas, mask)`` for inpainting the grown area of ``image`` as ``plan`` lays it out."""
    return outpaint_canvas(image, plan), outpaint_mask(plan, band)
