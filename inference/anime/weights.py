"""Where each style's AnimeGAN2 weights come from: a configured file, the cache, or a download.

The fetching itself (cache, checksum, atomic rename, background fetch) is the shared
:class:`inference.weights.WeightCache`; this module names the styles, their upstream addresses,
the ``[anime]`` keys and what members read. Missing weights are downloaded once in the background
at start-up (``anime.download``), by ``python bot.py --check`` and by ``/easel anime``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from inference.weights import WeightCache, WeightsUnavailable, Wording

if TYPE_CHECKING:
    from config import Config

log = logging.getLogger(__name__)

STYLES: tuple[str, ...] = ("face_paint_512_v2", "face_paint_512_v1", "celeba_distill", "paprika")

UPSTREAM = "https://github.com/bryandlee/animegan2-pytorch/raw/main/weights/{style}.pt"
# The same file straight from GitHub's raw host (what the address above redirects to).
UPSTREAM_RAW = "https://raw.githubusercontent.com/bryandlee/animegan2-pytorch/main/weights/{style}.pt"
DEFAULT_URLS: dict[str, tuple[str, ...]] = {
    style: (UPSTREAM.format(style=style), UPSTREAM_RAW.format(style=style)) for style in STYLES
}

NOT_SET_UP = "The anime filter is not set up on this server yet; an admin can fix it."


class AnimeUnavailable(WeightsUnavailable):
    """A style cannot be used right now (unknown, or its weights are missing or bad).

    ``str()`` is for the member (no server paths); ``detail`` says where and what to fix, for the admin."""


def check_style(style: str) -> None:
    if style not in STYLES:
        raise AnimeUnavailable(f"There is no anime style {style!r}. Choose one of: {', '.join(STYLES)}.")


class WeightStore(WeightCache):
    """The ``.pt`` state_dict of each style (``anime.weights`` overrides, ``anime.sha256`` digests,
    ``anime.download``); ``urls`` replaces the upstream addresses per style."""

    max_bytes = 64 * 1024 * 1024  # the real files are ~8.6 MB: anything far bigger is not a checkpoint
    wording = Wording("AnimeGAN2 style {name}", "anime.weights", "anime.sha256", "anime.download",
                      how_to_fetch="`python bot.py --check` or /easel anime downloads it",
                      thread_name="easel-anime-weights")
    unavailable = AnimeUnavailable
    logger = log
    not_set_up = NOT_SET_UP

    def __init__(self, cache_dir: Path, *, urls: Mapping[str, tuple[str, ...]] | None = None,
                 **kwargs: object) -> None:
        super().__init__(cache_dir, urls=DEFAULT_URLS if urls is None else urls, **kwargs)  # type: ignore[arg-type]

    @classmethod
    def from_config(cls, config: Config) -> WeightStore:
        """The store the ``[anime]`` section describes (paths relative to the config file's folder)."""
        anime = config.anime
        return cls(config.path(anime.cache_dir), overrides={k: str(config.path(v)) for k, v in anime.weights.items()},
                   sha256=dict(anime.sha256), download=anime.download)

    def names(self) -> tuple[str, ...]:
        return STYLES

    def check_name(self, name: str) -> None:
        check_style(name)

    def problem(self, name: str) -> str | None:
        problem = super().problem(name)
        if problem is not None and name not in self.overrides and not self.urls.get(name) and "(from " not in problem:
            problem = problem.replace(" or set anime.weights", f" (from {UPSTREAM.format(style=name)}) or set "
                                      "anime.weights")
        return problem

    def member_message(self, style: str) -> str:
        """What a member is told when ``style`` cannot be used (never a server path)."""
        others = [s for s in self.ready() if s != style]
        if not others:
            return NOT_SET_UP
        return (f"The anime style {style} is not set up on this server yet; an admin can fix it. "
                f"Ready: {', '.join(others)}.")

    def log_outcome(self, outcome: Mapping[str, str | None]) -> None:
        missing = [style for style, problem in outcome.items() if problem is not None]
        for style in missing:
            self._log_once(outcome[style] or "", force=True)
        if not missing:
            log.info("AnimeGAN2 weights ready: %s", ", ".join(outcome))
        elif len(missing) == len(outcome):
            log.warning("/anime is refused until its weights are in place (see above)")

    def load_state_dict(self, style: str) -> dict[str, torch.Tensor]:
        """The style's state_dict on the CPU, read with ``weights_only=True`` (no code runs from the file)."""
        path = self.path_for(style)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # a truncated or foreign file: torch raises several types
            raise self._damaged(style, path, f"could not be read ({exc})") from exc
        if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise self._damaged(style, path, "is not a state_dict of tensors")
        return dict(state)

    def _damaged(self, style: str, path: Path, what: str) -> WeightsUnavailable:
        return self.damaged(style, path, what, f"The anime style {style} is unavailable: its weights file is "
                            "damaged. An admin can fix it.")
