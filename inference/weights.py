"""Weight files fetched once into a cache: one module for every small model easel downloads
(AnimeGAN2 styles, upscalers). Subclasses say what the files are called and how problems are worded.

Nothing is fetched at import time, and nothing is fetched for a job: :meth:`WeightCache.path_for`,
which the inference thread uses, only looks on disk. Missing weights are downloaded by
:meth:`WeightCache.fetch` on other threads: once in the background at start-up, by
``python bot.py --check`` and by ``/easel anime``. A file that appears in the cache is used by the
next job, without a restart.

A download goes to a temporary file beside the cache entry and is moved into place with
``os.replace`` only once it is complete (and its sha256 matches, when one is configured), so an
interrupted or bad download never leaves a file that looks finished; each file gets at most
``deadline`` seconds, whatever the server does. Members only ever read a short
:class:`WeightsUnavailable` message; where the file belongs and how to fix it (server paths) goes
to its ``detail``, for the log and ``--check``.
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
from dataclasses import dataclass
from pathlib import Path

from inference.jobs import JobError

log = logging.getLogger(__name__)

LOG_AGAIN_AFTER_S = 600.0  # the same problem is logged again at most this often

_CHUNK = 1 << 16


class WeightsUnavailable(JobError):
    """A weights file cannot be used right now (unknown name, missing or bad file).

    ``str()`` is for the member (no server paths); ``detail`` says where and what to fix, for the admin."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail or message


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class Wording:
    """How a kind of weights names itself in the admin's messages: ``label`` gets the entry's name
    (``"AnimeGAN2 style {name}"``); the keys are the config keys an admin edits."""

    label: str
    weights_key: str
    sha256_key: str
    download_key: str
    how_to_fetch: str = "`python bot.py --check` downloads it"
    thread_name: str = "easel-weights"


