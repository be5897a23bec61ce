"""/easel settings, /easel status and /easel anime, for members with Manage Server."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from cogs.utils.launch import NSFW_POLICIES
from cogs.utils.text import NO_MENTIONS, duration
from inference.anime import STYLES

if TYPE_CHECKING:
    from bot import EaselBot


@app_commands.guild_only()
@app_commands.default_permissions(manage_guild=True)
class EaselAdmin(commands.GroupCog, group_name="easel", group_description="Set up easel for this server"):
    def __init__(self, bot: EaselBot) -> None:
        self.bot = bot
        super().__init__()

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        if not interaction.permissions.manage_guild:
            raise app_commands.MissingPermissions(["manage_guild"])
        return True

    @app_commands.command(name="settings", description="Show or change easel's settings for this server")
    @app_commands.describe(enable_channel="Allow easel in this channel (once any is enabled, only those)",
                           disable_channel="Stop allowing easel in this channel",
                           nsfw="NSFW results outside age-restricted channels: block, spoiler or off",
                           per_user_cap="Jobs one member may have queued at once (0 = the bot's default)",
                           default_model="Model used when a member does not pick one")
    @app_commands.choices(nsfw=[app_commands.Choice(name=p, value=p) for p in NSFW_POLICIES])
    async def settings(self, interaction: discord.Interaction, enable_channel: discord.TextChannel | None = None,
                       disable_channel: discord.TextChannel | None = None, nsfw: str | None = None,
                       per_user_cap: app_commands.Range[int, 0, 50] | None = None,
                       default_model: str | None = None) -> None:
        assert interaction.guild_id is not None
        store = self.bot.studio.database.settings
        current = await store.guild(interaction.guild_id)
        changes: dict[str, Any] = {}
        channels = list(current.enabled_channels)
        if enable_channel is not None and enable_channel.id not in channels:
            channels.append(enable_channel.id)
        if disable_channel is not None and disable_channel.id in channels:
            channels.remove(disable_channel.id)
        if tuple(channels) != current.enabled_channels:
            changes["enabled_channels"] = tuple(channels)
        if nsfw is not None:
            changes["nsfw_policy"] = nsfw
        if per_user_cap is not None:
            changes["per_user_cap"] = per_user_cap or None
        if default_model is not None:
            if default_model not in self.bot.studio.model_names():
                await interaction.response.send_message(
                    f"There is no model called {default_model!r}. Known: {', '.join(self.bot.studio.model_names())}.",
                    ephemeral=True, allowed_mentions=NO_MENTIONS)
                return
            changes["default_model"] = default_model
        if changes:
            current = await store.update_guild(interaction.guild_id, **changes)
        where = ", ".join(f"<#{c}>" for c in current.enabled_channels) or "every channel"
        text = (f"**easel settings**{' (updated)' if changes else ''}\n"
                f"Channels: {where}\nNSFW outside age-restricted channels: {current.nsfw_policy}\n"
                f"Jobs per member: {self._cap_text(current.per_user_cap)}\n"
                f"Default model: {current.default_model or self.bot.config.model.display_name}")
        await interaction.response.send_message(text, ephemeral=True, allowed_mentions=NO_MENTIONS)

    def _cap_text(self, cap: int | None) -> str:
        """The bot's own per-member limit always applies, so a higher server cap changes nothing."""
        limit = self.bot.config.queue.per_user
        if cap is not None and cap > limit:
            return f"{limit} (this bot allows at most {limit})"
        return str(cap or limit)

    @settings.autocomplete("default_model")
    async def _models(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        return [app_commands.Choice(name=n, value=n) for n in self.bot.studio.model_names() if current in n][:25]

    @app_commands.command(name="status", description="Device, model, queue and uptime")
    async def status(self, interaction: discord.Interaction) -> None:
        s = self.bot.studio.engine.status()
        counts = await self.bot.studio.database.jobs.counts()
        where = f"device `{s.device}`" + (f" ({s.dtype})" if s.dtype != "remote" else "")
        text = (f"**easel status**\nBackend: {self.bot.config.backend} \u00b7 {where}\n"
                f"Models loaded: {', '.join(s.models) or 'none yet'}\n"
                f"Queue: {s.queued} waiting, {s.running} running\n"
                f"Served since start: {s.served} ({s.failed} failed) \u00b7 all time: "
                f"{counts.get('delivered', 0)} delivered\n"
                f"Uptime: {duration(time.time() - self.bot.started_at)}")
        await interaction.response.send_message(text, ephemeral=True, allowed_mentions=NO_MENTIONS)

    @app_commands.command(name="anime", description="Whether the anime filter's weights are in place; fetch missing ones")
    async def anime(self, interaction: discord.Interaction) -> None:
        """Server paths stay out of Discord: where each file goes is in the bot's log and ``--check``."""
        store = self.bot.studio.anime_weights
        ready = await asyncio.to_thread(store.ready)  # may hash a file the first time (anime.sha256)
        missing = [style for style in STYLES if style not in ready]
        text = f"**AnimeGAN2 weights**\nReady: {', '.join(ready) or 'none'}"
        if missing:
            text += f"\nMissing: {', '.join(missing)}\n"
            if not store.download:
                text += "Downloads are off (`anime.download = false`)."
            elif store.fetch_in_background(missing):
                text += "Downloading them now, off the image thread; /anime takes each style as soon as its file is in place."
            else:
                text += "A download is already under way; ask again in a minute."
            text += " Where the files go: the bot's log, or `python bot.py --check` on the server."
        await interaction.response.send_message(text, ephemeral=True, allowed_mentions=NO_MENTIONS)


async def setup(bot: EaselBot) -> None:
    await bot.add_cog(EaselAdmin(bot))
