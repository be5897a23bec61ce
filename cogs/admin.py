"""/easel settings, /easel status, /easel stats and /easel anime, for members with Manage Server."""

from __future__ import annotations

import asyncio
import io
import time
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from cogs.utils import quota
from cogs.utils.channel_admin import cap_text, channel_settings, effective_text
from cogs.utils.launch import NSFW_POLICIES
from cogs.utils.text import NO_MENTIONS, duration
from inference.anime import STYLES
from inference.cluster.status import cluster_status
from inference.jobs import JobError
from storage.quotas import MAX_DAILY, MAX_WEIGHT
from studio_stats import DAY_S, DAYS, HOUR_S, summary_text, week_chart

if TYPE_CHECKING:
    from bot import EaselBot


def loaded_models_text(models: tuple[str, ...], parked: tuple[str, ...]) -> str:
    """``sd15, sdxl (in RAM)``: which models are loaded and which wait in CPU RAM."""
    if not models:
        return "none yet"
    return ", ".join(f"{m} (in RAM)" if m in parked else m for m in models)


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
                           default_model="Model used when a member does not pick one",
                           channel="Change these settings for this channel only (the server's apply elsewhere)",
                           allowed_commands="With channel: the commands allowed there, e.g. imagine, vary (or all)",
                           reset="With channel: forget that channel's own settings (it follows the server's)")
    @app_commands.choices(nsfw=[app_commands.Choice(name=p, value=p) for p in NSFW_POLICIES])
    async def settings(self, interaction: discord.Interaction, enable_channel: discord.TextChannel | None = None,
                       disable_channel: discord.TextChannel | None = None, nsfw: str | None = None,
                       per_user_cap: app_commands.Range[int, 0, 50] | None = None,
                       default_model: str | None = None, channel: discord.TextChannel | None = None,
                       allowed_commands: app_commands.Range[str, 1, 200] | None = None,
                       reset: bool = False) -> None:
        assert interaction.guild_id is not None
        if channel is not None or allowed_commands is not None or reset:
            await channel_settings(self.bot, interaction, channel, nsfw=nsfw, per_user_cap=per_user_cap,
                                   default_model=default_model, allowed_commands=allowed_commands, reset=reset,
                                   other=enable_channel is not None or disable_channel is not None)
            return
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
        return cap_text(self.bot, cap)

    @settings.autocomplete("default_model")
    async def _models(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        return [app_commands.Choice(name=n, value=n) for n in self.bot.studio.model_names() if current in n][:25]

    @app_commands.command(name="limits", description="Images a member may make per day here; roles' own limits and queue weight")
    @app_commands.describe(daily="Images per member per day on this server (0 = no limit)",
                           role="A role to give its own daily limit (with role_daily)",
                           role_daily="Images per day for members with that role (0 = no limit)",
                           role_weight="Jobs per turn in the queue for members with that role (1-5; others keep 1)",
                           clear_role="Take this role's own limit and weight away")
    async def limits(self, interaction: discord.Interaction,
                     daily: app_commands.Range[int, 0, MAX_DAILY] | None = None, role: discord.Role | None = None,
                     role_daily: app_commands.Range[int, 0, MAX_DAILY] | None = None,
                     role_weight: app_commands.Range[int, 1, MAX_WEIGHT] | None = None,
                     clear_role: discord.Role | None = None) -> None:
        assert interaction.guild_id is not None
        try:
            text = await quota.change_limits(self.bot, interaction.guild_id, daily=daily, role=role,
                                             role_daily=role_daily, role_weight=role_weight, clear_role=clear_role)
        except JobError as exc:
            text = str(exc)
        await interaction.response.send_message(text, ephemeral=True, allowed_mentions=NO_MENTIONS)

    @app_commands.command(name="status", description="Device, model, queue and uptime")
    async def status(self, interaction: discord.Interaction) -> None:
        s = self.bot.studio.engine.status()
        counts = await self.bot.studio.database.jobs.counts()
        where = f"device `{s.device}`" + (f" ({s.dtype})" if s.dtype not in ("remote", "cluster") else "")
        backend = "cluster" if self.bot.config.cluster.redis_url else self.bot.config.backend
        text = (f"**easel status**\nBackend: {backend} \u00b7 {where}\n"
                f"Models loaded: {loaded_models_text(s.models, s.parked)}\n"
                f"Queue: {s.queued} waiting, {s.running} running\n"
                f"Served since start: {s.served} ({s.failed} failed) \u00b7 all time: "
                f"{counts.get('delivered', 0)} delivered\n"
                f"Uptime: {duration(time.time() - self.bot.started_at)}\n"
                + await effective_text(self.bot, interaction))
        if workers := await cluster_status(self.bot.studio.engine.executor):
            text += "\n" + workers
        await interaction.response.send_message(text, ephemeral=True, allowed_mentions=NO_MENTIONS)

    @app_commands.command(name="stats", description="This server's last 7 days: jobs, queue waits, GPU use, top models")
    async def stats(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        now = time.time()
        timings = await self.bot.studio.database.job_timings(now - DAYS * DAY_S - HOUR_S)
        guild_id = interaction.guild.id if interaction.guild is not None else None
        week, png = await asyncio.to_thread(week_chart, timings, guild_id, now, self.bot.config.model.display_name)
        await interaction.followup.send(summary_text(week), file=discord.File(io.BytesIO(png), "easel-stats.png"),
                                        ephemeral=True, allowed_mentions=NO_MENTIONS)

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
