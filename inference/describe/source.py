"""Where the captioning model's weights are: a local folder, or a hub snapshot in the cache.

Like the AnimeGAN2 weights (inference/anime/weights.py), nothing is fetched for a job:
:meth:`CaptionSource.folder`, which the inference thread uses, only looks on disk
(``snapshot_download(local_files_only=True)``). A hub model is downloaded by :meth:`fetch`: once
in the background at start-up (``describe.download``) and by ``python bot.py --check``.
huggingface_hub downloads into a temporary file and renames it when complete, so an interrupted
download never looks finished. Members read short messages; the admin's detail goes to the log.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from inference.jobs import JobError

if TYPE_CHECKING:
    from config import Config

log = logging.getLogger(__name__)

NOT_CONFIGURED = "/describe is not set up on this bot (no captioning model is configured); an admin can add one."
NOT_READY = ("/describe is not ready yet: its captioning model has not been downloaded. Try again in a few "
             "minutes; if it stays this way, an admin can run `python bot.py --check`.")
LOG_AGAIN_AFTER_S = 600.0
# What a snapshot needs (weights, configs, tokenizer, processor); not other formats' weights.
PATTERNS = ("*.json", "*.safetensors", "*.txt", "*.model")  # never remote code


class DescribeUnavailable(JobError):
    """The captioning model cannot be used now. ``str()`` is for the member; ``detail`` for the admin."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail or message


class CaptionSource:
    """The configured captioning model's source, resolved to a folder on disk when it is there."""

    def __init__(self, source: str, *, base_dir: Path = Path("."), cache_dir: str = "", download: bool = True) -> None:
        self.source = source.strip()
        self.base_dir = base_dir
        self.cache_dir = cache_dir
        self.download = download
        self._background: threading.Thread | None = None
        self._logged: dict[str, float] = {}

    @classmethod
    def from_config(cls, config: Config) -> CaptionSource:
        d = config.describe
        cache = str(config.path(d.cache_dir)) if d.cache_dir else ""
        return cls(d.source, base_dir=config.base_dir, cache_dir=cache, download=d.download)

    @property
    def configured(self) -> bool:
        return bool(self.source)

    @property
    def is_local(self) -> bool:
        from config import is_local_source

        return is_local_source(self.source, self.base_dir)

    def folder(self) -> Path:
        """A local folder holding the model. Never downloads. Raises :class:`DescribeUnavailable`."""
        if not self.configured:
            raise DescribeUnavailable(NOT_CONFIGURED, "describe.source is not set")
        if self.is_local:
            from config import source_path

            path = source_path(self.source, self.base_dir)
            if not (path / "config.json").is_file():
                raise DescribeUnavailable(NOT_READY, f"describe.source: no model folder (config.json) at {path}")
            return path
        from huggingface_hub import snapshot_download

        try:
            return Path(snapshot_download(self.source, cache_dir=self.cache_dir or None, local_files_only=True,
                                          allow_patterns=list(PATTERNS)))
        except Exception as exc:  # LocalEntryNotFoundError and friends: not in the cache (yet)
            raise DescribeUnavailable(NOT_READY, f"describe.source {self.source} is not in the cache yet "
                                                 f"({type(exc).__name__}); it is downloaded at start-up and by "
                                                 "--check when describe.download is on") from None

    def problem(self) -> DescribeUnavailable | None:
        try:
            self.folder()
        except DescribeUnavailable as exc:
            return exc
        return None

    def refusal(self) -> str | None:
        """Why /describe is refused before a job is queued (member-facing), or None. Logs the detail."""
        problem = self.problem()
        if problem is None:
            return None
        now = time.monotonic()
        if now - self._logged.get(problem.detail, -LOG_AGAIN_AFTER_S) >= LOG_AGAIN_AFTER_S:
            self._logged[problem.detail] = now
            log.warning("/describe refused: %s", problem.detail)
        return str(problem)

    def fetch(self) -> str | None:
        """Download a hub model that is not in the cache (blocking). Returns the problem left, or None."""
        problem = self.problem()
        if problem is None or not self.configured or self.is_local:
            return problem.detail if problem else None
        if not self.download:
            return f"{problem.detail}; describe.download is off, so put it there yourself"
        from huggingface_hub import snapshot_download

        try:
            snapshot_download(self.source, cache_dir=self.cache_dir or None, allow_patterns=list(PATTERNS))
        except Exception as exc:
            return f"describe.source {self.source}: download failed ({type(exc).__name__}: {exc})"
        log.info("captioning model %s downloaded", self.source)
        return None

    def fetch_in_background(self) -> bool:
        """:meth:`fetch` on a daemon thread when a hub model is configured (and downloads are on).
        False when there is nothing to do or a run started here is still going."""
        if not self.download or not self.configured or self.is_local or (self._background is not None and self._background.is_alive()):
            return False

        def run() -> None:
            try:
                problem = self.fetch()
            except Exception:
                log.exception("fetching the captioning model failed")
                return
            if problem:
                log.warning("/describe is refused until its model is in place: %s", problem)

        self._background = threading.Thread(target=run, name="easel-describe-weights", daemon=True)
        self._background.start()
        return True
