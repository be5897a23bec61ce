"""A thread that makes the GPU thread's calls for it.

Waking the event loop writes to a socket, which gives up the GIL, and the loop then holds it while
it reacts to a finished batch. Done on the GPU thread, that made the next batch wait for the loop;
handing the call to this thread is a queue append that never gives the GIL up.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from queue import SimpleQueue
from typing import Any

log = logging.getLogger(__name__)


class Relay:
    """A thread that makes calls handed to it, in order, so the GPU thread never has to."""

    def __init__(self) -> None:
        self._calls: SimpleQueue[tuple[Callable[..., Any], tuple[Any, ...]] | None] = SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="easel-gpu-relay", daemon=True)
        self._thread.start()

    def call(self, fn: Callable[..., Any], *args: Any) -> None:
        self._calls.put((fn, args))

    def close(self) -> None:
        self._calls.put(None)
        self._thread.join()

    def _serve(self) -> None:
        while (item := self._calls.get()) is not None:
            fn, args = item
            try:
                fn(*args)
            except Exception:  # a closed loop or a broken listener must not stop the relay
                log.exception("could not hand over %r from the GPU thread", args[:1])
