"""/paint: inpainting. What to repaint comes from a mask upload, named regions or a box."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands
from PIL import Image

from cogs.utils.gate import NO_FLAGS, Flags
from cogs.utils.inputs import PendingInput, decode_mask_for, load_pending, pending, read_attachment
from cogs.utils.launch import launch, too_fast
from cogs.utils.member_prefs import with_prefs
from cogs.utils.options import (
    AUTOCOMPLETE,
    DESCRIPTIONS,
    NO_OPTIONS,
    SPACING_CHOICES,
    DiffusionOptions,
    chosen_model,
)
from cogs.utils.origin import InteractionOrigin, Origin
from inference.imaging import ImageInputError, box_mask, feather, parse_box, region_mask
from inference.jobs import JobError
from inference.validation import MAX_GUIDANCE, MAX_SEED, Draft, build_paint

if TYPE_CHECKING:
    from bot import EaselBot

HOW_TO_CHOOSE = ("Choose what to repaint: upload a `mask` (white = repaint), or give a `region` such as "
                 "`top-left`, `centre` or grid cells `A1`..`C3` (A-C columns, 1-3 rows), or a `box` in percent "
                 "`x,y,width,height`.")


def build_mask(size: tuple[int, int], *, mask: Image.Image | None, region: str | None, box: str | None) -> Image.Image:
    """The repaint mask (white = repaint), feathered so the new part blends in."""
    if mask is None and region:
        mask = region_mask(region, size)
    elif mask is None and box:
        mask = box_mask(parse_box(box), size)
    if mask is None:
        raise JobError(HOW_TO_CHOOSE)
    return feather(mask)


async def paint_request(bot: EaselBot, origin: Origin, source: PendingInput, prompt: str | None, *,
                        mask_upload: bytes | None = None, region: str | None = None, box: str | None = None,
                        strength: float | None = None, seed: int | None = None, model: str | None = None,
                        options: DiffusionOptions = NO_OPTIONS,
                        source_flags: Flags = NO_FLAGS) -> str | None:
    """Shared by /paint and the "Paint..." context menu. ``source_flags``: the NSFW flags of the
    result painted on, when it is one of ours (cogs/utils/gate.py)."""
    limits = bot.config.limits
    try:
        mask = await origin.in_time(decode_mask_for(mask_upload, source.size, limits)) if mask_upload else None
        mask = await origin.in_time(asyncio.to_thread(build_mask, source.size, mask=mask, region=region, box=box))
        named_mask = await origin.in_time(pending(bot.studio, mask))
    except (ImageInputError, JobError) as exc:
        await origin.error(str(exc))
        return None
    name = await chosen_model(bot, origin, model)

    def build(job_id: str) -> Draft:
        info, common = options.for_model(bot, name)
        return build_paint(job_id, origin.user.id, info, init_image=source.path, mask_image=named_mask.path,
                           source_size=source.size, prompt=prompt, strength=strength, seed=seed, **common)

    return await launch(bot, origin, build, inputs=(source, named_mask), source=source_flags)


class Paint(commands.Cog):
    def __init__(self, bot: EaselBot) -> None:
        self.bot = bot

    @app_commands.command(name="paint", description="Repaint part of an image")
    @app_commands.describe(image="The image to paint on", prompt="What to paint there",
                           mask="A mask image: white = repaint, black = keep",
                           region="Regions to repaint: left, top-right, centre, A1..C3 (several allowed)",
                           box="A box in percent: x,y,width,height (e.g. 25,25,50,50)",
                           strength="How much to change the area (0.05-1)", seed="Seed for repeatable results",
                           **DESCRIPTIONS)
    @app_commands.choices(spacing=SPACING_CHOICES)
    @app_commands.autocomplete(**AUTOCOMPLETE)
    async def paint(self, interaction: discord.Interaction, image: discord.Attachment,
                    prompt: app_commands.Range[str, 1, 4000], mask: discord.Attachment | None = None,
                    region: app_commands.Range[str, 1, 100] | None = None,
                    box: app_commands.Range[str, 1, 40] | None = None,
                    strength: app_commands.Range[float, 0.05, 1.0] | None = None,
                    seed: app_commands.Range[int, 0, MAX_SEED] | None = None,
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
            mask_data = await origin.in_time(read_attachment(mask, limits, "mask")) if mask is not None else None
        except ImageInputError as exc:
            await origin.error(str(exc))
            return
        mine = await with_prefs(self.bot, interaction.user.id, model=model, negative=negative,
                                scheduler=scheduler)  # /prefs
        options = DiffusionOptions(negative=mine.negative, steps=steps, guidance=guidance, scheduler=mine.scheduler,
                                   spacing=spacing, eta=eta, lora=lora, style=style)
        await paint_request(self.bot, origin, source, prompt, mask_upload=mask_data, region=region, box=box,
                            strength=strength, seed=seed, model=mine.model, options=options)


async def setup(bot: EaselBot) -> None:
    await bot.add_cog(Paint(bot))
