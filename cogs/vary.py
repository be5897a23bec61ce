"""/vary: image-to-image variations of an uploaded image."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from cogs.utils.inputs import load_pending
from cogs.utils.launch import launch, too_fast
from cogs.utils.origin import InteractionOrigin
from inference.imaging import ImageInputError
from inference.validation import MAX_COUNT, MAX_SEED, build_vary

if TYPE_CHECKING:
    from bot import EaselBot


class Vary(commands.Cog):
    def __init__(self, bot: EaselBot) -> None:
        self.bot = bot

    @app_commands.command(name="vary", description="Variations of an image")
    @app_commands.describe(image="The image to start from", prompt="What the variation should show (optional)",
                           strength="How far to move away from the image (0.05-1)", seed="Seed for repeatable results",
                           count="How many variations (up to 4)")
    async def vary(self, interaction: discord.Interaction, image: discord.Attachment,
                   prompt: app_commands.Range[str, 0, 4000] | None = None,
                   strength: app_commands.Range[float, 0.05, 1.0] | None = None,
                   seed: app_commands.Range[int, 0, MAX_SEED] | None = None,
                   count: app_commands.Range[int, 1, MAX_COUNT] = 1) -> None:
        origin = InteractionOrigin(interaction)
        if await too_fast(self.bot, origin):
            return
        limits = self.bot.config.limits
        try:
            source = await origin.in_time(load_pending(self.bot.studio, image, limits))
        except ImageInputError as exc:
            await origin.error(str(exc))
            return
        info = self.bot.studio.model_info()
        await launch(self.bot, origin, lambda job_id: build_vary(
            job_id, interaction.user.id, info, init_image=source.path, source_size=source.size, prompt=prompt,
            strength=strength, seed=seed, count=count, max_prompt_chars=limits.max_prompt_chars), inputs=(source,))


async def setup(bot: EaselBot) -> None:
    await bot.add_cog(Vary(bot))
