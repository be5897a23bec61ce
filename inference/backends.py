"""Choosing the executor the engine drives: the local GPU (default) or the Inference API.

``config.backend`` decides; ``[cluster] redis_url`` sends every job to GPU workers instead (one of them
this process with ``cluster.local_worker``). Both executors run /anime on this machine through the same anime
factory; only diffusion work goes elsewhere with ``backend = "remote"``.
"""

from __future__ import annotations

from config import Config
from inference.anime.weights import WeightStore
from inference.executor import GpuExecutor, default_anime_factory
from inference.remote import RemoteExecutor
from inference.upscale.runner import default_upscale_factory
from inference.upscale.weights import UpscalerWeights


def build_executor(config: Config, *, anime_weights: WeightStore | None = None,
                   upscaler_weights: UpscalerWeights | None = None) -> GpuExecutor | RemoteExecutor:
    """``anime_weights``, ``upscaler_weights``: the stores the studio checks requests against (else
    ones of their own). The remote backend refuses upscales (they need the local model)."""
    anime = default_anime_factory(config, anime_weights)
    if config.cluster.redis_url:  # workers on other machines run every job (inference/cluster/)
        from inference.cluster.dispatch import ClusterExecutor

        if config.cluster.local_worker:  # and this machine's GPU is one of them
            from inference.cluster.local import ClusterWithLocalWorker

            return ClusterWithLocalWorker(config)  # type: ignore[return-value]
        return ClusterExecutor(config)  # type: ignore[return-value]
    if config.backend == "remote":
        return RemoteExecutor(config, anime_factory=anime)
    return GpuExecutor(config, anime_factory=anime, upscale_factory=default_upscale_factory(config, upscaler_weights))
