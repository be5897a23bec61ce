"""/imagine: text to image."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from cogs.utils import gate
from cogs.utils.control import DESCRIPTIONS as CONTROL_DESCRIPTIONS
from cogs.utils.control import complete_control_modes, control_inputs
from cogs.utils.inputs import load_pending
from cogs.utils.launch import launch, too_fast
from cogs.utils.member_prefs import with_prefs
from cogs.utils.options import AUTOCOMPLETE, DESCRIPTIONS, SPACING_CHOICES, DiffusionOptions, chosen_model
from cogs.utils.origin import InteractionOrigin
from inference.imaging import ImageInputError
from inference.presets import ASPECTS
from inference.validation import MAX_COUNT, MAX_GUIDANCE, MAX_SEED, Draft, build_imagine, fit_source_size

if TYPE_CHECKING:
    from bot import EaselBot


class Imagine(commands.Cog):
    def __init__(self, bot: EaselBot) -> None:
        self.bot = bot

    @app_commands.command(name="imagine", description="Make an image from a text prompt")
    @app_commands.describe(
        prompt="What to paint", count="How many images (a grid of up to 4)", aspect="Shape of the image",
        width="Width in pixels (multiple of 8)", height="Height in pixels",
        seed="Same seed + same settings = same image", tile="A seamless tile: the image repeats without seams",
        style_ref="A picture whose look (colours, textures, mood) to follow",
        style_ref_strength="How strongly to follow style_ref (0-1)", **DESCRIPTIONS, **CONTROL_DESCRIPTIONS,
    )
    @app_commands.choices(aspect=[app_commands.Choice(name=a, value=a) for a in ASPECTS], spacing=SPACING_CHOICES)
    @app_commands.autocomplete(**AUTOCOMPLETE, control_mode=complete_control_modes)
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
                      style: str | None = None, style_ref: discord.Attachment | None = None,
                      style_ref_strength: app_commands.Range[float, 0.0, 1.0] | None = None,
                      tile: bool = False, control: discord.Attachment | None = None,
                      control_mode: str | None = None,
                      control_strength: app_commands.Range[float, 0.0, 2.0] | None = None) -> None:
        origin = InteractionOrigin(interaction)
        controls = await control_inputs(self.bot, origin, control)  # ControlNet: the upload (cogs/utils/control.py)
        if controls is None:
            return
        style_source = None
        if style_ref is not None:  # stored as a job input, as /vary stores its upload
            if await too_fast(self.bot, origin):
                return
            try:
                style_source = await origin.in_time(load_pending(self.bot.studio, style_ref, self.bot.config.limits))
            except ImageInputError as exc:
                await origin.error(str(exc))
                return
        mine = await with_prefs(self.bot, interaction.user.id, model=model, negative=negative, scheduler=scheduler,
                                aspect=aspect, sized=width is not None or height is not None)  # /prefs
        name = await chosen_model(self.bot, origin, mine.model)
        options = DiffusionOptions(negative=mine.negative, steps=steps, guidance=guidance, scheduler=mine.scheduler,
                                   spacing=spacing, eta=eta, lora=lora, style=style)

        def build(job_id: str) -> Draft:
            info, common = options.for_model(self.bot, name)
            size, shape = (width, height), mine.aspect
            if controls and aspect is None and width is None and height is None:
                # The control picture's shape: what the member asks wins, then the picture, then /prefs.
                size, shape = fit_source_size(info.preset, controls[0].size), None
            return build_imagine(job_id, interaction.user.id, info, prompt=prompt, count=count, aspect=shape,
                                 width=size[0], height=size[1], seed=seed, tile=tile, **common,
                                 style_image=style_source.path if style_source else None,
                                 style_strength=style_ref_strength,
                                 control_image=controls[0].path if controls else None, control_mode=control_mode,
                                 control_strength=control_strength)

        await launch(self.bot, origin, build, inputs=((style_source,) if style_source else ()) + controls,
                     source=gate.spoilered_by_member([control] if control is not None else []))


async def setup(bot: EaselBot) -> None:
    await bot.add_cog(Imagine(bot))
