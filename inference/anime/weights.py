"""Where each style's AnimeGAN2 weights come from: a configured file, the cache, or a download.

Nothing is fetched at import time. A download goes to a temporary file beside the cache entry
and is moved into place with ``os.replace`` only once it is complete (and its sha256 matches,
when one is configured), so an interrupted or bad download never leaves a file that looks
finished. Every failure becomes one :class:`AnimeUnavailable` a member can read; the details go
to the log for the admin.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import tempfile
import urllib.request
from collections.abc import Mapping
from pathlib import Path

import torch

from inference.jobs import JobError

log = logging.getLogger(__name__)

STYLES: tuple[str, ...] = ("face_paint_512_v2", "face_paint_512_v1", "celeba_distill", "paprika")

UPSTREAM = "https://github.com/bryandlee/animegan2-pytorch/raw/main/weights/{style}.pt"
# The same file straight from GitHub's raw host (what the address above redirects to).
UPSTREAM_RAW = "https://raw.githubusercontent.com/bryandlee/animegan2-pytorch/main/weights/{style}.pt"
DEFAULT_URLS: dict[str, tuple[str, ...]] = {
    style: (UPSTREAM.format(style=style), UPSTREAM_RAW.format(style=style)) for style in STYLES
}

_CHUNK = 1 << 16


class AnimeUnavailable(JobError):
    """A style cannot be used right now (unknown, or its weights are missing or bad)."""


def check_style(style: str) -> None:
    if style not in STYLES:
        raise AnimeUnavailable(f"There is no anime style {style!r}. Choose one of: {', '.join(STYLES)}.")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


class WeightStore:
    """Finds (downloading on first use) the ``.pt`` state_dict of each style.

    ``overrides`` maps a style to a local file that is used instead of the cache (``anime.weights``);
    ``sha256`` maps a style to the expected hex digest (``anime.sha256``); ``urls`` replaces the
    download addresses per style, tried in order.
    """

    max_bytes = 64 * 1024 * 1024  # the real files are ~8.6 MB: anything far bigger is not a checkpoint

    def __init__(self, cache_dir: Path, *, overrides: Mapping[str, str] | None = None,
                 sha256: Mapping[str, str] | None = None, urls: Mapping[str, tuple[str, ...]] | None = None,
                 timeout: float = 30) -> None:
        self.cache_dir = Path(cache_dir)
        self.overrides = {k: Path(v).expanduser() for k, v in (overrides or {}).items()}
        self.sha256 = {k: v.strip().lower() for k, v in (sha256 or {}).items()}
        self.urls = dict(DEFAULT_URLS if urls is None else urls)
        self.timeout = timeout

    def cache_path(self, style: str) -> Path:
        return self.cache_dir / f"{style}.pt"

    def path_for(self, style: str) -> Path:
        """A local file holding ``style``'s weights, downloading it into the cache if needed."""
        check_style(style)
        override = self.overrides.get(style)
        if override is not None:
            if not override.is_file():
                raise AnimeUnavailable(f"The anime style {style!r} is unavailable: its weights file {override} "
                                       "(set in anime.weights) does not exist.")
            self._verify(style, override)
            return override
        cached = self.cache_path(style)
        if cached.is_file():
            expected = self.sha256.get(style)
            if expected is None or sha256_of(cached) == expected:
                return cached
            log.warning("cached %s does not match the configured sha256: downloading it again", cached)
            cached.unlink(missing_ok=True)
        return self._download(style)

    def load_state_dict(self, style: str) -> dict[str, torch.Tensor]:
        """The style's state_dict on the CPU, read with ``weights_only=True`` (no code runs from the file)."""
        path = self.path_for(style)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # a truncated or foreign file: torch raises several types
            log.warning("could not read %s: %s", path, exc)
            self._drop_if_cached(style, path)
            raise AnimeUnavailable(f"The anime style {style!r} is unavailable: its weights file {path} "
                                   "could not be read.") from exc
        if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            self._drop_if_cached(style, path)
            raise AnimeUnavailable(f"The anime style {style!r} is unavailable: {path} is not a state_dict of tensors.")
        return dict(state)

    # ------------------------------------------------------------------ internals

    def _verify(self, style: str, path: Path) -> None:
        expected = self.sha256.get(style)
        if expected is not None and sha256_of(path) != expected:
            raise AnimeUnavailable(f"The anime style {style!r} is unavailable: its weights file {path} does not "
                                   "match the sha256 set in anime.sha256.")

    def _drop_if_cached(self, style: str, path: Path) -> None:
        """Forget a broken cache entry so the next try downloads it again (never deletes an override)."""
        if path == self.cache_path(style):
            path.unlink(missing_ok=True)

    def _download(self, style: str) -> Path:
        target = self.cache_path(style)
        mismatch = False
        for url in self.urls.get(style, ()):
            try:
                self.cache_dir.mkdir(parents=True, exist_ok=True)
                digest = self._fetch(url, target)
            except (OSError, http.client.HTTPException, ValueError) as exc:
                log.warning("downloading %s weights from %s failed: %s", style, url, exc)
                continue
            expected = self.sha256.get(style)
            if expected is not None and digest != expected:
                log.warning("%s from %s has sha256 %s, expected %s: discarded", style, url, digest, expected)
                target.unlink(missing_ok=True)
                mismatch = True
                continue
            log.info("downloaded %s weights from %s to %s", style, url, target)
            return target
        if mismatch:
            raise AnimeUnavailable(f"The anime style {style!r} is unavailable: the downloaded {target.name} does not "
                                   "match the sha256 set in anime.sha256, so it was not kept.")
        raise AnimeUnavailable(f"The anime style {style!r} is unavailable: its weights could not be downloaded "
                               f"(no internet?). An admin can place the file at {target} or set anime.weights.")

    def _fetch(self, url: str, target: Path) -> str:
        """Stream ``url`` into ``target`` atomically and return the file's sha256."""
        request = urllib.request.Request(url, headers={"User-Agent": "easel-animegan2"})
        digest = hashlib.sha256()
        fd, tmp_name = tempfile.mkstemp(dir=self.cache_dir, prefix=f".{target.name}.", suffix=".part")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=self.timeout) as response:
                size = 0
                for chunk in iter(lambda: response.read(_CHUNK), b""):
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise ValueError(f"more than {self.max_bytes} bytes: not a checkpoint")
                    digest.update(chunk)
                    out.write(chunk)
            if size == 0:
                raise ValueError("empty response")
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        return digest.hexdigest()
