"""Face finding on a real photograph, and the square crop around the face."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from skimage import data

from inference.anime import face as face_module
from inference.anime import face_crop_box, find_face

# Eileen Collins' face in skimage's 512x512 astronaut photograph, as (x, y, w, h).
ASTRONAUT_FACE = (177, 67, 93, 93)


def astronaut() -> Image.Image:
    return Image.fromarray(data.astronaut())


def gradient(width: int = 160, height: int = 120) -> Image.Image:
    ramp = np.tile(np.linspace(0, 255, width, dtype=np.uint8), (height, 1))
    return Image.fromarray(np.stack([ramp, ramp[::-1], np.full_like(ramp, 90)], axis=-1))


def overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def contains(box: tuple[int, int, int, int], face: tuple[int, int, int, int]) -> bool:
    left, top, right, bottom = box
    x, y, w, h = face
    return left <= x and top <= y and x + w <= right and y + h <= bottom


def test_finds_the_face_in_a_real_photograph() -> None:
    face = find_face(astronaut())
    assert face is not None
    assert overlap(face, ASTRONAUT_FACE) > 0.7


def test_big_photographs_are_searched_downscaled_and_answered_in_full_size_pixels() -> None:
    face = find_face(astronaut().resize((2048, 2048)))
    assert face is not None
    assert overlap(face, tuple(4 * v for v in ASTRONAUT_FACE)) > 0.7


@pytest.mark.parametrize("image", [gradient(), Image.new("RGB", (64, 64), (200, 40, 40))], ids=["gradient", "flat"])
def test_no_face_in_pictures_without_one(image: Image.Image) -> None:
    assert find_face(image) is None


def test_crop_box_is_a_square_around_the_face_with_room_for_hair_and_chin() -> None:
    image = astronaut()
    face = find_face(image)
    assert face is not None
    left, top, right, bottom = box = face_crop_box(face, image.size)
    assert right - left == bottom - top
    assert contains(box, face)
    assert right - left >= 1.6 * face[2]
    assert face[1] - top > bottom - (face[1] + face[3])  # more room above (hair) than below (chin)
    assert 0 <= left and 0 <= top and right <= image.width and bottom <= image.height


def test_crop_box_moves_inside_the_image_near_an_edge() -> None:
    assert face_crop_box((0, 0, 50, 50), (100, 100)) == (0, 0, 90, 90)
    assert face_crop_box((60, 60, 40, 40), (100, 100)) == (28, 28, 100, 100)


def test_crop_box_shrinks_to_the_short_side_and_stays_square() -> None:
    left, top, right, bottom = face_crop_box((40, 5, 50, 50), (200, 60))
    assert (right - left, bottom - top) == (60, 60)
    assert top == 0 and bottom == 60 and left <= 40 and right >= 90


def test_a_broken_opencv_install_says_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(face_module, "CASCADE_FILE", "no_such_cascade.xml")
    face_module._cascade.cache_clear()
    try:
        with pytest.raises(RuntimeError, match="no_such_cascade.xml"):
            find_face(astronaut())
    finally:
        monkeypatch.undo()
        face_module._cascade.cache_clear()
