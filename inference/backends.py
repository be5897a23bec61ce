"""Choosing the executor the engine drives: the local GPU (default) or the Inference API.

``config.backend`` decides. Both executors run /anime on this machine through the same anime
factory; only diffusion work goes elsewhere with ``backend = "remote"``.
"""

from __future__ import annotations

from config import Config
from inference.anime.weights import WeightStore
from inference.executor import GpuExecutor, default_anime_factory
from inference.remote import RemoteExecutor


def build_executor(config: Config, *, anime_weights: WeightStore | None = None) -> GpuExecutor | RemoteExecutor:
    """``anime_weights``: the store the studio checks requests against (else one of its own)."""
    anime = default_anime_factory(config, anime_weights)
    if config.backend == "remote":
        return RemoteExecutor(config, anime_factory=anime)
    return GpuExecutor(config, anime_factory=anime)
