"""How an input image is stored: the upload's own bytes where the pipeline reads them back as the
very picture the member sent, else a lossless file; either way the job sees the same pixels."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cogs.utils.inputs import storable
from inference.imaging import decode_image
from inference.jobs import AnimeJob, InpaintJob
from inference.prepare import prepare

ORIENTATION = 0x0112


def encoded(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def noise(size: tuple[int, int], mode: str = "RGB", seed: int = 0) -> Image.Image:
    channels = {"RGB": 3, "RGBA": 4}.get(mode)
    shape = (size[1], size[0], channels) if channels else (size[1], size[0])
    image = Image.fromarray(np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8))
    assert image.mode == mode
    return image


def rotated_jpeg() -> bytes:
    """A phone photo: stored landscape, shown portrait (EXIF orientation 6)."""
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    return encoded(noise((64, 40)), "JPEG", quality=90, exif=exif)


def sixteen_bit_png() -> bytes:
    values = np.random.default_rng(1).integers(0, 65536, (24, 32), dtype=np.uint16)
    return encoded(Image.fromarray(values), "PNG")


def transparent_png() -> bytes:
    return encoded(noise((40, 30), "RGBA"), "PNG")


def gif() -> bytes:
    return encoded(noise((40, 30)).convert("P"), "GIF")


def seen_by_the_job(path: Path, size: tuple[int, int]) -> Image.Image:
    """What the engine hands the pipeline (inference/prepare.py), at the job's own size."""
    job = AnimeJob(job_id="j", owner=1, init_image=str(path))
    prepared = prepare(job).init_image
    assert prepared is not None and prepared.size == size
    return prepared


@pytest.mark.parametrize(("data", "kept"), [
    pytest.param(encoded(noise((48, 32)), "PNG"), ".png", id="png"),
    pytest.param(encoded(noise((48, 32)), "JPEG", quality=92), ".jpg", id="jpeg"),
    pytest.param(rotated_jpeg(), ".jpg", id="jpeg with EXIF orientation"),
    pytest.param(encoded(noise((48, 32)), "WEBP", quality=80), ".webp", id="lossy webp"),
    pytest.param(encoded(noise((48, 32)).convert("L"), "PNG"), ".png", id="greyscale png"),
    pytest.param(transparent_png(), None, id="transparency"),
    pytest.param(sixteen_bit_png(), None, id="16-bit"),
    pytest.param(gif(), None, id="gif"),
])
def test_an_upload_is_kept_only_where_it_reads_back_unchanged(tmp_path: Path, data: bytes, kept: str | None) -> None:
    image = decode_image(data)
    stored, suffix = storable(image, data)
    if kept is not None:
        assert (stored, suffix) == (data, kept)
    else:
        assert stored != data and suffix == ".webp"
    path = tmp_path / f"input{suffix}"
    path.write_bytes(stored)
    assert seen_by_the_job(path, image.size).tobytes() == image.tobytes()


def test_a_picture_wider_than_webp_allows_is_stored_as_png(tmp_path: Path) -> None:
    image = noise((16_500, 4))
    stored, suffix = storable(image, None)
    assert suffix == ".png"
    path = tmp_path / "wide.png"
    path.write_bytes(stored)
    assert seen_by_the_job(path, image.size).tobytes() == image.tobytes()


def test_a_mask_is_stored_losslessly(tmp_path: Path) -> None:
    source = noise((40, 32))
    mask = noise((40, 32), "L", seed=3)
    paths = []
    for name, (data, suffix) in (("source", storable(source, None)), ("mask", storable(mask, None))):
        paths.append(tmp_path / f"{name}{suffix}")
        paths[-1].write_bytes(data)
    job = InpaintJob(job_id="j", owner=1, width=40, height=32, init_image=str(paths[0]), mask_image=str(paths[1]))
    prepared = prepare(job)
    assert prepared.init_image is not None and prepared.init_image.tobytes() == source.tobytes()
    assert prepared.mask_image is not None and prepared.mask_image.tobytes() == mask.tobytes()


def test_a_noisy_photo_is_not_blown_up(tmp_path: Path) -> None:
    """The report: a 7 MiB noisy JPEG became a 46 MiB PNG. Kept as it came, it takes what it took."""
    photo = encoded(noise((600, 400), seed=9), "JPEG", quality=97)
    stored, suffix = storable(decode_image(photo), photo)
    assert suffix == ".jpg" and len(stored) == len(photo)
    assert len(encoded(decode_image(photo), "PNG")) > 2 * len(photo)  # what storing a PNG cost
