"""A member's own defaults (/prefs), filled in where they left an option out.

The order, for each option: what the member typed, else their preference, else the channel's
(or server's) default, else the configured one. A preference that no longer fits (a model or
sampler taken out of the configuration since) is skipped rather than refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from inference.presets import ASPECTS

if TYPE_CHECKING:
    from bot import EaselBot


@dataclass(frozen=True)
class Chosen:
    """The options of one request after the member's preferences filled the gaps (None: not set)."""

    model: str | None = None
    negative: str | None = None
    scheduler: str | None = None
    aspect: str | None = None


async def with_prefs(bot: EaselBot, member: int, *, model: str | None, negative: str | None,
                     scheduler: str | None, aspect: str | None = None, sized: bool = False) -> Chosen:
    """``model``/``negative``/``scheduler``/``aspect`` as the member gave them, gaps filled from
    their preferences. ``sized``: the member gave a width or height, so no preferred aspect."""
    prefs = await bot.studio.database.settings.user(member)
    studio = bot.studio
    if model is None and prefs.default_model in studio.model_names():
        model = prefs.default_model
    if negative is None:
        negative = prefs.negative
    if scheduler is None and prefs.sampler in studio.sampler_names():
        scheduler = prefs.sampler
    if aspect is None and not sized and prefs.default_aspect in ASPECTS:
        aspect = prefs.default_aspect
    return Chosen(model, negative, scheduler, aspect)
