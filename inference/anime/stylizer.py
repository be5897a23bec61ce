"""face2paint: find the face, crop a square around it, paint it with the style's generator.

Runs on the executor's one inference thread. Each style's generator is loaded the first time it
is asked for and then kept, so later jobs of that style cost only the forward pass. Weights are
read from disk only (never downloaded here): a style whose file arrives later works from then on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from inference.anime.face import Box, face_crop_box, find_face
from inference.anime.generator import Generator
from inference.anime.weights import AnimeUnavailable, WeightStore, check_style

log = logging.getLogger(__name__)

NO_FACE_NOTE = "No face found, so the whole picture was painted."
MULTIPLE = 4  # both sides of a whole-image input are multiples of this (the generator halves twice)
MIN_SIDE = 16  # the generator's reflection padding needs a few pixels even after two halvings


@dataclass(frozen=True)
class AnimeOutput:
    """The painted image; ``box`` is the face crop ``(left, top, right, bottom)`` in the input, if any."""

    image: Image.Image
    face_found: bool
    note: str
    box: Box | None = None


def whole_image_size(width: int, height: int, size: int = 512) -> tuple[int, int]:
    """Scale so the long side lies in ``[size, 2 * size]`` (small images grow, big ones shrink), both sides
    multiples of 4. Extremely thin images get a short side of at least ``MIN_SIDE``."""
    long_side = max(width, height)
    target = min(max(long_side, size), 2 * size)
    scale = target / long_side

    def fit(side: int) -> int:
        return max(MIN_SIDE, round(side * scale / MULTIPLE) * MULTIPLE)

    return fit(width), fit(height)


def to_tensor(image: Image.Image) -> torch.Tensor:
    """RGB PIL image to a 1x3xHxW float tensor in [-1, 1]."""
    array = np.asarray(image.convert("RGB"), dtype=np.float32)
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0) / 127.5 - 1.0


def to_image(output: torch.Tensor) -> Image.Image:
    """A generator output (1x3xHxW in [-1, 1]) to an RGB PIL image, rounding [0, 1] onto 0..255."""
    values = (output[0].detach().float().cpu() * 0.5 + 0.5).clamp(0, 1)
    array = (values.permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)
    return Image.fromarray(array)


class AnimeStylizer:
    """Paints images in one of :data:`~inference.anime.weights.STYLES`, keeping each loaded generator."""

    def __init__(self, store: WeightStore, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32) -> None:
        self.store = store
        self.device = torch.device(device)
        self.dtype = dtype
        self._generators: dict[str, Generator] = {}

    def generator(self, style: str) -> Generator:
        """The style's generator, loaded strictly from its weights on first use."""
        check_style(style)
        model = self._generators.get(style)
        if model is None:
            state = self.store.load_state_dict(style)
            model = Generator()
            try:
                model.load_state_dict(state, strict=True)
            except RuntimeError as exc:
                detail = (f"AnimeGAN2 style {style}: {self.store.location(style)} does not fit the AnimeGAN2 "
                          "generator (wrong or damaged file); replace it")
                log.warning("%s", detail)
                raise AnimeUnavailable(f"The anime style {style} is unavailable: its weights file does not fit "
                                       "the AnimeGAN2 generator. An admin can fix it.", detail=detail) from exc
            model.requires_grad_(False)
            model = model.to(device=self.device, dtype=self.dtype).eval()
            self._generators[style] = model
        return model

    def stylize(self, image: Image.Image, style: str, *, whole_image: bool = False, size: int = 512) -> AnimeOutput:
        """Paint the largest face (a ``size`` square around it) or, when asked or when there is no face,
        the whole picture (long side ``size``..``2 * size``)."""
        model = self.generator(style)  # unknown style or missing weights fail before any other work
        image = image.convert("RGB")
        if not whole_image:
            face = find_face(image)
            if face is not None:
                box = face_crop_box(face, image.size)
                crop = image.crop(box).resize((size, size), Image.Resampling.LANCZOS)
                return AnimeOutput(self._paint(model, crop), face_found=True, note="", box=box)
        resized = image.resize(whole_image_size(*image.size, size=size), Image.Resampling.LANCZOS)
        note = "" if whole_image else NO_FACE_NOTE
        return AnimeOutput(self._paint(model, resized), face_found=False, note=note, box=None)

    def _paint(self, model: Generator, image: Image.Image) -> Image.Image:
        with torch.inference_mode():
            output = model(to_tensor(image).to(device=self.device, dtype=self.dtype))
        return to_image(output)
