"""/upscale: enlarge any image with the server's upscaler (subtle), or upscale and refine it with
image-to-image (creative). The buttons under results and the *Upscale* context menu run the same
code (cogs/utils/actions.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from cogs.utils import gate
from cogs.utils.actions import upscale_file, upscale_refusal
from cogs.utils.inputs import load_pending
from cogs.utils.launch import too_fast
from cogs.utils.origin import InteractionOrigin
from inference.imaging import ImageInputError
from inference.jobs import JobError
from inference.upscale.options import DEFAULT_FACTOR, FACTORS, MODES

if TYPE_CHECKING:
    from bot import EaselBot


class Upscale(commands.Cog):
    def __init__(self, bot: EaselBot) -> None:
        self.bot = bot

    @app_commands.command(name="upscale", description="Enlarge an image with the server's upscaler")
    @app_commands.describe(image="The picture to enlarge", factor=f"How many times larger (default {DEFAULT_FACTOR})",
                           mode="subtle: the upscaler alone; creative: then refined with image-to-image",
                           prompt="What the picture shows (steers a creative upscale)")
    @app_commands.choices(factor=[app_commands.Choice(name=f"{f}x", value=f) for f in FACTORS],
                          mode=[app_commands.Choice(name=m, value=m) for m in MODES])
    async def upscale(self, interaction: discord.Interaction, image: discord.Attachment, factor: int | None = None,
                      mode: str | None = None, prompt: str | None = None) -> None:
        origin = InteractionOrigin(interaction)
        refusal = upscale_refusal(self.bot)  # before downloading anything
        if refusal:
            await origin.error(refusal)
            return
        if await too_fast(self.bot, origin):
            return
        try:
            source = await origin.in_time(load_pending(self.bot.studio, image, self.bot.config.limits))
            await upscale_file(self.bot, origin, source.path, source.size, factor=factor, mode=mode,
                               inputs=(source,), source=gate.NO_FLAGS, prompt=prompt)
        except (ImageInputError, JobError) as exc:
            await origin.error(str(exc))


async def setup(bot: EaselBot) -> None:
    await bot.add_cog(Upscale(bot))
