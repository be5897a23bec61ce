"""Several results in one picture."""

from __future__ import annotations

import pytest
from PIL import Image

from inference.imaging import cell_box, grid_shape, make_grid

COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255)]


@pytest.mark.parametrize(("n", "shape"), [(1, (1, 1)), (2, (2, 1)), (3, (2, 2)), (4, (2, 2)), (5, (3, 2)),
                                          (6, (3, 2)), (9, (3, 3)), (10, (4, 3))])
def test_grid_shape(n: int, shape: tuple[int, int]) -> None:
    assert grid_shape(n) == shape


def test_grid_shape_needs_an_image() -> None:
    with pytest.raises(ValueError):
        grid_shape(0)


def test_cell_box_fills_rows_first() -> None:
    assert [cell_box(i, 4, (10, 20)) for i in range(4)] == [
        (0, 0, 10, 20), (10, 0, 20, 20), (0, 20, 10, 40), (10, 20, 20, 40)]


@pytest.mark.parametrize("index", [-1, 3])
def test_cell_box_out_of_range(index: int) -> None:
    with pytest.raises(IndexError):
        cell_box(index, 3, (8, 8))


def test_three_images_make_a_two_by_two_grid_with_a_black_cell() -> None:
    images = [Image.new("RGB", (10, 6), c) for c in COLOURS[:3]]
    grid = make_grid(images)
    assert grid.mode == "RGB" and grid.size == (20, 12)
    for index, colour in enumerate(COLOURS[:3]):
        left, top, right, bottom = cell_box(index, 3, (10, 6))
        assert grid.getpixel((left, top)) == colour  # no gaps: cells start exactly at their box
        assert grid.getpixel((right - 1, bottom - 1)) == colour
    assert grid.crop(cell_box(3, 4, (10, 6))).getextrema() == ((0, 0), (0, 0), (0, 0))


def test_single_image_grid_is_the_image() -> None:
    image = Image.new("RGB", (7, 5), (1, 2, 3))
    grid = make_grid([image])
    assert grid.size == (7, 5) and grid.getpixel((3, 3)) == (1, 2, 3)


def test_cells_take_the_first_images_size_and_rgb() -> None:
    grid = make_grid([Image.new("RGB", (8, 8), (255, 0, 0)), Image.new("L", (16, 4), 255)])
    assert grid.size == (16, 8)
    assert grid.getpixel((12, 4)) == (255, 255, 255)


def test_empty_list_is_an_error() -> None:
    with pytest.raises(ValueError):
        make_grid([])
