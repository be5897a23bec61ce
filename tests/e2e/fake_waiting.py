"""Waiting on the fake Discord: ``wait_for`` with watchdogs and a useful timeout message, and ``assert_clean``.

``FakeDiscord`` mixes ``Waiting`` in. Every REST request and gateway event calls ``touch()``, which wakes
the waiters to re-check their predicate; watchdogs (e.g. "the bot process died") stop a wait early.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.e2e.fake_gateway import FakeGateway


class Waiting:
    """Needs the host's ``gateway``, ``requests``, ``unknown_routes`` and ``errors``."""

    gateway: FakeGateway
    requests: list[tuple[str, str, str, int]]
    unknown_routes: list[str]
    errors: list[str]

    def _init_waiting(self) -> None:
        self._watchdogs: list[Callable[[], str | None]] = []
        self._changed = asyncio.Event()

    def touch(self) -> None:
        """Wake every ``wait_for``: something changed."""
        self._changed.set()
        self._changed = asyncio.Event()

    def add_watchdog(self, check: Callable[[], str | None]) -> None:
        """``check()`` returns a reason to stop waiting (e.g. the bot process died) or None."""
        self._watchdogs.append(check)

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 60.0, what: str = "") -> Any:
        """Wait until ``predicate()`` is truthy and return its value; fail with context on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not (result := predicate()):
            for check in self._watchdogs:
                if (reason := check()) is not None:
                    raise AssertionError(f"stopped waiting for {what or predicate}: {reason}")
            remaining = deadline - loop.time()
            if remaining <= 0:
                recent = "\n".join(f"  {m} {p}?{q} -> {s}" for m, p, q, s in self.requests[-15:])
                lost = [e["t"] for e in self.gateway.undelivered]
                raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what or predicate}; "
                                     f"recent requests:\n{recent}\nunknown routes: {self.unknown_routes}"
                                     + (f"\nevents raised before the bot connected: {lost}" if lost else ""))
            try:
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.5))
            except TimeoutError:
                pass
        return result

    async def wait_logged_in(self, count: int = 1, timeout: float = 60.0) -> None:
        """Until the ``count``-th IDENTIFY got its READY and GUILD_CREATE (later events reach a ready cache).

        ``count=2`` waits for a restarted bot: a killed bot's session may still look connected for a moment.
        """
        await self.wait_for(lambda: len(self.gateway.sent("GUILD_CREATE")) >= count, timeout,
                            f"login number {count} of the bot")

    def assert_clean(self) -> None:
        """Fail when the bot used a route the fake does not know, or the fake itself crashed."""
        problems = [f"unknown route: {r}" for r in self.unknown_routes] + [f"fake crashed: {e}" for e in self.errors]
        if problems:
            raise AssertionError("the fake Discord saw requests it cannot answer:\n" + "\n".join(problems))
