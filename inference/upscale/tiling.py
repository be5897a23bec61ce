"""Tiled upscaling: the model sees one tile at a time, so its working memory stays the same
whatever the image size; only the output buffers grow with the image.

Tiles overlap by ``overlap`` input pixels. Each tile's output is weighted by a ramp that falls to
nearly 0 across the overlap at every edge it shares with another tile (image borders keep full
weight), and the weighted sum is divided by the summed weights: seams are feathered, and away
from the overlaps the result equals an untiled run. Between tiles the caller may stop the run
(``keep_going``) and hears of each finished tile (``on_tile``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from PIL import Image

TILE = 256  # input pixels per tile side (a 4x model's tile output is 1024 px)
OVERLAP = 16


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets covering ``length`` with tiles of ``tile`` overlapping by at least ``overlap``,
    spread evenly (the last tile ends at ``length``)."""
    if length <= tile:
        return [0]
    count = math.ceil((length - overlap) / (tile - overlap))
    step = (length - tile) / (count - 1)
    return [round(i * step) for i in range(count)]


def _ramp(size: int, fade: int, start: bool, end: bool) -> torch.Tensor:
    """1 in the middle, falling linearly towards ~0 over ``fade`` pixels at a shared edge."""
    weight = torch.ones(size)
    if fade > 0:
        rise = (torch.arange(fade, dtype=torch.float32) + 0.5) / fade
        if start:
            weight[:fade] = torch.minimum(weight[:fade], rise)
        if end:
            weight[-fade:] = torch.minimum(weight[-fade:], rise.flip(0))
    return weight


def to_tensor(image: Image.Image) -> torch.Tensor:
    """RGB image to a 1x3xHxW float tensor in [0, 1] (spandrel's convention)."""
    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0)


def to_image(tensor: torch.Tensor) -> Image.Image:
    """A 3xHxW float tensor in [0, 1] to an RGB image, in place (the tensor is spent: no float copies
    of a 4096 px output)."""
    array = tensor.clamp_(0, 1).mul_(255.0).round_().to(torch.uint8).permute(1, 2, 0).numpy()
    return Image.fromarray(np.ascontiguousarray(array))


Model = Callable[[torch.Tensor], torch.Tensor]


def upscale_tiled(model: Model, image: Image.Image, scale: int, *, device: Any = "cpu",
                  dtype: torch.dtype = torch.float32, tile: int = TILE, overlap: int = OVERLAP,
                  keep_going: Callable[[], bool] = lambda: True,
                  on_tile: Callable[[int, int], None] = lambda done, total: None) -> Image.Image | None:
    """``image`` enlarged ``scale`` times by ``model`` (1x3xhxw in [0, 1] → 1x3x(h*s)x(w*s)), one
    tile at a time. None when ``keep_going`` said stop before a tile."""
    source = to_tensor(image)
    _, _, height, width = source.shape
    overlap = max(0, min(overlap, tile // 4))
    ys, xs = tile_starts(height, tile, overlap), tile_starts(width, tile, overlap)
    total = len(ys) * len(xs)
    out = torch.zeros(3, height * scale, width * scale)
    weights = torch.zeros(1, height * scale, width * scale)
    fade = overlap * scale
    done = 0
    for y in ys:
        for x in xs:
            if not keep_going():
                return None
            th, tw = min(tile, height - y), min(tile, width - x)
            piece = source[:, :, y:y + th, x:x + tw].to(device=device, dtype=dtype)
            with torch.inference_mode():
                result = model(piece)[0].float().cpu()
            del piece
            ramp_y = _ramp(th * scale, fade, start=y > 0, end=y + th < height)
            ramp_x = _ramp(tw * scale, fade, start=x > 0, end=x + tw < width)
            weight = (ramp_y[:, None] * ramp_x[None, :]).unsqueeze(0)
            ys_, xs_ = slice(y * scale, (y + th) * scale), slice(x * scale, (x + tw) * scale)
            out[:, ys_, xs_] += result * weight
            weights[:, ys_, xs_] += weight
            done += 1
            on_tile(done, total)
    out.div_(weights)
    del weights
    return to_image(out)
