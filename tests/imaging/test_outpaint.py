"""Canvases and masks for zoom-out and pan: sizes, where the original sits, the feathered band,
exact original pixels, and the scale-down rule."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from inference.imaging import composite_unmasked
from inference.imaging.outpaint import (
    band_width,
    outpaint_canvas,
    outpaint_mask,
    plan_pan,
    plan_zoom,
    prepare_outpaint,
)


def noise(size: tuple[int, int], seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB")


@pytest.mark.parametrize(("size", "factor", "canvas", "box"), [
    ((64, 64), 2.0, (128, 128), (32, 32, 96, 96)),
    ((64, 64), 1.5, (96, 96), (16, 16, 80, 80)),
    ((64, 48), 1.5, (96, 72), (16, 12, 80, 60)),
    ((80, 64), 1.5, (120, 96), (20, 16, 100, 80)),
])
def test_a_zoom_out_centres_the_original_in_a_canvas_grown_by_the_factor(size, factor, canvas, box) -> None:
    plan = plan_zoom(size, factor, 1024)
    assert plan.canvas == canvas and plan.box == box and plan.scale == 1.0
    assert plan.note(1024) == ""


def test_a_canvas_side_is_rounded_up_to_a_multiple_of_8() -> None:
    plan = plan_zoom((72, 72), 1.5, 1024)  # 108 px wanted
    assert plan.canvas == (112, 112) and plan.placed_size == (72, 72)


@pytest.mark.parametrize(("direction", "canvas", "box"), [
    ("left", (96, 64), (32, 0, 96, 64)),
    ("right", (96, 64), (0, 0, 64, 64)),
    ("up", (64, 96), (0, 32, 64, 96)),
    ("down", (64, 96), (0, 0, 64, 64)),
])
def test_a_pan_adds_half_the_image_on_the_arrows_side(direction, canvas, box) -> None:
    plan = plan_pan((64, 64), direction, 1024)
    assert plan.canvas == canvas and plan.box == box


def test_a_canvas_over_the_models_limit_is_scaled_down_and_says_so() -> None:
    plan = plan_zoom((128, 128), 2.0, 128)
    assert plan.canvas == (128, 128) and plan.placed_size == (64, 64) and plan.scale == 0.5
    assert plan.scaled_down
    note = plan.note(128)
    assert "256x256" in note and "128 px limit" in note and "scaled down to 128x128" in note
    wide = plan_pan((128, 96), "right", 128)
    assert max(wide.canvas) <= 128 and all(side % 8 == 0 for side in wide.canvas) and wide.scaled_down


def test_the_mask_repaints_the_new_area_and_keeps_the_original_outside_a_feathered_band() -> None:
    plan = plan_zoom((64, 64), 2.0, 1024)
    band = band_width(plan)
    assert band == 4
    mask = np.asarray(outpaint_mask(plan))
    x0, y0, x1, y1 = plan.box
    outside = np.ones(mask.shape, bool)
    outside[y0:y1, x0:x1] = False
    assert (mask[outside] == 255).all()
    assert (mask[y0 + band:y1 - band, x0 + band:x1 - band] == 0).all()  # exactly kept deeper in
    ramp = mask[32 + 32, x0:x0 + band + 1]  # a row through the middle, from the left edge inwards
    assert ramp[0] > 128 and (np.diff(ramp.astype(int)) < 0).all() and ramp[band] == 0


def test_a_pan_feathers_only_the_side_that_meets_new_area() -> None:
    plan = plan_pan((64, 64), "left", 1024)
    mask = np.asarray(outpaint_mask(plan))
    x0 = plan.box[0]
    assert (mask[:, :x0] == 255).all()
    assert (mask[:, x0] > 128).all() and (mask[:, x0 + band_width(plan):] == 0).all()
    assert (mask[0, x0 + 10:] == 0).all() and (mask[-1, x0 + 10:] == 0).all()  # the canvas edge is no seam


def test_the_canvas_holds_the_original_exactly_and_fills_the_new_area_with_its_edge_colours() -> None:
    original = Image.new("RGB", (64, 64), (200, 30, 30))
    original.paste((30, 30, 200), (0, 0, 32, 64))  # blue left half, red right half
    plan = plan_zoom((64, 64), 2.0, 1024)
    canvas = np.asarray(outpaint_canvas(original, plan)).astype(int)
    x0, y0, x1, y1 = plan.box
    assert (canvas[y0:y1, x0:x1] == np.asarray(original)).all()
    assert canvas[64, 2, 2] > 150 and canvas[64, 2, 0] < 80  # far left is blue, carried out from the left edge
    assert canvas[64, 125, 0] > 150 and canvas[64, 125, 2] < 80  # far right is red


def test_inpainting_output_composited_keeps_every_original_pixel_outside_the_band() -> None:
    original = noise((64, 64))
    plan = plan_pan((64, 64), "right", 1024)
    canvas, mask = prepare_outpaint(original, plan)
    generated = noise(canvas.size, seed=1)  # stands in for what the pipeline paints
    result = np.asarray(composite_unmasked(canvas, generated, mask))
    band = band_width(plan)
    x0, y0, x1, y1 = plan.box
    kept = result[y0:y1, x0:x1 - band]
    assert (kept == np.asarray(original)[:, :64 - band]).all()
    assert (result[:, x1:] == np.asarray(generated)[:, x1:]).all()


def test_a_scaled_down_canvas_keeps_the_scaled_original_exactly() -> None:
    original = noise((128, 128))
    plan = plan_zoom((128, 128), 2.0, 128)
    canvas, mask = prepare_outpaint(original, plan)
    expected = original.resize((64, 64), Image.Resampling.LANCZOS)
    x0, y0, x1, y1 = plan.box
    assert canvas.size == (128, 128) and (np.asarray(canvas)[y0:y1, x0:x1] == np.asarray(expected)).all()


def test_bad_plans_are_programming_errors() -> None:
    with pytest.raises(ValueError):
        plan_zoom((64, 64), 1.0, 1024)
    with pytest.raises(ValueError):
        plan_pan((64, 64), "sideways", 1024)
