"""/easel settings channel: (a channel's own policy) and the effective settings /easel status shows."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import discord

from cogs.utils.gate import age_restricted
from cogs.utils.policy import settings_here
from cogs.utils.text import NO_MENTIONS
from storage.channels import COMMANDS, parse_commands

if TYPE_CHECKING:
    from bot import EaselBot
    from storage.channels import EffectiveSettings


def cap_text(bot: EaselBot, cap: int | None) -> str:
    """The bot's own per-member limit always applies, so a higher server cap changes nothing."""
    limit = bot.config.queue.per_user
    if cap is not None and cap > limit:
        return f"{limit} (this bot allows at most {limit})"
    return str(cap or limit)


def settings_lines(bot: EaselBot, settings: EffectiveSettings, channel: Any = None) -> str:
    """Each setting in force in a channel, and whether it is the channel's own or the server's."""
    def whose(key: str) -> str:
        return " (this channel)" if settings.from_channel(key) else " (server)"

    nsfw = ("everything shown (age-restricted channel)" if age_restricted(channel)
            else settings.nsfw_policy + whose("nsfw_policy"))
    commands = settings.allowed_commands
    return (f"NSFW outside age-restricted channels: {nsfw}\n"
            f"Jobs per member: {cap_text(bot, settings.per_user_cap)}{whose('per_user_cap')}\n"
            f"Default model: {settings.default_model or bot.config.model.display_name}{whose('default_model')}\n"
            f"Commands: {', '.join(f'/{c}' for c in commands) if commands else 'all'}"
            f"{' (this channel)' if commands else ''}")


async def effective_text(bot: EaselBot, interaction: discord.Interaction) -> str:
    """The settings in force in the channel the command runs in (for /easel status)."""
    settings = await settings_here(bot, interaction.guild_id, interaction.channel_id, interaction.channel)
    if settings is None:
        return ""
    return f"**Settings here** (<#{interaction.channel_id}>)\n" + settings_lines(bot, settings, interaction.channel)


async def channel_settings(bot: EaselBot, interaction: discord.Interaction, channel: discord.TextChannel | None, *,
                           nsfw: str | None, per_user_cap: int | None, default_model: str | None,
                           allowed_commands: str | None, reset: bool, other: bool) -> None:
    """Change (or ``reset``) one channel's own settings: the given ``channel``, else the one the
    command runs in. A ``per_user_cap`` of 0 and ``allowed_commands`` "all" go back to the server's."""
    async def answer(text: str) -> None:
        await interaction.response.send_message(text, ephemeral=True, allowed_mentions=NO_MENTIONS)

    assert interaction.guild_id is not None
    if other:
        await answer("enable_channel and disable_channel are server settings: give them without channel, "
                     "allowed_commands or reset.")
        return
    target = channel.id if channel is not None else interaction.channel_id
    assert target is not None
    store = bot.studio.database.channels
    changes: dict[str, Any] = {}
    if nsfw is not None:
        changes["nsfw_policy"] = nsfw
    if per_user_cap is not None:
        changes["per_user_cap"] = per_user_cap or None
    if default_model is not None:
        if default_model not in bot.studio.model_names():
            await answer(f"There is no model called {default_model!r}. Known: {', '.join(bot.studio.model_names())}.")
            return
        changes["default_model"] = default_model
    if allowed_commands is not None:
        try:
            changes["allowed_commands"] = parse_commands(allowed_commands)
        except ValueError as exc:
            await answer(f"{str(exc).capitalize()}. Example: `imagine, vary` ({', '.join(COMMANDS)}).")
            return
    if reset:
        if changes:
            await answer("reset makes the channel follow the server's settings: give it without other settings.")
            return
        await store.reset(target)
    elif changes:
        await store.update(interaction.guild_id, target, **changes)
    settings = await settings_here(bot, interaction.guild_id, target, channel or interaction.channel)
    assert settings is not None
    label = " (reset to the server's)" if reset else " (updated)" if changes else ""
    await answer(f"**easel settings in <#{target}>**{label}\n" + settings_lines(bot, settings, channel or
                                                                                interaction.channel))
