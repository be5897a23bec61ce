"""Control maps from a member's picture: white on black, at the job's size, where the picture's
shapes are."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from config import ControlNetConfig, ModelConfig
from inference.control.loading import load_estimator
from inference.control.preprocess import canny, control_map, depth, is_drawing, lineart, scribble


def drawn_square(size: int = 96, *, ink: str = "white", paper: str = "black") -> Image.Image:
    image = Image.new("RGB", (size, size), paper)
    ImageDraw.Draw(image).rectangle((size // 4, size // 4, 3 * size // 4, 3 * size // 4), outline=ink, width=2)
    return image


def filled_square(size: int = 96) -> Image.Image:
    image = Image.new("RGB", (size, size), (40, 40, 40))
    ImageDraw.Draw(image).rectangle((24, 24, 71, 71), fill=(220, 220, 220))
    return image


def white(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("L")) > 127


def test_canny_of_a_square_has_edges_on_its_borders_only() -> None:
    edges = white(canny(filled_square(), (64, 64)))  # resized to the job's size: the square spans 16..47
    assert edges.shape == (64, 64)
    border = np.zeros_like(edges)
    border[14:50, 14:50] = True
    border[18:46, 18:46] = False
    assert edges[border].sum() > 80  # the four sides, about 4 x 30 pixels
    assert not edges[~border].any()  # nothing inside the square, nothing outside it


def test_maps_are_three_channel_white_on_black_at_the_job_size() -> None:
    for make in (canny, scribble, lineart):
        picture = make(filled_square(), (64, 48))
        assert picture.mode == "RGB" and picture.size == (64, 48)
        assert white(picture).mean() < 0.5  # mostly black


def test_scribble_inverts_a_drawing_with_dark_lines_on_white() -> None:
    dark_on_white = white(scribble(drawn_square(ink="black", paper="white"), (96, 96)))
    white_on_black = white(scribble(drawn_square(), (96, 96)))
    assert dark_on_white[48, 24] and not dark_on_white[48, 48] and not dark_on_white[5, 5]
    assert np.array_equal(dark_on_white, white_on_black)


def test_scribble_strokes_are_thicker_than_the_drawing() -> None:
    strokes = white(scribble(drawn_square(), (256, 256)))
    thin = white(drawn_square(256))
    assert strokes.sum() > 1.5 * thin.sum()
    assert thin[strokes].sum() == thin.sum()  # every drawn pixel is inside a stroke


def test_scribble_of_a_photo_is_its_edges() -> None:
    photo = filled_square()
    noise = np.random.default_rng(0).integers(0, 30, (96, 96, 3), dtype=np.uint8)
    photo = Image.fromarray(np.clip(np.asarray(photo, dtype=np.int16) + noise, 0, 255).astype(np.uint8))
    assert not is_drawing(np.asarray(photo.convert("L")))
    strokes = white(scribble(photo, (96, 96)))
    assert strokes[24, 48] and not strokes[48, 48] and not strokes[5, 5]


def test_lineart_draws_white_lines_where_the_picture_has_dark_lines() -> None:
    lines = white(lineart(drawn_square(ink="black", paper="white"), (96, 96)))
    assert lines[24, 48] and lines[48, 24]
    assert not lines[48, 48] and not lines[5, 5]


def test_a_ready_map_is_only_resized() -> None:
    picture = control_map("pose", drawn_square(), (64, 32))
    assert picture.size == (64, 32)


def test_depth_map_comes_from_the_configured_estimator(tiny_depth_dir: Path) -> None:
    entry = ControlNetConfig(source="unused", mode="depth", preprocessor=str(tiny_depth_dir))
    estimator = load_estimator(ModelConfig(source="unused"), entry, torch.device("cpu"), Path("."))
    assert estimator is not None
    picture = depth(estimator, filled_square(), (64, 48))
    values = np.asarray(picture)
    assert picture.mode == "RGB" and picture.size == (64, 48)
    assert values.min() == 0 and values.max() == 255  # normalised: nearest white, farthest black
    assert np.array_equal(values[..., 0], values[..., 2])
    assert np.array_equal(np.asarray(control_map("depth", filled_square(), (64, 48), estimator)), values)
