"""Several results in one picture: a grid of equal cells, filled row by row."""

from __future__ import annotations

import math

from PIL import Image


def grid_shape(n: int) -> tuple[int, int]:
    """(columns, rows) for ``n`` images: 1 -> 1x1, 2 -> 2x1, 3 and 4 -> 2x2, 5 and 6 -> 3x2, ..."""
    if n < 1:
        raise ValueError(f"a grid needs at least one image, not {n}")
    cols = math.ceil(math.sqrt(n))
    return cols, math.ceil(n / cols)


def cell_box(index: int, n: int, cell_size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The (left, top, right, bottom) pixels of image ``index`` in the grid of ``n`` images."""
    if not 0 <= index < n:
        raise IndexError(f"image {index} is not in a grid of {n}")
    cols, _rows = grid_shape(n)
    w, h = cell_size
    col, row = index % cols, index // cols
    return col * w, row * h, (col + 1) * w, (row + 1) * h


def make_grid(images: list[Image.Image]) -> Image.Image:
    """One RGB image of all ``images``; cells take the first image's size, unused cells stay black."""
    if not images:
        raise ValueError("a grid needs at least one image")
    cell = images[0].size
    cols, rows = grid_shape(len(images))
    grid = Image.new("RGB", (cols * cell[0], rows * cell[1]))
    for index, image in enumerate(images):
        if image.size != cell:
            image = image.resize(cell, Image.Resampling.LANCZOS)
        if image.mode != "RGB":
            image = image.convert("RGB")
        grid.paste(image, cell_box(index, len(images), cell)[:2])
    return grid
