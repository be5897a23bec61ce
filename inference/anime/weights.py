"""Where each style's AnimeGAN2 weights come from: a configured file, the cache, or a download.

Nothing is fetched at import time, and nothing is fetched for a job: :meth:`WeightStore.path_for`,
which the inference thread uses, only looks on disk. Missing weights are downloaded by
:meth:`WeightStore.fetch` on other threads: once in the background at start-up (``anime.download``),
by ``python bot.py --check`` and by ``/easel anime``. A file that appears in the cache is used by
the next job, without a restart.

A download goes to a temporary file beside the cache entry and is moved into place with
``os.replace`` only once it is complete (and its sha256 matches, when one is configured), so an
interrupted or bad download never leaves a file that looks finished; each file gets at most
``deadline`` seconds, whatever the server does. Members only ever read a short
:class:`AnimeUnavailable` message; where the file belongs and how to fix it (server paths) goes to
its ``detail``, for the log and ``--check``.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from inference.jobs import JobError

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
LOG_AGAIN_AFTER_S = 600.0  # the same problem is logged again at most this often

_CHUNK = 1 << 16


class AnimeUnavailable(JobError):
    """A style cannot be used right now (unknown, or its weights are missing or bad).

    ``str()`` is for the member (no server paths); ``detail`` says where and what to fix, for the admin."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail or message


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
    """Finds the ``.pt`` state_dict of each style on disk, and downloads missing ones when asked.

    ``overrides`` maps a style to a local file that is used instead of the cache (``anime.weights``);
    ``sha256`` maps a style to the expected hex digest (``anime.sha256``); ``urls`` replaces the
    download addresses per style, tried in order; ``download=False`` never downloads
    (``anime.download``). ``timeout`` bounds each network wait, ``deadline`` each whole file.
    """

    max_bytes = 64 * 1024 * 1024  # the real files are ~8.6 MB: anything far bigger is not a checkpoint

    def __init__(self, cache_dir: Path, *, overrides: Mapping[str, str] | None = None,
                 sha256: Mapping[str, str] | None = None, urls: Mapping[str, tuple[str, ...]] | None = None,
                 timeout: float = 30, deadline: float = 300, download: bool = True) -> None:
        self.cache_dir = Path(cache_dir)
        self.overrides = {k: Path(v).expanduser() for k, v in (overrides or {}).items()}
        self.sha256 = {k: v.strip().lower() for k, v in (sha256 or {}).items()}
        self.urls = dict(DEFAULT_URLS if urls is None else urls)
        self.timeout = timeout
        self.deadline = deadline
        self.download = download
        self._verified: dict[Path, tuple[int, int, bool]] = {}  # path -> (size, mtime_ns, sha256 matches)
        self._logged: dict[str, float] = {}  # problem text -> when it was last logged (monotonic)
        self._fetching = threading.Lock()  # one download run at a time
        self._background: threading.Thread | None = None

    @classmethod
    def from_config(cls, config: Config) -> WeightStore:
        """The store the ``[anime]`` section describes (paths relative to the config file's folder)."""
        anime = config.anime
        return cls(config.path(anime.cache_dir), overrides={k: str(config.path(v)) for k, v in anime.weights.items()},
                   sha256=dict(anime.sha256), download=anime.download)

    def cache_path(self, style: str) -> Path:
        return self.cache_dir / f"{style}.pt"

    def location(self, style: str) -> Path:
        """Where ``style``'s file is read from: its ``anime.weights`` entry, else the cache."""
        return self.overrides.get(style) or self.cache_path(style)

    # ------------------------------------------------------------------ on disk only

    def problem(self, style: str) -> str | None:
        """What keeps ``style`` from being used, for the admin (the path and the fix), or None when its
        file is in place. Looks on disk only; a file's sha256 is computed once per version of it."""
        check_style(style)
        override = self.overrides.get(style)
        if override is not None:
            if not override.is_file():
                return (f"AnimeGAN2 style {style}: {override} (set in anime.weights) does not exist; put the file "
                        "there, or remove the entry to use the cache")
            if not self._matches(style, override):
                return (f"AnimeGAN2 style {style}: {override} (set in anime.weights) does not match the sha256 "
                        "in anime.sha256")
            return None
        cached = self.cache_path(style)
        if not cached.is_file():
            source = next(iter(self.urls.get(style, ())), UPSTREAM.format(style=style))
            how = ("`python bot.py --check` or /easel anime downloads it" if self.download
                   else "downloads are off (anime.download = false)")
            return (f"AnimeGAN2 style {style}: no weights at {cached}; {how}, or place the file there "
                    f"(from {source}) or set anime.weights")
        if not self._matches(style, cached):
            return (f"AnimeGAN2 style {style}: {cached} does not match the sha256 in anime.sha256; "
                    "/easel anime or `python bot.py --check` downloads it again")
        return None

    def ready(self) -> list[str]:
        """The styles whose weights are in place."""
        return [style for style in STYLES if self.problem(style) is None]

    def member_message(self, style: str) -> str:
        """What a member is told when ``style`` cannot be used (never a server path)."""
        others = [s for s in self.ready() if s != style]
        if not others:
            return NOT_SET_UP
        return (f"The anime style {style} is not set up on this server yet; an admin can fix it. "
                f"Ready: {', '.join(others)}.")

    def refusal(self, style: str) -> str | None:
        """Why a member's request for ``style`` is refused before it is queued, or None. The admin's
        detail goes to the log (each problem at most every ten minutes)."""
        try:
            problem = self.problem(style)
        except AnimeUnavailable as exc:  # unknown style
            return str(exc)
        if problem is None:
            return None
        self._log_once(problem)
        return self.member_message(style)

    def path_for(self, style: str) -> Path:
        """A local file holding ``style``'s weights. Never downloads (see :meth:`fetch`)."""
        problem = self.problem(style)
        if problem is not None:
            self._log_once(problem)
            raise AnimeUnavailable(self.member_message(style), detail=problem)
        return self.location(style)

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

    # ------------------------------------------------------------------ downloads (never on the inference thread)

    def fetch(self, style: str) -> Path:
        """``style``'s weights file, downloading it into the cache when it is missing or does not match
        ``anime.sha256``. Blocks for up to ``deadline`` seconds per address: call it on a thread of its
        own. Raises AnimeUnavailable (with ``detail``) when the file cannot be had."""
        problem = self.problem(style)
        if problem is None:
            return self.location(style)
        if style in self.overrides or not self.download:
            raise AnimeUnavailable(self.member_message(style), detail=problem)
        cached = self.cache_path(style)
        if cached.is_file():
            log.warning("cached %s does not match the configured sha256: downloading it again", cached)
            cached.unlink(missing_ok=True)
        return self._download(style)

    def fetch_missing(self, styles: Iterable[str] = STYLES) -> dict[str, str | None]:
        """Fetch every style that is not in place, one run at a time; returns each style's remaining
        problem for the admin (None: ready)."""
        with self._fetching:
            outcome: dict[str, str | None] = {}
            for style in styles:
                try:
                    self.fetch(style)
                    outcome[style] = None
                except AnimeUnavailable as exc:
                    outcome[style] = exc.detail
            return outcome

    def fetch_in_background(self, styles: Iterable[str] = STYLES) -> bool:
        """Run :meth:`fetch_missing` on a daemon thread (it never holds up start-up or shutdown) and log
        the outcome. False when a run started here is still going."""
        if self._background is not None and self._background.is_alive():
            return False
        wanted = tuple(styles)

        def run() -> None:
            try:
                outcome = self.fetch_missing(wanted)
            except Exception:  # a bug here must not kill more than this thread
                log.exception("fetching the AnimeGAN2 weights failed")
                return
            missing = {style: problem for style, problem in outcome.items() if problem is not None}
            for problem in missing.values():
                self._log_once(problem, force=True)
            if not missing:
                log.info("AnimeGAN2 weights ready: %s", ", ".join(outcome))
            elif len(missing) == len(outcome):
                log.warning("/anime is refused until its weights are in place (see above)")

        self._background = threading.Thread(target=run, name="easel-anime-weights", daemon=True)
        self._background.start()
        return True

    @property
    def fetching(self) -> bool:
        """Whether a download run is going on now."""
        return self._fetching.locked()

    # ------------------------------------------------------------------ internals

    def _matches(self, style: str, path: Path) -> bool:
        expected = self.sha256.get(style)
        if expected is None:
            return True
        stat = path.stat()
        known = self._verified.get(path)
        if known is not None and known[:2] == (stat.st_size, stat.st_mtime_ns):
            return known[2]
        matches = sha256_of(path) == expected
        self._verified[path] = (stat.st_size, stat.st_mtime_ns, matches)
        return matches

    def _log_once(self, problem: str, *, force: bool = False) -> None:
        now = time.monotonic()
        last = self._logged.get(problem)
        if force or last is None or now - last >= LOG_AGAIN_AFTER_S:
            self._logged[problem] = now
            log.warning("%s", problem)

    def _damaged(self, style: str, path: Path, what: str) -> AnimeUnavailable:
        """A file that is there but unusable. A cache entry is removed so that the next fetch replaces
        it; an ``anime.weights`` file is never deleted."""
        cached = path == self.cache_path(style)
        if cached:
            path.unlink(missing_ok=True)
        fix = ("it was removed; /easel anime or `python bot.py --check` downloads it again" if cached
               else "replace it")
        detail = f"AnimeGAN2 style {style}: {path} {what}; {fix}"
        log.warning("%s", detail)
        return AnimeUnavailable(f"The anime style {style} is unavailable: its weights file is damaged. "
                                "An admin can fix it.", detail=detail)

    def _download(self, style: str) -> Path:
        target = self.cache_path(style)
        mismatch = False
        tried: list[str] = []
        reason = ""
        for url in self.urls.get(style, ()):
            tried.append(url)
            try:
                self.cache_dir.mkdir(parents=True, exist_ok=True)
                digest = self._fetch(url, target)
            except (OSError, http.client.HTTPException, ValueError) as exc:
                if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
                    exc = exc.reason if isinstance(exc.reason, BaseException) else OSError(str(exc.reason))
                reason = str(exc) or type(exc).__name__
                log.debug("downloading %s weights from %s failed: %s", style, url, reason)
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
            detail = (f"AnimeGAN2 style {style}: the downloaded {target.name} does not match the sha256 in "
                      f"anime.sha256, so it was not kept; fix anime.sha256 or place the right file at {target}")
        else:
            why = f"no internet? {reason}" if reason else "no address to download it from"
            source = f" (from {tried[0]})" if tried else ""
            detail = (f"AnimeGAN2 style {style}: its weights could not be downloaded ({why}); place the file at "
                      f"{target}{source} or set anime.weights")
        raise AnimeUnavailable(self.member_message(style), detail=detail)

    def _fetch(self, url: str, target: Path) -> str:
        """Stream ``url`` into ``target`` atomically within ``deadline`` seconds; return the file's sha256."""
        request = urllib.request.Request(url, headers={"User-Agent": "easel-animegan2"})
        digest = hashlib.sha256()
        give_up = time.monotonic() + self.deadline
        fd, tmp_name = tempfile.mkstemp(dir=self.cache_dir, prefix=f".{target.name}.", suffix=".part")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=self.timeout) as response:
                size = 0
                for chunk in iter(lambda: response.read(_CHUNK), b""):
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise ValueError(f"more than {self.max_bytes} bytes: not a checkpoint")
                    if time.monotonic() > give_up:
                        raise TimeoutError(f"not complete after {self.deadline:g} s")
                    digest.update(chunk)
                    out.write(chunk)
            if size == 0:
                raise ValueError("empty response")
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        return digest.hexdigest()
