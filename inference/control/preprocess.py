"""Control maps from a member's picture, at the job's size: white lines or shapes on black.

canny, scribble and lineart are OpenCV (no weights); depth runs a transformers depth-estimation
model (``AutoModelForDepthEstimation``) that the admin configured. All of them run on the inference
thread with the batch that needs the map.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
from PIL import Image

# A picture whose pixels are nearly all this close to black or white is a drawing, not a photo.
_EXTREME = 48
_DRAWING_SHARE = 0.9


def _gray(image: Image.Image, size: tuple[int, int]) -> np.ndarray:
    """The picture resized to ``size`` (width, height) as 8-bit gray."""
    rgb = np.asarray(image.convert("RGB").resize(size, Image.Resampling.LANCZOS))
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def _rgb(mask: np.ndarray) -> Image.Image:
    """A one-channel map as the RGB image ControlNets take."""
    return Image.fromarray(cv2.cvtColor(mask, cv2.COLOR_GRAY2RGB), "RGB")


def canny_thresholds(gray: np.ndarray) -> tuple[int, int]:
    """Hysteresis thresholds around the picture's median brightness (0.66x and 1.33x of it), kept
    within 50..250: a dark photo and a bright one both get their main contours, not noise."""
    median = float(np.median(gray))
    low = int(max(50, min(200, 0.66 * median)))
    high = int(max(low + 50, min(250, 1.33 * median)))
    return low, high


def canny(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Canny edges of the picture resized to the job's size (a slight blur first keeps texture out)."""
    gray = cv2.GaussianBlur(_gray(image, size), (3, 3), 0)
    low, high = canny_thresholds(gray)
    return _rgb(cv2.Canny(gray, low, high))


def is_drawing(gray: np.ndarray) -> bool:
    """Nearly every pixel near black or white: a sketch or a ready map rather than a photo."""
    extreme = np.count_nonzero((gray < _EXTREME) | (gray > 255 - _EXTREME))
    return extreme >= _DRAWING_SHARE * gray.size


def _stroke_kernel(size: tuple[int, int]) -> np.ndarray:
    side = max(3, (min(size) // 64) | 1)  # odd, about 1/64 of the shorter side
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side))


def scribble(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Thick white strokes on black. A drawing keeps its strokes (dark lines on white are inverted);
    a photo gives its main edges, thickened."""
    gray = _gray(image, size)
    if is_drawing(gray):
        _, lines = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        if np.count_nonzero(lines) > lines.size // 2:  # mostly white: dark lines on paper
            lines = 255 - lines
    else:
        blurred = cv2.GaussianBlur(gray, (5, 5), 0)
        lines = cv2.Canny(blurred, *canny_thresholds(blurred))
    return _rgb(cv2.dilate(lines, _stroke_kernel(size)))


def lineart(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Thin white lines on black: where the picture is darker than its neighbourhood (its lines and
    contours), an adaptive threshold that works for photos and for drawings alike."""
    gray = cv2.GaussianBlur(_gray(image, size), (3, 3), 0)
    block = max(3, (min(size) // 16) | 1)
    lines = cv2.adaptiveThreshold(gray, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY_INV, block, 8)
    return _rgb(cv2.medianBlur(lines, 3))


def ready(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """A map the member made (pose, or depth without an estimator): only resized."""
    return image.convert("RGB").resize(size, Image.Resampling.LANCZOS)


def depth(estimator: Any, image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """A depth map (near = bright) from ``estimator`` (a :class:`DepthEstimator`) at the job's size."""
    import torch

    processor, model = estimator.processor, estimator.model
    inputs = processor(images=image.convert("RGB"), return_tensors="pt")
    pixels = inputs["pixel_values"].to(model.device, model.dtype)
    with torch.inference_mode():
        predicted = model(pixel_values=pixels).predicted_depth
    depth_map = torch.nn.functional.interpolate(predicted[:, None].float(), size=(size[1], size[0]),
                                                mode="bicubic", align_corners=False)[0, 0]
    low, high = depth_map.min(), depth_map.max()
    scaled = (depth_map - low) / (high - low) if high > low else torch.zeros_like(depth_map)
    return _rgb((scaled * 255.0).round().clamp(0, 255).to(torch.uint8).cpu().numpy())


OPENCV = {"canny": canny, "scribble": scribble, "lineart": lineart}


def control_map(mode: str, image: Image.Image, size: tuple[int, int], estimator: Any = None) -> Image.Image:
    """The map of ``mode`` for the member's picture, at ``size`` (width, height)."""
    if mode in OPENCV:
        return OPENCV[mode](image, size)
    if estimator is not None:
        return depth(estimator, image, size)
    return ready(image, size)
