"""Describe jobs on the inference thread: the captioner is loaded on first use and then kept."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from inference.describe.source import CaptionSource
from inference.jobs import DescribeJob, Finished, JobEvent, JobResult, Progress

if TYPE_CHECKING:
    from config import Config
    from inference.describe.captioner import Captioner
    from inference.prepare import PreparedJob


class DescribeRunner:
    """What the executor's dispatch calls for ``JobKind.DESCRIBE`` batches (one job at a time)."""

    def __init__(self, config: Config, source: CaptionSource | None = None) -> None:
        self.config = config
        self.source = source or CaptionSource.from_config(config)
        self._captioner: Captioner | None = None
        self._folder: Any = None

    def captioner(self) -> Captioner:
        from inference.describe.captioner import load_captioner
        from inference.devices import resolve_device

        folder = self.source.folder()  # raises DescribeUnavailable (member's message) when not in place
        if self._captioner is None or folder != self._folder:
            self._captioner = load_captioner(folder, resolve_device(self.config.describe.device),
                                             source=self.source.source)
            self._folder = folder
        return self._captioner

    def run(self, live: list[PreparedJob], emit: Callable[[JobEvent], None]) -> list[Finished]:
        return [self._one(p, emit) for p in live]

    def _one(self, prepared: PreparedJob, emit: Callable[[JobEvent], None]) -> Finished:
        job = prepared.job
        assert isinstance(job, DescribeJob) and prepared.init_image is not None
        started = time.perf_counter()
        emit(Progress(job.job_id, 0, 1, None))
        texts = self.captioner().suggest(prepared.init_image, job.count, max_chars=job.max_chars)
        emit(Progress(job.job_id, 1, 1, None))
        return Finished(job.job_id, JobResult(job.job_id, (), (), time.perf_counter() - started, texts=tuple(texts)))
