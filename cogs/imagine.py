"""/imagine: text to image."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from cogs.utils.launch import launch
from cogs.utils.options import AUTOCOMPLETE, DESCRIPTIONS, SPACING_CHOICES, DiffusionOptions, chosen_model
from cogs.utils.origin import InteractionOrigin
from inference.presets import ASPECTS
from inference.validation import MAX_COUNT, MAX_GUIDANCE, MAX_SEED, Draft, build_imagine

if TYPE_CHECKING:
    from bot import EaselBot


class Imagine(commands.Cog):
    def __init__(self, bot: EaselBot) -> None:
        self.bot = bot

    @app_commands.command(name="imagine", description="Make an image from a text prompt")
    @app_commands.describe(
        prompt="What to paint", count="How many images (a grid of up to 4)", aspect="Shape of the image",
        width="Width in pixels (multiple of 8)", height="Height in pixels",
        seed="Same seed + same settings = same image", **DESCRIPTIONS,
    )
    @app_commands.choices(aspect=[app_commands.Choice(name=a, value=a) for a in ASPECTS], spacing=SPACING_CHOICES)
    @app_commands.autocomplete(**AUTOCOMPLETE)
    async def imagine(self, interaction: discord.Interaction, prompt: app_commands.Range[str, 1, 4000],
                      negative: app_commands.Range[str, 0, 4000] | None = None,
                      count: app_commands.Range[int, 1, MAX_COUNT] = 1, aspect: str | None = None,
                      width: app_commands.Range[int, 64, 2048] | None = None,
                      height: app_commands.Range[int, 64, 2048] | None = None,
                      steps: app_commands.Range[int, 1, 150] | None = None,
                      guidance: app_commands.Range[float, 0.0, MAX_GUIDANCE] | None = None,
                      seed: app_commands.Range[int, 0, MAX_SEED] | None = None, model: str | None = None,
                      scheduler: str | None = None, spacing: str | None = None,
                      eta: app_commands.Range[float, 0.0, 1.0] | None = None, lora: str | None = None,
                      style: str | None = None) -> None:
        origin = InteractionOrigin(interaction)
        name = await chosen_model(self.bot, origin, model)
        options = DiffusionOptions(negative=negative, steps=steps, guidance=guidance, scheduler=scheduler,
                                   spacing=spacing, eta=eta, lora=lora, style=style)

        def build(job_id: str) -> Draft:
            info, common = options.for_model(self.bot, name)
            return build_imagine(job_id, interaction.user.id, info, prompt=prompt, count=count, aspect=aspect,
                                 width=width, height=height, seed=seed, **common)

        await launch(self.bot, origin, build)


async def setup(bot: EaselBot) -> None:
    await bot.add_cog(Imagine(bot))
