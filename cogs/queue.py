"""/queue: the queue as a member sees it, with Cancel buttons for their own jobs."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from cogs.utils import quota
from cogs.utils.buttons import EaselButton
from cogs.utils.text import NO_MENTIONS, duration

if TYPE_CHECKING:
    from bot import EaselBot


class Queue(commands.Cog):
    def __init__(self, bot: EaselBot) -> None:
        self.bot = bot

    @app_commands.command(name="queue", description="See the queue and cancel your jobs")
    async def queue(self, interaction: discord.Interaction) -> None:
        engine = self.bot.studio.engine
        me = interaction.user.id
        started, not_started = engine.running(), engine.waiting()  # a job handed to the GPU thread waits until it starts
        running = [j for j in started if j.owner == me]
        waiting = [j for j in not_started if j.owner == me]
        lines = [f"**{len(not_started)}** waiting, {len(started)} running."]
        view = discord.ui.View(timeout=300)
        for job in running:
            lines.append(f"\U0001f3a8 `{job.job_id}` {job.kind}: running now")
        for job in waiting:
            where = engine.position(job.job_id)
            if where is not None:
                pos, total, eta = where
                lines.append(f"\u23f3 `{job.job_id}` {job.kind}: position {pos} of {total}, about {duration(eta)}")
        for job in (running + waiting)[:25]:
            view.add_item(EaselButton("c", job.job_id, label=f"Cancel {job.job_id}", emoji="\u2716\ufe0f"))
        if not running and not waiting:
            lines.append("You have no jobs in the queue.")
        used = await quota.usage(self.bot, interaction.guild, interaction.user)
        if used is not None:
            lines.append(f"\U0001f4ca {used.text()}.")
        await interaction.response.send_message("\n".join(lines), view=view, ephemeral=True,
                                                allowed_mentions=NO_MENTIONS)


async def setup(bot: EaselBot) -> None:
    await bot.add_cog(Queue(bot))
