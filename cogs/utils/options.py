"""The diffusion options /imagine, /vary and /paint share: descriptions, autocomplete, parsing,
and which model a request runs on.

Each command still lists the options in its own signature (discord.py reads them from there); the
decorators here give them the same descriptions, choices and autocomplete everywhere::

    @app_commands.describe(**DESCRIPTIONS, ...)
    @app_commands.autocomplete(**AUTOCOMPLETE)
    @app_commands.choices(spacing=SPACING_CHOICES)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import discord
from discord import app_commands

from cogs.utils.launch import guild_settings
from cogs.utils.origin import Origin
from cogs.utils.prompt_complete import complete_prompt
from inference.jobs import JobError
from inference.samplers import SPACINGS
from inference.validation import CommonOptions, ModelInfo

if TYPE_CHECKING:
    from bot import EaselBot

DESCRIPTIONS = {
    "negative": "What to avoid",
    "steps": "Denoising steps (more is slower, finer)",
    "guidance": "How closely to follow the prompt",
    "model": "Model to use",
    "scheduler": "Sampler (euler, ddim, tcd, lcm, ...)",
    "spacing": "Timestep spacing of the sampler (trailing suits few-step models)",
    "eta": "Noise factor of the ddim and tcd samplers (0-1; tcd defaults to 0.3)",
    "lora": "LoRA style, e.g. pixel-art or pixel-art:0.7",
    "style": "A style preset that adds words to the prompt",
}

SPACING_CHOICES = [app_commands.Choice(name=s, value=s) for s in SPACINGS]


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


# --------------------------------------------------------------------------- autocomplete


def _bot(interaction: discord.Interaction) -> EaselBot:
    return interaction.client  # type: ignore[return-value]


async def complete_models(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
    return choices(_bot(interaction).studio.model_names(), current)


async def complete_samplers(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
    return choices(_bot(interaction).studio.sampler_names(), current)


async def complete_loras(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
    """The LoRAs of the model picked in the same command (the default model's when none is)."""
    studio = _bot(interaction).studio
    model = getattr(interaction.namespace, "model", None) or ""
    try:
        names = studio.lora_names(model)
    except JobError:  # a model name being typed that does not exist (yet)
        names = studio.lora_names()
    return choices(names, current)


async def complete_styles(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
    return choices([s.name for s in _bot(interaction).config.styles], current)


AUTOCOMPLETE = {"model": complete_models, "scheduler": complete_samplers, "lora": complete_loras,
                "style": complete_styles, "prompt": complete_prompt, "negative": complete_prompt}


# --------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class DiffusionOptions:
    """What a member typed for the shared options (None: not given)."""

    negative: str | None = None
    steps: int | None = None
    guidance: float | None = None
    scheduler: str | None = None
    spacing: str | None = None
    eta: float | None = None
    lora: str | None = None
    style: str | None = None

    def for_model(self, bot: EaselBot, model: str) -> tuple[ModelInfo, CommonOptions]:
        """The model's info and these options as ``build_*`` keywords (LoRA weights parsed against
        the model's configured ones). Raises JobError for a model that is not configured."""
        studio = bot.studio
        info = studio.model_info(model)
        defaults = {lo.name: lo.weight for lo in studio.engine.executor.model_config(model).loras}
        return info, CommonOptions(
            negative=self.negative, steps=self.steps, guidance=self.guidance, scheduler=self.scheduler,
            spacing=self.spacing, eta=self.eta, loras=parse_loras(self.lora, defaults), style=self.style,
            styles=bot.config.styles, max_prompt_chars=bot.config.limits.max_prompt_chars)


NO_OPTIONS = DiffusionOptions()


async def _server_default(bot: EaselBot, origin: Origin) -> str:
    """The default model of the channel (else of the server): "" when none is set, or it is no longer configured."""
    settings = await guild_settings(bot, origin)
    model = (settings.default_model if settings else None) or ""
    return model if model in bot.studio.model_names() else ""


async def chosen_model(bot: EaselBot, origin: Origin, model: str | None) -> str:
    """The model a command runs on: the member's pick, else the server's default, else "" (the
    configured default model)."""
    return model or await _server_default(bot, origin)


async def model_for_source(bot: EaselBot, origin: Origin, source_model: str) -> str:
    """The model a button, reaction or menu varies an image with: the channel's (else the server's)
    default model when one is set, else the model that made the image (when still configured), else ""."""
    return (await _server_default(bot, origin)
            or (source_model if source_model in bot.studio.model_names() else ""))
