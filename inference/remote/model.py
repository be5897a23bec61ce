"""What the engine and the cogs know of a model that runs on someone else's GPU.

The engine reads a loaded model's name, preset, device and dtype (``model_info``, ``status``,
``start``), the studio its default scheduler (for the PNG's "Sampler"). A remote model has the
preset from the configuration like a local one, no tokenizer (the prompt-length note needs the
model's own tokenizer, which would mean downloading it) and no LoRAs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from config import ModelConfig, RemoteConfig
from inference.families import resolve_family
from inference.presets import ModelPreset, preset_for


@dataclass(frozen=True)
class RemoteModel:
    name: str
    source: str  # the hub id asked of the provider; with base_url only a label
    family: str
    preset: ModelPreset
    device: str  # where the images are made, as /easel status shows it
    dtype: str = "remote"
    tokenizer: Any = None
    loras: tuple[str, ...] = ()
    default_scheduler: Any = None  # the provider's choice, unknown here


def where(remote: RemoteConfig) -> str:
    """``remote:<provider>``, or ``remote:<host>`` for a dedicated endpoint."""
    if remote.base_url:
        return f"remote:{urlsplit(remote.base_url).netloc or remote.base_url}"
    return f"remote:{remote.provider}"


def remote_model(cfg: ModelConfig, remote: RemoteConfig) -> RemoteModel:
    family = resolve_family(cfg.family, cfg.source)
    return RemoteModel(name=cfg.display_name, source=cfg.source, family=family, preset=preset_for(cfg, family),
                       device=where(remote))
