"""AnimeGAN2 face2paint: the generator, its weights, face finding and the stylizer the executor runs.

Importing this package downloads nothing and loads no model: weights are fetched by
:class:`WeightStore` and generators built by :class:`AnimeStylizer` on first use.
"""

from __future__ import annotations

from inference.anime.face import face_crop_box, find_face
from inference.anime.generator import Generator
from inference.anime.stylizer import AnimeOutput, AnimeStylizer
from inference.anime.weights import STYLES, AnimeUnavailable, WeightStore

__all__ = [
    "STYLES",
    "AnimeOutput",
    "AnimeStylizer",
    "AnimeUnavailable",
    "Generator",
    "WeightStore",
    "face_crop_box",
    "find_face",
]
