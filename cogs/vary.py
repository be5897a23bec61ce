"""/vary: image-to-image variations of an uploaded image, on any configured model."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from cogs.utils.inputs import load_pending
from cogs.utils.launch import launch, too_fast
from cogs.utils.member_prefs import with_prefs
from cogs.utils.options import AUTOCOMPLETE, DESCRIPTIONS, SPACING_CHOICES, DiffusionOptions, chosen_model
from cogs.utils.origin import InteractionOrigin
from inference.imaging import ImageInputError
from inference.validation import MAX_COUNT, MAX_GUIDANCE, MAX_SEED, Draft, build_vary

if TYPE_CHECKING:
    from bot import EaselBot


class Vary(commands.Cog):
    def __init__(self, bot: EaselBot) -> None:
        self.bot = bot

    @app_commands.command(name="vary", description="Variations of an image")
    @app_commands.describe(image="The image to start from", prompt="What the variation should show (optional)",
                           strength="How far to move away from the image (0.05-1)", seed="Seed for repeatable results",
                           count="How many variations (up to 4)", **DESCRIPTIONS)
    @app_commands.choices(spacing=SPACING_CHOICES)
    @app_commands.autocomplete(**AUTOCOMPLETE)
    async def vary(self, interaction: discord.Interaction, image: discord.Attachment,
                   prompt: app_commands.Range[str, 0, 4000] | None = None,
                   strength: app_commands.Range[float, 0.05, 1.0] | None = None,
                   seed: app_commands.Range[int, 0, MAX_SEED] | None = None,
                   count: app_commands.Range[int, 1, MAX_COUNT] = 1,
                   negative: app_commands.Range[str, 0, 4000] | None = None,
                   steps: app_commands.Range[int, 1, 150] | None = None,
                   guidance: app_commands.Range[float, 0.0, MAX_GUIDANCE] | None = None,
                   model: str | None = None, scheduler: str | None = None, spacing: str | None = None,
                   eta: app_commands.Range[float, 0.0, 1.0] | None = None, lora: str | None = None,
                   style: str | None = None) -> None:
        origin = InteractionOrigin(interaction)
        if await too_fast(self.bot, origin):
            return
        limits = self.bot.config.limits
        try:
            source = await origin.in_time(load_pending(self.bot.studio, image, limits))
        except ImageInputError as exc:
            await origin.error(str(exc))
            return
        mine = await with_prefs(self.bot, interaction.user.id, model=model, negative=negative,
                                scheduler=scheduler)  # /prefs
        name = await chosen_model(self.bot, origin, mine.model)
        options = DiffusionOptions(negative=mine.negative, steps=steps, guidance=guidance, scheduler=mine.scheduler,
                                   spacing=spacing, eta=eta, lora=lora, style=style)

        def build(job_id: str) -> Draft:
            info, common = options.for_model(self.bot, name)
            return build_vary(job_id, interaction.user.id, info, init_image=source.path, source_size=source.size,
                              prompt=prompt, strength=strength, seed=seed, count=count, **common)

        await launch(self.bot, origin, build, inputs=(source,))


async def setup(bot: EaselBot) -> None:
    await bot.add_cog(Vary(bot))
