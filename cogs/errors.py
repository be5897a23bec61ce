"""One place that turns any failure of an app command into a short ephemeral message.

Expected refusals (bad input, full queue, missing permission) are shown as they are; anything
else is logged with a reference the member can quote to an admin. No traceback reaches Discord.
"""

from __future__ import annotations

import logging
import secrets
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from cogs.utils.text import NO_MENTIONS, fit_message
from inference.jobs import JobError

if TYPE_CHECKING:
    from bot import EaselBot

log = logging.getLogger(__name__)

DISCORD_NAMES = {"manage_guild": "Manage Server", "manage_messages": "Manage Messages"}  # as Discord's UI says


def message_for(error: Exception) -> tuple[str, bool]:
    """(text for the member, whether it was expected)."""
    original = getattr(error, "original", error)
    if isinstance(original, JobError):
        return str(original), True
    if isinstance(error, app_commands.MissingPermissions):
        perms = ", ".join(DISCORD_NAMES.get(p, p.replace("_", " ").title()) for p in error.missing_permissions)
        return f"You need the {perms} permission for that.", True
    if isinstance(error, app_commands.NoPrivateMessage):
        return "That command only works in a server.", True
    if isinstance(error, app_commands.CommandOnCooldown):
        return f"Slow down a little: try again in {error.retry_after:.0f} s.", True
    if isinstance(error, app_commands.CheckFailure):
        return "You cannot use that here.", True
    if isinstance(error, app_commands.TransformerError):
        return f"I could not understand {error.value!r} for that option.", True
    return "", False


async def reply(interaction: discord.Interaction, text: str) -> None:
    text = fit_message(text)
    try:
        if interaction.response.is_done():
            await interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_MENTIONS)
        else:
            await interaction.response.send_message(text, ephemeral=True, allowed_mentions=NO_MENTIONS)
    except discord.HTTPException as exc:
        log.warning("could not tell %s about an error: %s", interaction.user.id, exc)


class Errors(commands.Cog):
    def __init__(self, bot: EaselBot) -> None:
        self.bot = bot
        self._previous = bot.tree.on_error

    async def cog_load(self) -> None:
        self.bot.tree.on_error = self.on_app_command_error  # type: ignore[method-assign]

    async def cog_unload(self) -> None:
        self.bot.tree.on_error = self._previous  # type: ignore[method-assign]

    async def on_app_command_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        text, expected = message_for(error)
        if not expected:
            ref = secrets.token_hex(3)
            command = interaction.command.qualified_name if interaction.command else "?"
            log.error("command %s failed for user %s (ref %s)", command, interaction.user.id, ref,
                      exc_info=getattr(error, "original", error))
            text = f"Something went wrong on my side (ref `{ref}`). Please try again; if it keeps failing, tell an admin."
        await reply(interaction, text)


async def setup(bot: EaselBot) -> None:
    await bot.add_cog(Errors(bot))
