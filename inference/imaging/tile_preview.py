"""A seamless tile shown as it is meant to be used: four copies, two by two.

The copies are laid side by side at full size first and the whole is then scaled down, so the
resampling reads across the seams as it does anywhere else (scaling one copy first would blur its
edges on their own and draw a faint seam that the tile does not have).
"""

from __future__ import annotations

from PIL import Image

from inference.imaging.decode import to_rgb

MAX_PREVIEW_SIDE = 1024  # a 2x2 of a 1024 px SDXL tile is shown at 1024 px: a few MB as PNG at most


def tile_preview(image: Image.Image, max_side: int = MAX_PREVIEW_SIDE) -> Image.Image:
    """``image`` repeated 2x2, no larger than ``max_side`` on its long side (and never more than twice
    the image on a side)."""
    if max_side < 2:
        raise ValueError(f"max_side must be at least 2, not {max_side}")
    tile = to_rgb(image)
    w, h = tile.size
    sheet = Image.new("RGB", (2 * w, 2 * h))
    for x in (0, w):
        for y in (0, h):
            sheet.paste(tile, (x, y))
    scale = min(1.0, max_side / max(sheet.size))
    if scale < 1.0:
        size = (max(2, round(sheet.width * scale)), max(2, round(sheet.height * scale)))
        sheet = sheet.resize(size, Image.Resampling.LANCZOS, reducing_gap=None)
    return sheet
