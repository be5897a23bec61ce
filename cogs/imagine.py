"""/imagine: text to image."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from cogs.utils.launch import guild_settings, launch
from cogs.utils.origin import InteractionOrigin
from inference.jobs import JobError
from inference.presets import ASPECTS
from inference.validation import MAX_COUNT, MAX_GUIDANCE, MAX_SEED, build_imagine

if TYPE_CHECKING:
    from bot import EaselBot


def choices(names: list[str], current: str) -> list[app_commands.Choice[str]]:
    current = current.lower()
    return [app_commands.Choice(name=n[:100], value=n[:100]) for n in names if current in n.lower()][:25]


def parse_loras(text: str | None, defaults: dict[str, float]) -> list[tuple[str, float]] | None:
    """``name`` or ``name:0.8``, several separated by commas; no weight means the configured one."""
    if not text:
        return None
    out = []
    for part in text.split(","):
        name, _, weight = part.strip().partition(":")
        name = name.strip()
        try:
            value = float(weight) if weight.strip() else defaults.get(name, 1.0)
        except ValueError:
            raise JobError(f"{weight.strip()!r} is not a LoRA weight: write it like `{name}:0.8`.") from None
        out.append((name, value))
    return out


class Imagine(commands.Cog):
    def __init__(self, bot: EaselBot) -> None:
        self.bot = bot

    @app_commands.command(name="imagine", description="Make an image from a text prompt")
    @app_commands.describe(
        prompt="What to paint", negative="What to avoid", count="How many images (a grid of up to 4)",
        aspect="Shape of the image", width="Width in pixels (multiple of 8)", height="Height in pixels",
        steps="Denoising steps (more is slower, finer)", guidance="How closely to follow the prompt",
        seed="Same seed + same settings = same image", model="Model to use", scheduler="Sampler",
        lora="LoRA style, e.g. pixel-art or pixel-art:0.7",
    )
    @app_commands.choices(aspect=[app_commands.Choice(name=a, value=a) for a in ASPECTS])
    async def imagine(self, interaction: discord.Interaction, prompt: app_commands.Range[str, 1, 4000],
                      negative: app_commands.Range[str, 0, 4000] | None = None,
                      count: app_commands.Range[int, 1, MAX_COUNT] = 1, aspect: str | None = None,
                      width: app_commands.Range[int, 64, 2048] | None = None,
                      height: app_commands.Range[int, 64, 2048] | None = None,
                      steps: app_commands.Range[int, 1, 150] | None = None,
                      guidance: app_commands.Range[float, 0.0, MAX_GUIDANCE] | None = None,
                      seed: app_commands.Range[int, 0, MAX_SEED] | None = None, model: str | None = None,
                      scheduler: str | None = None, lora: str | None = None) -> None:
        origin = InteractionOrigin(interaction)
        studio = self.bot.studio
        limits = self.bot.config.limits
        settings = await guild_settings(self.bot, origin)
        model = model or (settings.default_model if settings else None)

        def build(job_id: str):  # noqa: ANN202 - returns a Draft
            info = studio.model_info(model or "")
            defaults = {lo.name: lo.weight for lo in studio.engine.executor.model_config(model or "").loras}
            return build_imagine(job_id, interaction.user.id, info, prompt=prompt, negative=negative, count=count,
                                 aspect=aspect, width=width, height=height, steps=steps, guidance=guidance,
                                 seed=seed, scheduler=scheduler, loras=parse_loras(lora, defaults),
                                 max_prompt_chars=limits.max_prompt_chars)

        await launch(self.bot, origin, build)

    @imagine.autocomplete("model")
    async def _models(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        return choices(self.bot.studio.model_names(), current)

    @imagine.autocomplete("scheduler")
    async def _schedulers(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        return choices(self.bot.studio.sampler_names(), current)

    @imagine.autocomplete("lora")
    async def _loras(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        return choices(self.bot.studio.lora_names(), current)


async def setup(bot: EaselBot) -> None:
    await bot.add_cog(Imagine(bot))
