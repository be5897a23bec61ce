"""Finding the face to paint: OpenCV's bundled Haar cascade (no download), and a square crop around it."""

from __future__ import annotations

import functools

import cv2
import numpy as np
from PIL import Image

Box = tuple[int, int, int, int]

CASCADE_FILE = "haarcascade_frontalface_default.xml"
DETECT_MAX_SIDE = 640  # detection runs on a copy at most this big: fast, and faces stay well above minSize
MIN_FACE_FRACTION = 0.08  # ignore "faces" smaller than this share of the short side (texture false positives)
# Haar cascades also fire, weakly, on face-like texture (the astronaut photo has one such box larger than
# her face). Only detections at least this share of the strongest one's confidence compete on size.
MIN_RELATIVE_CONFIDENCE = 0.5


@functools.cache
def _cascade() -> cv2.CascadeClassifier:
    """Loaded once, on first use (not at import)."""
    path = cv2.data.haarcascades + CASCADE_FILE
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        raise RuntimeError(f"OpenCV could not load its face cascade {path} (is opencv-python-headless complete?)")
    return cascade


def find_face(image: Image.Image) -> Box | None:
    """The largest confidently detected frontal face as ``(x, y, w, h)`` in ``image``'s pixels, or ``None``."""
    gray = np.asarray(image.convert("L"))
    height, width = gray.shape
    scale = min(1.0, DETECT_MAX_SIDE / max(width, height))
    if scale < 1.0:
        gray = cv2.resize(gray, (max(1, round(width * scale)), max(1, round(height * scale))),
                          interpolation=cv2.INTER_AREA)
    gray = cv2.equalizeHist(gray)
    min_side = max(20, round(MIN_FACE_FRACTION * min(gray.shape)))
    faces, _, weights = _cascade().detectMultiScale3(gray, scaleFactor=1.1, minNeighbors=5,
                                                     minSize=(min_side, min_side), outputRejectLevels=True)
    if len(faces) == 0:
        return None
    weights = np.asarray(weights, dtype=np.float64).reshape(-1)
    best = float(weights.max())
    floor = min(best, MIN_RELATIVE_CONFIDENCE * best)  # the strongest always stays, even with a negative weight
    confident = [tuple(int(v) for v in face) for face, weight in zip(faces, weights, strict=True) if weight >= floor]
    x, y, w, h = max(confident, key=lambda f: f[2] * f[3])
    return (round(x / scale), round(y / scale), round(w / scale), round(h / scale))


def face_crop_box(face: Box, image_size: tuple[int, int], margin: float = 1.8, lift: float = 0.1) -> Box:
    """A square ``(left, top, right, bottom)`` around ``face`` that keeps hair and chin.

    ``margin`` is the square's side as a multiple of the face box's size (a Haar box spans roughly
    brows to mouth); ``lift`` moves the centre up by that share of the face height, since there is
    more hair above than chin below. The square is moved, then shrunk if it must be, to stay inside
    the image.
    """
    x, y, w, h = face
    width, height = image_size
    side = min(round(max(w, h) * margin), width, height)
    cx = x + w / 2
    cy = y + h / 2 - lift * h
    left = min(max(round(cx - side / 2), 0), width - side)
    top = min(max(round(cy - side / 2), 0), height - side)
    return (left, top, left + side, top + side)
