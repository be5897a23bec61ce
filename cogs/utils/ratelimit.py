"""Per-member rate limits: how often one member may make easel work, and how many DMs it sends them.

A token bucket per member and per kind (``limits.actions_per_minute`` for image commands and
menus, result buttons and reactions; ``limits.dms_per_minute`` for ✉️): a member can do that many
at once, then one more each 60/N seconds. In memory only: a restart forgives everyone, which is
fine for a limit meant to stop one member from filling the disk or the queue's attention, not to
meter anyone.

Each action is charged once: a slash command, button or context menu by its interaction id
(whichever of the cog, the button handler and ``launch()`` sees it first charges it; the others
find it charged). Cancel and Delete buttons are not charged: they start no work, and a member over
the limit can still stop their own job. A reaction is charged in ``Reactions.handle`` only once it
is known to be a request easel answers: reactions on chat messages, on members' pictures in
channels easel is off in, and a ❌ that deletes (cleaning up) cost nothing; ✉️ is charged from
the DM budget, as everything it leads to is a DM.
"""

from __future__ import annotations

import logging
import math
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from config import LimitsConfig

log = logging.getLogger(__name__)

WINDOW_S = 60.0
_REMEMBERED_INTERACTIONS = 4096  # charged interaction ids kept (an interaction lives 15 minutes at most)
_MAX_BUCKETS = 10_000  # full buckets are forgotten beyond this many members


class RateLimiter:
    """Token buckets per member: ``per_minute`` tokens, refilled continuously; 0 = no limit."""

    def __init__(self, per_minute: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._buckets: dict[int, tuple[float, float]] = {}  # member -> (tokens, when counted)

    def take(self, member: int) -> float:
        """Take one token: 0.0 when allowed, else the seconds until the next token (nothing taken)."""
        if self.per_minute <= 0:
            return 0.0
        now = self._clock()
        rate = self.per_minute / WINDOW_S
        tokens, then = self._buckets.get(member, (float(self.per_minute), now))
        tokens = min(float(self.per_minute), tokens + (now - then) * rate)
        if tokens < 1.0:
            self._buckets[member] = (tokens, now)
            return (1.0 - tokens) / rate
        self._buckets[member] = (tokens - 1.0, now)
        if len(self._buckets) > _MAX_BUCKETS:
            self._forget_full(now, rate)
        return 0.0

    def _forget_full(self, now: float, rate: float) -> None:
        """Drop the members whose bucket has refilled: they are back where a new member starts."""
        full = [m for m, (tokens, then) in self._buckets.items() if tokens + (now - then) * rate >= self.per_minute]
        for member in full:
            del self._buckets[member]


class MemberLimits:
    """The limits of one bot: actions and DMs per member, and which interactions were charged."""

    def __init__(self, limits: LimitsConfig, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.actions = RateLimiter(limits.actions_per_minute, clock=clock)
        self.dms = RateLimiter(limits.dms_per_minute, clock=clock)
        self._charged: OrderedDict[int, None] = OrderedDict()
        self._warned: dict[int, float] = {}  # member -> when a refusal of theirs was last logged
        self._clock = clock

    def charge_interaction(self, interaction_id: int, member: int) -> float:
        """Charge an interaction's action once (0.0: allowed, else seconds to wait)."""
        if interaction_id in self._charged:
            return 0.0
        self._charged[interaction_id] = None
        while len(self._charged) > _REMEMBERED_INTERACTIONS:
            self._charged.popitem(last=False)
        return self.actions.take(member)

    def allow_reaction(self, member: int, *, dm: bool) -> bool:
        """Charge a reaction (✉️ from the DM bucket); False when it must be ignored. Refusals are
        logged once per member per minute, so a flood of reactions does not flood the log."""
        if not (self.dms if dm else self.actions).take(member):
            return True
        now = self._clock()
        if now - self._warned.get(member, -math.inf) >= WINDOW_S:
            self._warned[member] = now
            log.warning("member %s reacts faster than %s allows; ignoring their reactions for now", member,
                        "limits.dms_per_minute" if dm else "limits.actions_per_minute")
        return False


def slow_down_text(wait_s: float, per_minute: int) -> str:
    return (f"Slow down: easel takes {per_minute} requests a minute from each member. "
            f"Try again in {max(1, math.ceil(wait_s))} s.")


_LIMITS: weakref.WeakKeyDictionary[Any, MemberLimits] = weakref.WeakKeyDictionary()


def limits_for(bot: Any) -> MemberLimits:
    """The limits of this bot (made from ``bot.config.limits`` on first use)."""
    limits = _LIMITS.get(bot)
    if limits is None:
        limits = _LIMITS[bot] = MemberLimits(bot.config.limits)
    return limits
