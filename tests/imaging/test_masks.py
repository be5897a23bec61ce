"""Regions and boxes for /paint, feathering, and keeping the unpainted area exactly as it was."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from inference.imaging import (
    REGION_NAMES,
    ImageInputError,
    box_mask,
    composite_unmasked,
    feather,
    mask_coverage,
    parse_box,
    parse_regions,
    region_mask,
)

SIZE = (90, 60)  # divisible by 2, 3 and 4 both ways, so region edges fall on whole pixels


def white_box(mask: Image.Image) -> tuple[int, int, int, int] | None:
    """(left, top, right, bottom) of the white pixels, exclusive, or None."""
    return mask.point(lambda v: 255 if v > 127 else 0).getbbox()


def test_region_names_cover_the_brief() -> None:
    for name in ["left", "right", "top", "bottom", "left-third", "centre-third", "right-third", "top-third",
                 "middle-third", "bottom-third", "centre", "top-left", "top-right", "bottom-left", "bottom-right",
                 "A1", "B2", "C3", "all"]:
        assert name in REGION_NAMES


@pytest.mark.parametrize(("spec", "names"), [
    ("left", ("left",)),
    ("Center", ("centre",)),
    ("center-third, everything", ("centre-third", "all")),
    ("a1+C3  b2", ("A1", "C3", "B2")),
    ("TOP_LEFT,,top-left", ("top-left",)),
])
def test_parse_regions(spec: str, names: tuple[str, ...]) -> None:
    assert parse_regions(spec) == names


@pytest.mark.parametrize("spec", ["leftish", "A4", "D1", "left, sky"])
def test_unknown_region_lists_what_is_valid(spec: str) -> None:
    with pytest.raises(ImageInputError) as excinfo:
        parse_regions(spec)
    text = str(excinfo.value)
    assert text.startswith("I don't know the region")
    assert "A1-C3" in text and "top-left" in text and len(text) < 400


@pytest.mark.parametrize("spec", ["", "  ,+ "])
def test_no_region_named(spec: str) -> None:
    with pytest.raises(ImageInputError, match="Name at least one region"):
        parse_regions(spec)


@pytest.mark.parametrize(("spec", "box"), [
    ("A1", (0, 0, 30, 20)),  # top-left
    ("C1", (60, 0, 90, 20)),  # top-right
    ("A3", (0, 40, 30, 60)),  # bottom-left
    ("B2", (30, 20, 60, 40)),
    ("left", (0, 0, 45, 60)),
    ("bottom", (0, 30, 90, 60)),
    ("centre", (22, 15, 68, 45)),  # middle 50% each way (22.5 rounds to 22, 67.5 to 68)
    ("centre-third", (30, 0, 60, 60)),  # vertical band
    ("middle-third", (0, 20, 90, 40)),  # horizontal band
    ("right-third", (60, 0, 90, 60)),
    ("bottom-right", (45, 30, 90, 60)),
    ("all", (0, 0, 90, 60)),
])
def test_region_pixels(spec: str, box: tuple[int, int, int, int]) -> None:
    mask = region_mask(spec, SIZE)
    assert mask.mode == "L" and mask.size == SIZE
    assert white_box(mask) == box
    assert mask.crop(box).getextrema() == (255, 255)
    assert mask_coverage(mask) == pytest.approx((box[2] - box[0]) * (box[3] - box[1]) / (90 * 60))


def test_regions_combine_as_a_union() -> None:
    mask = region_mask("A1 C3", SIZE)
    assert mask.getpixel((5, 5)) == 255 and mask.getpixel((85, 55)) == 255
    assert mask.getpixel((45, 30)) == 0
    assert mask_coverage(mask) == pytest.approx(2 / 9)


def test_a_third_of_a_tiny_image_is_never_empty() -> None:
    assert mask_coverage(region_mask("left-third", (1, 1))) == 1.0


@pytest.mark.parametrize("spec", ["10,20,50,40", "10 20 50 40", "10%, 20%, 50%, 40%", " 10 ;20, 50%  40 "])
def test_parse_box_forms(spec: str) -> None:
    assert parse_box(spec) == (10, 20, 50, 40)


def test_parse_box_clamps_within_tolerance() -> None:
    assert parse_box("30, 0.5, 70.5, 100") == (30, 0.5, 70, 99.5)


@pytest.mark.parametrize(("spec", "fragment"), [
    ("10, 20, 50", "I found 3 values"),
    ("", "I found 0 values"),
    ("ten, 20, 50, 40", "plain numbers"),
    ("10, 20, 150, 40", "between 0 and 100"),
    ("-5, 20, 50, 40", "between 0 and 100"),
    ("nan, 20, 50, 40", "between 0 and 100"),
    ("10, 20, 0, 40", "no area"),
    ("60, 20, 50, 40", r"past the right edge: 60 \+ 50 is more than 100%"),
    ("0, 70, 50, 40", "past the bottom edge"),
])
def test_parse_box_errors(spec: str, fragment: str) -> None:
    with pytest.raises(ImageInputError, match=fragment):
        parse_box(spec)


def test_box_mask_pixels() -> None:
    mask = box_mask((10, 50, 50, 50), (100, 40))
    assert white_box(mask) == (10, 20, 60, 40)
    assert mask.crop((10, 20, 60, 40)).getextrema() == (255, 255)


def test_feather_keeps_outside_black_and_interior_white() -> None:
    mask = box_mask((25, 25, 50, 50), (128, 128))  # white square 32..96
    soft = np.asarray(feather(mask, 8))
    inside = np.zeros((128, 128), bool)
    inside[32:96, 32:96] = True
    assert soft[~inside].max() == 0
    assert soft[32 + 9:96 - 9, 32 + 9:96 - 9].min() == 255
    edge_row = soft[64, 32:42]
    assert 0 < edge_row[3] < 255 and np.all(np.diff(edge_row.astype(int)) >= 0)  # a ramp, not a step


def test_feather_does_not_soften_the_picture_border() -> None:
    assert np.asarray(feather(region_mask("all", (64, 64)))).min() == 255
    soft = np.asarray(feather(region_mask("left", (64, 64))))
    assert soft[:, :20].min() == 255 and soft[:, 32:].max() == 0


def test_feather_default_radius_is_two_percent_of_short_side() -> None:
    mask = box_mask((20, 20, 60, 60), (400, 300))  # x 80..320, y 60..240
    row = np.asarray(feather(mask))[150]
    assert row[79] == 0 and row[80] < 128 and row[80 + 8] == 255  # radius 6 px


def test_feather_shrinks_its_radius_for_a_small_area() -> None:
    mask = box_mask((45, 45, 4, 4), (500, 500))  # a 20 px square, radius would be 10
    assert mask_coverage(feather(mask)) >= mask_coverage(mask) / 2
    thin = region_mask("A1", (6, 6))  # 2 px: nothing survives any feathering, so it is left sharp
    assert np.array_equal(np.asarray(feather(thin)), np.asarray(thin))


def test_feather_radius_zero_is_unchanged() -> None:
    mask = region_mask("centre", (32, 32))
    assert np.array_equal(np.asarray(feather(mask, 0)), np.asarray(mask))


def test_composite_keeps_unmasked_pixels_exactly() -> None:
    rng = np.random.default_rng(0)
    original = Image.fromarray(rng.integers(0, 256, (60, 90, 3), dtype=np.uint8))
    generated = Image.fromarray(rng.integers(0, 256, (60, 90, 3), dtype=np.uint8))
    mask = feather(region_mask("centre", SIZE), 6)
    out = np.asarray(composite_unmasked(original, generated, mask))
    m = np.asarray(mask)
    assert np.array_equal(out[m == 0], np.asarray(original)[m == 0])
    assert np.array_equal(out[m == 255], np.asarray(generated)[m == 255])
    partial = (m > 0) & (m < 255)
    assert partial.any()
    lo = np.minimum(np.asarray(original), np.asarray(generated))[partial]
    hi = np.maximum(np.asarray(original), np.asarray(generated))[partial]
    assert np.all((lo <= out[partial]) & (out[partial] <= hi))


def test_composite_matches_sizes_to_the_generated_image() -> None:
    original = Image.new("RGB", (40, 40), (255, 0, 0))
    generated = Image.new("RGB", (20, 20), (0, 0, 255))
    out = composite_unmasked(original, generated, region_mask("left", (40, 40)))
    assert out.size == (20, 20)
    assert out.getpixel((2, 10)) == (0, 0, 255) and out.getpixel((17, 10)) == (255, 0, 0)


def test_mask_coverage() -> None:
    assert mask_coverage(Image.new("L", (10, 10), 0)) == 0.0
    assert mask_coverage(Image.new("L", (10, 10), 128)) == 1.0
    assert mask_coverage(Image.new("L", (10, 10), 127)) == 0.0
