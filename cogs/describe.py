"""/describe: prompt suggestions for an image (a captioning model), with *Imagine 1-4* buttons."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from cogs.utils.describing import describe_file
from cogs.utils.inputs import load_pending
from cogs.utils.launch import too_fast
from cogs.utils.origin import InteractionOrigin
from inference.imaging import ImageInputError

if TYPE_CHECKING:
    from bot import EaselBot


class Describe(commands.Cog):
    def __init__(self, bot: EaselBot) -> None:
        self.bot = bot

    @app_commands.command(name="describe", description="Suggest prompts for an image; Imagine buttons make them")
    @app_commands.describe(image="A photo or picture to describe")
    async def describe(self, interaction: discord.Interaction, image: discord.Attachment) -> None:
        origin = InteractionOrigin(interaction)
        if await too_fast(self.bot, origin):
            return
        try:
            source = await origin.in_time(load_pending(self.bot.studio, image, self.bot.config.limits))
        except ImageInputError as exc:
            await origin.error(str(exc))
            return
        await describe_file(self.bot, origin, source.path, inputs=(source,))


async def setup(bot: EaselBot) -> None:
    await bot.add_cog(Describe(bot))
