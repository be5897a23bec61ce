"""Who serves the cluster: the live workers as their heartbeats describe them, and the models the bot offers."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from config import ModelConfig
from inference.cluster.keys import Keys
from inference.families import resolve_family
from inference.jobs import Job
from inference.presets import ModelPreset, preset_for

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClusterModel:
    """What the bot knows of a model its workers run: the preset from the configuration, no tokenizer."""

    name: str
    source: str
    family: str
    preset: ModelPreset
    device: str = "cluster"
    dtype: str = "cluster"
    tokenizer: Any = None
    loras: tuple[str, ...] = ()
    default_scheduler: Any = None


def cluster_model(cfg: ModelConfig, base_dir: Path) -> ClusterModel:
    family = resolve_family(cfg.family, cfg.source, base_dir)
    return ClusterModel(cfg.display_name, cfg.source, family, preset_for(cfg, family))


async def read_workers(client: aioredis.Redis, keys: Keys) -> list[dict[str, Any]]:
    """Live workers (their records expire with their heartbeat), by name; a malformed record is skipped."""
    found = []
    async for key in client.scan_iter(match=keys.workers_pattern, count=100):
        raw = await client.hgetall(key)
        if not raw:
            continue
        info = {k.decode(): v.decode() for k, v in raw.items()}
        try:
            models = json.loads(info["models"])
            if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
                raise ValueError("models")
            loras = json.loads(info.get("loras", "{}"))
            if not isinstance(loras, dict) or not all(isinstance(v, list) for v in loras.values()):
                raise ValueError("loras")
            found.append({"name": info["name"], "models": models, "device": info["device"],
                          "dtype": info["dtype"], "slots": int(info["slots"]), "free": int(info["free"]),
                          "served": int(info["served"]), "beat": float(info["beat"]),
                          "loras": {str(k): [str(x) for x in v] for k, v in loras.items()},
                          "max_pixels": int(info.get("max_pixels", 0))})
        except (KeyError, ValueError):
            log.warning("ignored a malformed worker record %s", key)
    return sorted(found, key=lambda w: w["name"])


def can_run(worker: dict[str, Any], model: str, loras: tuple[str, ...] = (), pixels: int = 0) -> bool:
    """Whether a live ``worker`` (a :func:`read_workers` record) can run a batch of ``model`` needing
    these LoRAs and this many pixels per image. A worker that announces no LoRA list for the model, or
    no pixel limit (0, older workers), is taken at its word for what it does not announce."""
    if model and model not in worker["models"]:
        return False
    held = worker.get("loras", {}).get(model)
    if held is not None and any(name not in held for name in loras):
        return False
    limit = int(worker.get("max_pixels", 0))
    return not (limit and pixels > limit)


def batch_needs(jobs: list[Job]) -> tuple[tuple[str, ...], int]:
    """What a batch asks of a worker beyond its model: the LoRAs its jobs use (sorted, no repeats)
    and the largest image it makes, in pixels (0 for kinds without a size)."""
    loras = sorted({name for job in jobs for name, _ in getattr(job, "loras", ())})
    pixels = max((int(getattr(job, "width", 0) or 0) * int(getattr(job, "height", 0) or 0) for job in jobs), default=0)
    return tuple(loras), pixels
