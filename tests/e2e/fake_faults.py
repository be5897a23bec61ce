"""Fault injection for the fake Discord: answer chosen REST requests with an error, or hold their answer back.

``FakeDiscord`` mixes ``Faults`` in; tests call ``server.fail_next(...)`` / ``server.hold_next(...)`` and
``fake_rest`` asks ``take_fault`` before routing a request and ``take_hold`` after carrying it out.
Patterns are globs on the path after /api/v10 (e.g. ``/webhooks/*``).
"""

from __future__ import annotations

import asyncio
import fnmatch
from dataclasses import dataclass


@dataclass
class Fault:
    method: str
    pattern: str
    status: int
    retry_after: float
    times: int
    upload: str | None = None  # only requests uploading a file whose name matches this glob
    hold: asyncio.Event | None = None  # hold_next: the request is carried out, its answer waits for this


class Faults:
    """Injected failures and held answers; ``held`` lists (method, path) of requests held so far."""

    def _init_faults(self) -> None:
        self.held: list[tuple[str, str]] = []  # (method, path) of requests whose answer hold_next keeps back
        self._faults: list[Fault] = []
        self._holds: list[Fault] = []

    def fail_next(self, method: str, path_pattern: str, status: int = 429, retry_after: float = 0.2,
                  times: int = 1, upload: str | None = None) -> None:
        """Answer the next ``times`` requests matching ``method`` and the glob ``path_pattern`` (the path
        after /api/v10, e.g. ``/webhooks/*``) with ``status``; a 429 comes with ``Via`` and ``retry_after``.

        ``upload`` narrows it to requests uploading a file whose name matches that glob (e.g. a bot's
        result, not its progress edits)."""
        self._faults.append(Fault(method.upper(), path_pattern, status, retry_after, times, upload))

    def hold_next(self, method: str, path_pattern: str, *, upload: str | None = None) -> asyncio.Event:
        """Carry out the next request matching (as ``fail_next``) but keep its answer back until the returned
        event is set (or the fake closes): the change is made, and a bot killed meanwhile never learns it was."""
        release = asyncio.Event()
        self._holds.append(Fault(method.upper(), path_pattern, 200, 0.0, 1, upload, release))
        return release

    def take_hold(self, method: str, path: str, filenames: tuple[str, ...] = ()) -> asyncio.Event | None:
        for hold in self._holds:
            if hold.times > 0 and hold.method == method and fnmatch.fnmatchcase(path, hold.pattern) and (
                    hold.upload is None or any(fnmatch.fnmatchcase(f, hold.upload) for f in filenames)):
                hold.times = 0  # kept in the list: close() releases it
                return hold.hold
        return None

    def take_fault(self, method: str, path: str, filenames: tuple[str, ...] = ()) -> Fault | None:
        for fault in self._faults:
            if fault.upload is not None and not any(fnmatch.fnmatchcase(f, fault.upload) for f in filenames):
                continue
            if fault.method == method and fnmatch.fnmatchcase(path, fault.pattern):
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    def release_holds(self) -> None:
        """Answer every held request (the fake is closing)."""
        for hold in self._holds:
            assert hold.hold is not None
            hold.hold.set()
