"""Choosing the executor the engine drives: the local GPU (default) or the Inference API.

``config.backend`` decides. Both executors run /anime on this machine through the same anime
factory; only diffusion work goes elsewhere with ``backend = "remote"``.
"""

from __future__ import annotations

from config import Config
from inference.executor import GpuExecutor, default_anime_factory
from inference.remote import RemoteExecutor


def build_executor(config: Config) -> GpuExecutor | RemoteExecutor:
    anime = default_anime_factory(config)
    if config.backend == "remote":
        return RemoteExecutor(config, anime_factory=anime)
    return GpuExecutor(config, anime_factory=anime)
