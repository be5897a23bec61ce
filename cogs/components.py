"""Registers the restart-proof result buttons (see cogs/utils/buttons.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cogs.utils.buttons import EaselButton

if TYPE_CHECKING:
    from bot import EaselBot


async def setup(bot: EaselBot) -> None:
    bot.add_dynamic_items(EaselButton)


async def teardown(bot: EaselBot) -> None:
    bot.remove_dynamic_items(EaselButton)
