"""Where each ``[[upscalers]]`` entry's weights come from: its local file, or its URL fetched once
into ``cache/upscalers`` (the shared :class:`inference.weights.WeightCache`: checksum, atomic rename,
background fetch at start-up and by ``python bot.py --check``)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from inference.weights import WeightCache, WeightsUnavailable, Wording

if TYPE_CHECKING:
    from config import Config, UpscalerConfig

log = logging.getLogger(__name__)

CACHE_DIR = "cache/upscalers"  # relative to the folder of easel.toml
NOT_SET_UP = "Upscaling is not set up on this server yet; an admin can add an upscaler ([[upscalers]] in easel.toml)."


class UpscalerUnavailable(WeightsUnavailable):
    """An upscaler cannot be used right now (not configured, or its weights are missing or bad)."""


def is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


class UpscalerWeights(WeightCache):
    """One file per configured upscaler: a local ``source`` is used in place (never deleted), an
    URL ``source`` is downloaded into the cache under the upscaler's name."""

    max_bytes = 512 * 1024 * 1024  # HAT-L and DAT checkpoints are a few hundred MB at most
    wording = Wording("upscaler {name}", "upscalers[].source", "upscalers[].sha256", "upscalers[].source",
                      how_to_fetch="`python bot.py --check` downloads it", thread_name="easel-upscaler-weights")
    unavailable = UpscalerUnavailable
    not_set_up = NOT_SET_UP
    logger = log

    def __init__(self, cache_dir: Path, upscalers: tuple[UpscalerConfig, ...] = (), *,
                 base_dir: Path = Path("."), **kwargs: object) -> None:
        self.entries = {u.name: u for u in upscalers}
        overrides = {u.name: str(_local(u.source, base_dir)) for u in upscalers if not is_url(u.source)}
        urls = {u.name: (u.source,) for u in upscalers if is_url(u.source)}
        sha = {u.name: u.sha256 for u in upscalers if u.sha256}
        super().__init__(cache_dir, overrides=overrides, urls=urls, sha256=sha, **kwargs)  # type: ignore[arg-type]

    @classmethod
    def from_config(cls, config: Config) -> UpscalerWeights:
        return cls(config.path(CACHE_DIR), config.upscalers, base_dir=config.base_dir)

    def names(self) -> tuple[str, ...]:
        return tuple(self.entries)

    def check_name(self, name: str) -> None:
        if not self.entries:
            raise UpscalerUnavailable(NOT_SET_UP)
        if name not in self.entries:
            raise UpscalerUnavailable(f"There is no upscaler {name!r} here. Choose one of: {', '.join(self.entries)}.")

    def cache_path(self, name: str) -> Path:
        urls = self.urls.get(name, ())
        suffix = Path(urlparse(urls[0]).path).suffix.lower() if urls else ".pth"
        return self.cache_dir / f"{name}{suffix or '.pth'}"

    def member_message(self, name: str) -> str:
        return (f"The upscaler {name} is not ready on this server yet (its weights are missing or damaged); "
                "an admin can fix it.")


def _local(source: str, base_dir: Path) -> Path:
    path = Path(source).expanduser()
    return path if path.is_absolute() else base_dir / path