class WeightCache:
    """Finds each named entry's weights file on disk, and downloads missing ones when asked.

    ``overrides`` maps a name to a local file that is used instead of the cache; ``sha256`` maps a
    name to the expected hex digest; ``urls`` gives the download addresses per name, tried in order;
    ``download=False`` never downloads. ``timeout`` bounds each network wait, ``deadline`` each file.
    Subclasses set :attr:`wording`, :attr:`unavailable` and :meth:`names`, and may word the member's
    message (:meth:`member_message`) and the file name in the cache (:meth:`cache_path`).
    """

    max_bytes = 64 * 1024 * 1024  # anything far bigger than the expected files is not a checkpoint
    wording = Wording("weights {name}", "weights", "sha256", "download")
    unavailable: type[WeightsUnavailable] = WeightsUnavailable
    logger = log
    not_set_up = "This feature is not set up on this server yet; an admin can fix it."

    def __init__(self, cache_dir: Path, *, overrides: Mapping[str, str] | None = None,
                 sha256: Mapping[str, str] | None = None, urls: Mapping[str, tuple[str, ...]] | None = None,
                 timeout: float = 30, deadline: float = 300, download: bool = True) -> None:
        self.cache_dir = Path(cache_dir)
        self.overrides = {k: Path(v).expanduser() for k, v in (overrides or {}).items()}
        self.sha256 = {k: v.strip().lower() for k, v in (sha256 or {}).items() if v.strip()}
        self.urls = dict(urls or {})
        self.timeout = timeout
        self.deadline = deadline
        self.download = download
        self._verified: dict[Path, tuple[int, int, bool]] = {}  # path -> (size, mtime_ns, sha256 matches)
        self._logged: dict[str, float] = {}  # problem text -> when it was last logged (monotonic)
        self._fetching = threading.Lock()  # one download run at a time
        self._background: threading.Thread | None = None

    # ------------------------------------------------------------------ what subclasses say

    def names(self) -> tuple[str, ...]:
        """Every entry this cache knows."""
        return tuple(dict.fromkeys((*self.overrides, *self.urls)))

    def check_name(self, name: str) -> None:
        if name not in self.names():
            raise self.unavailable(f"There is no {name!r} here. Choose one of: {', '.join(self.names())}.")

    def cache_path(self, name: str) -> Path:
        return self.cache_dir / f"{name}.pt"

    def member_message(self, name: str) -> str:
        """What a member is told when ``name`` cannot be used (never a server path)."""
        return self.not_set_up

    def label(self, name: str) -> str:
        return self.wording.label.format(name=name)

    # ------------------------------------------------------------------ on disk only

    def location(self, name: str) -> Path:
        """Where ``name``'s file is read from: its override, else the cache."""
        return self.overrides.get(name) or self.cache_path(name)

    def problem(self, name: str) -> str | None:
        """What keeps ``name`` from being used, for the admin (the path and the fix), or None when its
        file is in place. Looks on disk only; a file's sha256 is computed once per version of it."""
        self.check_name(name)
        w, label = self.wording, self.label(name)
        override = self.overrides.get(name)
        if override is not None:
            if not override.is_file():
                return (f"{label}: {override} (set in {w.weights_key}) does not exist; put the file "
                        "there, or remove the entry to use the cache")
            if not self._matches(name, override):
                return f"{label}: {override} (set in {w.weights_key}) does not match the sha256 in {w.sha256_key}"
            return None
        cached = self.cache_path(name)
        if not cached.is_file():
            source = next(iter(self.urls.get(name, ())), "")
            how = w.how_to_fetch if self.download else f"downloads are off ({w.download_key} = false)"
            whence = f" (from {source})" if source else ""
            return f"{label}: no weights at {cached}; {how}, or place the file there{whence} or set {w.weights_key}"
        if not self._matches(name, cached):
            return f"{label}: {cached} does not match the sha256 in {w.sha256_key}; {w.how_to_fetch} again"
        return None

    def ready(self) -> list[str]:
        """The entries whose weights are in place."""
        return [name for name in self.names() if self.problem(name) is None]

    def refusal(self, name: str) -> str | None:
        """Why a member's request for ``name`` is refused before it is queued, or None. The admin's
        detail goes to the log (each problem at most every ten minutes)."""
        try:
            problem = self.problem(name)
        except WeightsUnavailable as exc:  # unknown name
            return str(exc)
        if problem is None:
            return None
        self._log_once(problem)
        return self.member_message(name)

    def path_for(self, name: str) -> Path:
        """A local file holding ``name``'s weights. Never downloads (see :meth:`fetch`)."""
        problem = self.problem(name)
        if problem is not None:
            self._log_once(problem)
            raise self.unavailable(self.member_message(name), detail=problem)
        return self.location(name)

    def damaged(self, name: str, path: Path, what: str, member: str) -> WeightsUnavailable:
        """A file that is there but unusable. A cache entry is removed so that the next fetch replaces
        it; a configured file is never deleted. ``member``: what the member reads."""
        cached = path == self.cache_path(name)
        if cached:
            path.unlink(missing_ok=True)
        fix = f"it was removed; {self.wording.how_to_fetch} again" if cached else "replace it"
        detail = f"{self.label(name)}: {path} {what}; {fix}"
        self.logger.warning("%s", detail)
        return self.unavailable(member, detail=detail)

    # ------------------------------------------------------------------ downloads (never on the inference thread)

    def fetch(self, name: str) -> Path:
        """``name``'s weights file, downloading it into the cache when it is missing or does not match
        its sha256. Blocks for up to ``deadline`` seconds per address: call it on a thread of its
        own. Raises :attr:`unavailable` (with ``detail``) when the file cannot be had."""
        problem = self.problem(name)
        if problem is None:
            return self.location(name)
        if name in self.overrides or not self.download:
            raise self.unavailable(self.member_message(name), detail=problem)
        cached = self.cache_path(name)
        if cached.is_file():
            self.logger.warning("cached %s does not match the configured sha256: downloading it again", cached)
            cached.unlink(missing_ok=True)
        return self._download(name)

    def fetch_missing(self, names: Iterable[str] | None = None) -> dict[str, str | None]:
        """Fetch every entry that is not in place, one run at a time; returns each entry's remaining
        problem for the admin (None: ready)."""
        with self._fetching:
            outcome: dict[str, str | None] = {}
            for name in self.names() if names is None else names:
                try:
                    self.fetch(name)
                    outcome[name] = None
                except WeightsUnavailable as exc:
                    outcome[name] = exc.detail
            return outcome

    def fetch_in_background(self, names: Iterable[str] | None = None) -> bool:
        """Run :meth:`fetch_missing` on a daemon thread (it never holds up start-up or shutdown) and log
        the outcome. False when a run started here is still going."""
        if self._background is not None and self._background.is_alive():
            return False
        wanted = tuple(self.names() if names is None else names)

        def run() -> None:
            try:
                outcome = self.fetch_missing(wanted)
            except Exception:  # a bug here must not kill more than this thread
                self.logger.exception("fetching %s failed", self.label("weights"))
                return
            self.log_outcome(outcome)

        self._background = threading.Thread(target=run, name=self.wording.thread_name, daemon=True)
        self._background.start()
        return True

    def log_outcome(self, outcome: Mapping[str, str | None]) -> None:
        """Log a background fetch's remaining problems (each one now, whenever it was last logged)."""
        missing = {name: problem for name, problem in outcome.items() if problem is not None}
        for problem in missing.values():
            self._log_once(problem, force=True)
        if not missing and outcome:
            self.logger.info("weights ready: %s", ", ".join(outcome))

    @property
    def fetching(self) -> bool:
        """Whether a download run is going on now."""
        return self._fetching.locked()

    # ------------------------------------------------------------------ internals

    def _matches(self, name: str, path: Path) -> bool:
        expected = self.sha256.get(name)
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
            self.logger.warning("%s", problem)

    def _download(self, name: str) -> Path:
        target = self.cache_path(name)
        mismatch = False
        tried: list[str] = []
        reason = ""
        for url in self.urls.get(name, ()):
            tried.append(url)
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                digest = self._fetch(url, target)
            except (OSError, http.client.HTTPException, ValueError) as exc:
                if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
                    exc = exc.reason if isinstance(exc.reason, BaseException) else OSError(str(exc.reason))
                reason = str(exc) or type(exc).__name__
                self.logger.debug("downloading %s weights from %s failed: %s", name, url, reason)
                continue
            expected = self.sha256.get(name)
            if expected is not None and digest != expected:
                self.logger.warning("%s from %s has sha256 %s, expected %s: discarded", name, url, digest, expected)
                target.unlink(missing_ok=True)
                mismatch = True
                continue
            self.logger.info("downloaded %s weights from %s to %s", name, url, target)
            return target
        w, label = self.wording, self.label(name)
        if mismatch:
            detail = (f"{label}: the downloaded {target.name} does not match the sha256 in {w.sha256_key}, so it "
                      f"was not kept; fix {w.sha256_key} or place the right file at {target}")
        else:
            why = f"no internet? {reason}" if reason else "no address to download it from"
            source = f" (from {tried[0]})" if tried else ""
            detail = (f"{label}: its weights could not be downloaded ({why}); place the file at "
                      f"{target}{source} or set {w.weights_key}")
        raise self.unavailable(self.member_message(name), detail=detail)

    def _fetch(self, url: str, target: Path) -> str:
        """Stream ``url`` into ``target`` atomically within ``deadline`` seconds; return the file's sha256."""
        request = urllib.request.Request(url, headers={"User-Agent": "easel-weights"})
        digest = hashlib.sha256()
        give_up = time.monotonic() + self.deadline
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
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
