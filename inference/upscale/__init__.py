"""Upscaling: spandrel-loaded upscaler models (loading.py), their weights (weights.py), tiled
inference with feathered seams (tiling.py), the job's options (options.py) and the runner the
executor calls for UPSCALE jobs (runner.py).

Importing this package loads no model and fetches nothing.
"""

from __future__ import annotations

from inference.upscale.weights import NOT_SET_UP, UpscalerUnavailable, UpscalerWeights

__all__ = ["NOT_SET_UP", "UpscalerUnavailable", "UpscalerWeights"]
