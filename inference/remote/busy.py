"""How busy the remote backend keeps the service: for ``/easel status`` and the benches.

The GPU executor measures its one thread; here several requests overlap, so the clock counts the
seconds during which at least one request was in the air, against the wall time since the first
began (up to the end of the last one while idle), in the same :class:`BusyStats` the GPU uses.
Its ``batches`` field counts requests.
"""

from __future__ import annotations

import threading
import time

from inference.busy import BusyStats


class BusyClock:
    """Seconds with at least one request in the air, against the wall time since the first began."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active = 0
        self._busy_s = 0.0
        self._since: float | None = None
        self._first: float | None = None
        self._last_end: float | None = None
        self._requests = 0

    def begin(self) -> None:
        with self._lock:
            if self._active == 0:
                self._since = time.perf_counter()
                self._first = self._first if self._first is not None else self._since
            self._active += 1

    def end(self) -> None:
        with self._lock:
            self._active -= 1
            self._requests += 1
            if self._active == 0 and self._since is not None:
                self._last_end = time.perf_counter()
                self._busy_s += self._last_end - self._since
                self._since = None

    def stats(self) -> BusyStats:
        with self._lock:
            if self._first is None:
                return BusyStats(0.0, 0.0, 0)
            now = time.perf_counter()
            busy = self._busy_s + (now - self._since if self._since is not None else 0.0)
            end = now if self._active or self._last_end is None else self._last_end
            return BusyStats(busy, end - self._first, self._requests)
