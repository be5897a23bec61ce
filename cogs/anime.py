"""/anime: the AnimeGAN2 face2paint filter (a small GAN, not diffusion)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from cogs.utils.actions import anime_file
from cogs.utils.inputs import load_pending
from cogs.utils.launch import too_fast
from cogs.utils.origin import InteractionOrigin
from inference.anime import STYLES
from inference.imaging import ImageInputError

if TYPE_CHECKING:
    from bot import EaselBot


class Anime(commands.Cog):
    def __init__(self, bot: EaselBot) -> None:
        self.bot = bot

    @app_commands.command(name="anime", description="Turn a portrait into an anime-style painting (AnimeGAN2)")
    @app_commands.describe(image="A photo or picture, ideally with a face", style="Painting style",
                           whole_image="Paint the whole picture instead of a square around the face")
    @app_commands.choices(style=[app_commands.Choice(name=s, value=s) for s in STYLES])
    async def anime(self, interaction: discord.Interaction, image: discord.Attachment, style: str | None = None,
                    whole_image: bool = False) -> None:
        origin = InteractionOrigin(interaction)
        if await too_fast(self.bot, origin):
            return
        limits = self.bot.config.limits
        try:
            source = await origin.in_time(load_pending(self.bot.studio, image, limits))
        except ImageInputError as exc:
            await origin.error(str(exc))
            return
        await anime_file(self.bot, origin, source.path, style, whole_image, inputs=(source,))


async def setup(bot: EaselBot) -> None:
    await bot.add_cog(Anime(bot))
