"""Estimated waiting time from measured job durations (an exponential moving average per key)."""

from __future__ import annotations

DEFAULT_SECONDS = 10.0  # before anything was measured: an honest "about ten seconds"
SMOOTHING = 0.3


class EtaEstimator:
    def __init__(self, default_s: float = DEFAULT_SECONDS) -> None:
        self.default_s = default_s
        self._by_key: dict[str, float] = {}
        self._overall: float | None = None

    def record(self, key: str, seconds: float) -> None:
        if seconds < 0:
            return
        old = self._by_key.get(key)
        self._by_key[key] = seconds if old is None else (1 - SMOOTHING) * old + SMOOTHING * seconds
        self._overall = seconds if self._overall is None else (1 - SMOOTHING) * self._overall + SMOOTHING * seconds

    def measured(self, key: str) -> float | None:
        """This key's own average, or None before a job with it has finished."""
        return self._by_key.get(key)

    def estimate(self, key: str) -> float:
        """Seconds a job with this key will take: its own average, else the overall one."""
        if key in self._by_key:
            return self._by_key[key]
        return self._overall if self._overall is not None else self.default_s
