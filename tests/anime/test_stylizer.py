"""face2paint end to end with random weights: crop around the face, whole-picture fallback, sizes, values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from inference.anime import AnimeOutput, AnimeStylizer, AnimeUnavailable, WeightStore
from inference.anime.stylizer import NO_FACE_NOTE, to_image, to_tensor, whole_image_size

STYLE = "face_paint_512_v2"
SIZE = 64  # small crops keep the tests fast; the 512 default is exercised by the generator tests


class CountingStore(WeightStore):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.loads: list[str] = []

    def load_state_dict(self, style: str) -> dict[str, torch.Tensor]:
        self.loads.append(style)
        return super().load_state_dict(style)


@pytest.fixture
def store(tmp_path: Path, weights_file: Path) -> CountingStore:
    return CountingStore(tmp_path / "cache", overrides={STYLE: str(weights_file), "paprika": str(weights_file)},
                         urls={})


@pytest.fixture
def stylizer(store: CountingStore) -> AnimeStylizer:
    return AnimeStylizer(store, device="cpu")


def gradient(width: int, height: int) -> Image.Image:
    ramp = np.tile(np.linspace(0, 255, width, dtype=np.uint8), (height, 1))
    return Image.fromarray(np.stack([ramp, ramp, ramp[::-1]], axis=-1))


def test_a_portrait_is_cropped_around_the_face_and_painted_at_the_requested_size(stylizer: AnimeStylizer) -> None:
    out = stylizer.stylize(Image.fromarray(data.astronaut()), STYLE, size=SIZE)
    assert isinstance(out, AnimeOutput)
    assert out.face_found and out.note == "" and out.box is not None
    left, top, right, bottom = out.box
    assert right - left == bottom - top and left <= 177 and top <= 67 and right >= 270 and bottom >= 160
    assert out.image.mode == "RGB" and out.image.size == (SIZE, SIZE)


def test_no_face_paints_the_whole_picture_and_says_so(stylizer: AnimeStylizer) -> None:
    out = stylizer.stylize(gradient(100, 60), STYLE, size=SIZE)
    assert not out.face_found and out.box is None
    assert out.note == NO_FACE_NOTE == "No face found, so the whole picture was painted."
    assert out.image.size == (100, 60)


def test_whole_image_on_request_ignores_the_face_and_adds_no_note(stylizer: AnimeStylizer) -> None:
    photo = Image.fromarray(data.astronaut()).resize((150, 100))
    out = stylizer.stylize(photo, STYLE, whole_image=True, size=SIZE)
    assert not out.face_found and out.note == "" and out.box is None
    assert out.image.size == (128, 84)  # long side capped at 2 * size, both sides multiples of 4


def test_the_stylizer_output_is_the_generator_run_on_the_resized_picture(stylizer: AnimeStylizer) -> None:
    picture = gradient(80, 48)
    out = stylizer.stylize(picture, STYLE, whole_image=True, size=SIZE)
    with torch.inference_mode():
        expected = to_image(stylizer.generator(STYLE)(to_tensor(picture)))
    assert np.array_equal(np.asarray(out.image), np.asarray(expected))


def test_pictures_with_alpha_or_in_grey_are_painted_as_rgb(stylizer: AnimeStylizer) -> None:
    for mode in ("RGBA", "L"):
        out = stylizer.stylize(gradient(64, 64).convert(mode), STYLE, size=SIZE)
        assert out.image.mode == "RGB" and out.image.size == (64, 64)


def test_each_style_is_loaded_once_and_kept(stylizer: AnimeStylizer, store: CountingStore) -> None:
    for _ in range(2):
        stylizer.stylize(gradient(32, 32), STYLE, size=32)
    stylizer.stylize(gradient(32, 32), "paprika", size=32)
    assert store.loads == [STYLE, "paprika"]
    model = stylizer.generator(STYLE)
    assert not model.training and not any(p.requires_grad for p in model.parameters())


def test_unknown_style_is_refused_with_the_list(stylizer: AnimeStylizer) -> None:
    with pytest.raises(AnimeUnavailable, match="face_paint_512_v2, face_paint_512_v1, celeba_distill, paprika"):
        stylizer.stylize(gradient(32, 32), "van_gogh")


def test_missing_weights_reach_the_member_as_the_short_message(tmp_path: Path) -> None:
    stylizer = AnimeStylizer(WeightStore(tmp_path, urls={"celeba_distill": ("http://127.0.0.1:9/x.pt",)}, timeout=5))
    with pytest.raises(AnimeUnavailable) as err:
        stylizer.stylize(gradient(32, 32), "celeba_distill")
    assert str(err.value) == "The anime filter is not set up on this server yet; an admin can fix it."
    assert str(tmp_path / "celeba_distill.pt") in err.value.detail


def test_weights_of_another_architecture_are_refused(tmp_path: Path, weights_file: Path) -> None:
    state = torch.load(weights_file, map_location="cpu", weights_only=True)
    state.pop("out_layer.0.weight")
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "other.pt")
    stylizer = AnimeStylizer(WeightStore(tmp_path, overrides={STYLE: str(tmp_path / "other.pt")}))
    with pytest.raises(AnimeUnavailable, match="does not fit the AnimeGAN2 generator") as err:
        stylizer.stylize(gradient(32, 32), STYLE)
    assert str(tmp_path) not in str(err.value) and str(tmp_path / "other.pt") in err.value.detail


@pytest.mark.parametrize(("size_in", "size_out"), [
    ((300, 200), (512, 340)),     # small: grown to a 512 long side
    ((700, 500), (700, 500)),     # already within 512..1024: kept
    ((701, 503), (700, 504)),     # rounded to multiples of 4
    ((4000, 3000), (1024, 768)),  # big: shrunk to a 1024 long side
    ((3000, 4000), (768, 1024)),  # portrait orientation
    ((6000, 10), (1024, 16)),     # a sliver still gets a usable short side
])
def test_whole_image_size_keeps_the_long_side_between_512_and_1024(size_in: tuple[int, int],
                                                                     size_out: tuple[int, int]) -> None:
    assert whole_image_size(*size_in) == size_out


def test_output_values_in_zero_to_one_map_onto_the_full_byte_range() -> None:
    raw = torch.tensor([-3.0, -1.0, 0.0, 1.0, 3.0]).view(1, 1, 1, 5).expand(1, 3, 1, 5)
    image = to_image(raw)
    assert image.mode == "RGB" and image.size == (5, 1)
    assert np.asarray(image)[0, :, 0].tolist() == [0, 0, 128, 255, 255]


def test_input_bytes_map_onto_minus_one_to_one() -> None:
    picture = Image.fromarray(np.array([[[0, 255, 51]]], dtype=np.uint8))
    assert to_tensor(picture).flatten().tolist() == pytest.approx([-1.0, 1.0, -0.6])
