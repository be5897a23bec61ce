"""Waiting out a busy or waking remote service: how long, how often, and when to give up.

The service's own hint wins: ``Retry-After`` on a 429, ``estimated_time`` while a model loads.
Without one the wait doubles from ``backoff_s``, with a little jitter so that several jobs hit by
the same 429 do not all come back at the same instant. A hint longer than ``max_wait_s`` is not
waited for at all: the member hears at once that the service is busy, instead of after minutes.
Waits happen on the job's stop event, so cancelling a job ends its wait immediately.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from config import RemoteConfig
from inference.remote.errors import RemoteError, Retry

log = logging.getLogger(__name__)

T = TypeVar("T")
JITTER = 0.1  # up to 10% added to a computed backoff (never to a wait the service asked for)


class Stopped(Exception):
    """The job was cancelled, or failed on another image, while this request waited."""


@dataclass(frozen=True)
class RetryPolicy:
    retries: int
    backoff_s: float
    max_wait_s: float

    @classmethod
    def from_config(cls, remote: RemoteConfig) -> RetryPolicy:
        return cls(retries=remote.retries, backoff_s=remote.backoff_s, max_wait_s=remote.max_wait_s)

    def wait_before(self, retry: int, asked: float | None) -> float | None:
        """Seconds to wait before retry number ``retry`` (1-based), or None to give up now."""
        if retry > self.retries:
            return None
        if asked is not None:
            return asked if asked <= self.max_wait_s else None
        wait = self.backoff_s * 2 ** (retry - 1)
        return min(self.max_wait_s, wait * (1 + random.uniform(0, JITTER)))


def call_with_retries(call: Callable[[], T], policy: RetryPolicy, stop: threading.Event, what: str) -> T:
    """Run ``call`` until it returns, raises something other than :class:`Retry`, or the policy
    gives up (then :class:`RemoteError` with the last failure's message). Raises :class:`Stopped`
    when ``stop`` is set before an attempt or during a wait."""
    retry = 0
    while True:
        if stop.is_set():
            raise Stopped
        try:
            return call()
        except Retry as failure:
            retry += 1
            wait = policy.wait_before(retry, failure.wait_s)
            if wait is None:
                log.warning("%s: giving up after %d attempt(s): %s", what, retry, failure.message)
                raise RemoteError(failure.message) from failure
            log.info("%s: retry %d/%d in %.2f s (%s)", what, retry, policy.retries, wait, failure.message)
            if stop.wait(wait):
                raise Stopped from None
