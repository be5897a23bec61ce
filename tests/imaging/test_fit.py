"""Results fit Discord's upload limit; previews are small."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from inference.imaging import encode_png, fit_for_upload, read_parameters, thumbnail_png

TEXT = "a noisy field\nSteps: 4, Sampler: Euler a, CFG scale: 7.0, Seed: 1, Size: 192x128, Model: m"


def noise(w: int, h: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def gradient(w: int, h: int) -> Image.Image:
    x = np.linspace(0, 255, w, dtype=np.float32)[None, :].repeat(h, 0)
    y = np.linspace(0, 255, h, dtype=np.float32)[:, None].repeat(w, 1)
    return Image.fromarray(np.stack([x, y, (x + y) / 2], -1).astype(np.uint8))


def opened(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def test_a_png_that_fits_is_returned_unchanged() -> None:
    png = encode_png(noise(32, 32), TEXT)
    assert fit_for_upload(png, len(png), stem="cat") == (png, "cat.png")


def test_lossless_webp_comes_first_and_keeps_every_pixel() -> None:
    image = gradient(192, 128)
    png = encode_png(image, TEXT)
    data, name = fit_for_upload(png, len(png) - 1, stem="grid")
    assert name == "grid.webp" and len(data) < len(png)
    assert np.array_equal(np.asarray(opened(data).convert("RGB")), np.asarray(image))
    assert read_parameters(data) == TEXT


@pytest.mark.parametrize(("limit", "name", "width"), [
    (60_000, "image.webp", 192),  # lossy WebP at quality 90
    (21_100, "image.jpg", 192),  # JPEG at quality 90, full size (WebP q90 is ~21.3 kB here)
    (8_000, "image.jpg", 108),  # JPEG after two 0.75 downscales
])
def test_tight_limits_give_a_decodable_image_within_the_limit(limit: int, name: str, width: int) -> None:
    png = encode_png(noise(192, 128), TEXT)
    assert len(png) > limit
    data, filename = fit_for_upload(png, limit)
    assert len(data) <= limit
    assert filename == name
    image = opened(data)
    assert image.format == ("JPEG" if name.endswith(".jpg") else "WEBP")
    assert image.size == (width, width * 2 // 3)
    assert read_parameters(data) == TEXT


def test_downscaling_steps_by_three_quarters() -> None:
    png = encode_png(noise(256, 256))
    data, name = fit_for_upload(png, 40_000)
    assert name == "image.jpg"
    assert opened(data).width in {192, 144, 108, 81}


def test_rgba_png_is_flattened_for_jpeg() -> None:
    rgba = noise(128, 128).convert("RGBA")
    rgba.putalpha(128)
    data, name = fit_for_upload(encode_png(rgba), 6_000)
    assert len(data) <= 6_000 and opened(data).mode in ("RGB", "RGBA")


def test_impossible_limit_raises() -> None:
    with pytest.raises(ValueError, match="cannot fit"):
        fit_for_upload(encode_png(noise(128, 128)), 100)


def test_thumbnail_png_is_small_and_never_enlarged() -> None:
    thumb = opened(thumbnail_png(noise(200, 100), 64))
    assert thumb.format == "PNG" and thumb.size == (64, 32)
    assert opened(thumbnail_png(noise(20, 10), 64)).size == (20, 10)
    assert opened(thumbnail_png(Image.new("RGBA", (80, 80)), 40)).mode == "RGB"


def test_thumbnail_png_needs_a_positive_side() -> None:
    with pytest.raises(ValueError):
        thumbnail_png(noise(8, 8), 0)
