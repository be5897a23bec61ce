"""Frames into animated WebP or GIF, fitted under an upload limit."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from inference.imaging import animation
from inference.imaging.animation import (
    durations,
    encode_animation,
    encode_for_storage,
    fewer,
    fit_animation,
    fit_stored,
    frame_count,
    read_frames,
)
from inference.imaging.pngmeta import read_parameters


def noisy_frames(count: int, size: int = 64) -> list[Image.Image]:
    """Frames that compress badly and all differ (so no encoder merges two of them)."""
    rng = np.random.default_rng(1)
    return [Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(count)]


@pytest.mark.parametrize("fmt", ["webp", "gif"])
def test_every_frame_is_in_the_animation(fmt: str) -> None:
    data = encode_animation(noisy_frames(6), fmt)
    with Image.open(io.BytesIO(data)) as opened:
        assert opened.format == fmt.upper() and opened.n_frames == 6 and opened.size == (64, 64)
        assert opened.info.get("loop") == 0  # loops for ever


def test_a_lossless_stored_morph_keeps_its_frames_exactly_and_its_parameters() -> None:
    frames = noisy_frames(4)
    data = encode_for_storage(frames, parameters="a fox\nSteps: 4, Seed: 9")
    assert read_parameters(data) == "a fox\nSteps: 4, Seed: 9"
    for made, read in zip(frames, read_frames(data), strict=True):
        assert np.array_equal(np.asarray(made), np.asarray(read))


def test_a_stored_morph_too_big_to_keep_lossless_is_stored_lossy() -> None:
    frames = noisy_frames(4)
    exact = encode_for_storage(frames)
    lossy = encode_for_storage(frames, lossless_budget=len(exact) - 1)
    assert len(lossy) < len(exact) and frame_count(lossy) == 4


def test_without_animated_webp_the_animation_is_a_gif(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(animation, "webp_possible", lambda: False)
    data = encode_for_storage(noisy_frames(3))
    assert data[:6] == b"GIF89a" and frame_count(data) == 3
    assert encode_animation(noisy_frames(2))[:3] == b"GIF"


def test_the_ends_are_held_longer_and_the_loop_keeps_its_length() -> None:
    times = durations(6, 1600)
    assert times[0] == times[-1] == 2 * times[1] and abs(sum(times) - 1600) <= 6


def test_fewer_frames_keeps_the_first_and_the_last() -> None:
    frames = noisy_frames(8, 8)
    kept = fewer(frames)
    assert kept[0] is frames[0] and kept[-1] is frames[-1] and len(kept) == 5
    assert fewer(frames[:2]) == frames[:2]


def test_an_animation_that_fits_goes_out_as_it_is() -> None:
    data = encode_animation(noisy_frames(5))
    fitted = fit_stored(data, len(data))
    assert fitted.data is data and fitted.frames == 5 and fitted.note == ""


def test_too_big_it_loses_frames_first_then_size_and_says_so() -> None:
    frames = noisy_frames(8)
    full = encode_animation(frames)
    halved = fit_animation(frames, int(len(full) * 0.7), encoded=full)
    assert halved.frames == 5 and halved.size == (64, 64) and len(halved.data) <= len(full) * 0.7
    assert frame_count(halved.data) == 5 and "5 of its 8 frames" in halved.note
    smaller = fit_animation(frames, len(full) // 3, encoded=full)
    assert smaller.size[0] < 64 and "instead of 64x64" in smaller.note and len(smaller.data) <= len(full) // 3
    with Image.open(io.BytesIO(smaller.data)) as opened:
        assert opened.size == smaller.size


def test_a_refitted_webp_keeps_its_parameters() -> None:
    frames = noisy_frames(6)
    stored = encode_animation(frames, parameters="Seed: 5")
    fitted = fit_stored(stored, len(stored) // 2)
    assert len(fitted.data) <= len(stored) // 2 and read_parameters(fitted.data) == "Seed: 5"


def test_an_animation_that_cannot_fit_at_all_is_an_error() -> None:
    with pytest.raises(ValueError, match="cannot fit"):
        fit_animation(noisy_frames(4), 500)
