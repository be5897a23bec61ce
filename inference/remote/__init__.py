"""The remote backend: images made by the Hugging Face Inference API instead of a local GPU.

- :mod:`.executor`: :class:`RemoteExecutor`, what the engine drives (same interface as GpuExecutor).
- :mod:`.client`: one image per request through ``huggingface_hub.InferenceClient``.
- :mod:`.retry`: waiting out 429s and loading models; :mod:`.errors`: failures in members' words.
- :mod:`.model`: what the engine knows of a remote model; :mod:`.pool`: the request threads;
  :mod:`.busy`: how busy the service is kept.
- :mod:`.check`: ``python bot.py --check`` for this backend.
"""

from __future__ import annotations

from inference.remote.check import RemoteCheckReport, run_remote_check
from inference.remote.client import PAINT_UNSUPPORTED, RemoteClient, read_token
from inference.remote.errors import RemoteError, RemoteUnsupported
from inference.remote.executor import RemoteExecutor
from inference.remote.model import RemoteModel

__all__ = [
    "PAINT_UNSUPPORTED",
    "RemoteCheckReport",
    "RemoteClient",
    "RemoteError",
    "RemoteExecutor",
    "RemoteModel",
    "RemoteUnsupported",
    "read_token",
    "run_remote_check",
]
