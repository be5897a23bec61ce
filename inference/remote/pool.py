"""A fixed number of worker threads for remote requests that never hold up the bot's exit.

``ThreadPoolExecutor`` joins its workers when the interpreter exits, so one request stuck until
its timeout (two minutes by default) would keep a stopping bot alive that long; closing the HTTP
session does not interrupt a blocked read either. These workers are daemon threads: on shutdown
a request still in the air is abandoned, like a running job on the GPU (the job log still has it
as running and the next start runs it again).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class DaemonPool:
    def __init__(self, workers: int, name: str) -> None:
        self._tasks: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._closed = False
        self._threads = [threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
                         for i in range(workers)]
        for thread in self._threads:
            thread.start()

    @property
    def workers(self) -> int:
        return len(self._threads)

    def submit(self, task: Callable[[], None]) -> None:
        """Queue ``task``; it runs as soon as a worker is free. Raises RuntimeError after shutdown."""
        if self._closed:
            raise RuntimeError("the remote request pool is shut down")
        self._tasks.put(task)

    def shutdown(self) -> None:
        """Let the workers finish what is queued (tasks see their stop events) and end; do not wait."""
        self._closed = True
        for _ in self._threads:
            self._tasks.put(None)

    def _work(self) -> None:
        while (task := self._tasks.get()) is not None:
            try:
                task()
            except Exception:  # tasks handle their own failures; this keeps the worker alive regardless
                log.exception("remote task failed")
