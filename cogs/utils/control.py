"""ControlNet requests from Discord: /imagine's ``control`` upload and its mode autocomplete, and
the *Use as control...* menu's modal, which queues /imagine with a message's picture as control.

The picture is an input like /vary's upload (``PendingInput``): named now, stored by launch() once
the request is accepted. What the model can follow is checked in inference/control/options.py."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands

from cogs.utils import gate
from cogs.utils.gate import NO_FLAGS, Flags
from cogs.utils.inputs import PendingInput, load_pending, pending_of_message
from cogs.utils.launch import launch, too_fast
from cogs.utils.options import NO_OPTIONS, choices, model_for_source
from cogs.utils.origin import InteractionOrigin, Origin
from inference.imaging import ImageInputError
from inference.jobs import JobError
from inference.validation import Draft, build_imagine, fit_source_size

if TYPE_CHECKING:
    from bot import EaselBot

DESCRIPTIONS = {
    "control": "A picture whose edges, lines or depth the image should follow (ControlNet)",
    "control_mode": "How to follow it: canny, scribble, lineart, depth... (the model's ControlNets)",
    "control_strength": "How strictly to follow it (0-2)",
}


async def control_inputs(bot: EaselBot, origin: Origin, upload: discord.Attachment | None) -> tuple[PendingInput, ...] | None:
    """``(the upload,)`` checked and named, ``()`` without one; None after answering the member why not
    (over the rate limit, too big, not an image)."""
    if upload is None:
        return ()
    if await too_fast(bot, origin):
        return None
    try:
        return (await origin.in_time(load_pending(bot.studio, upload, bot.config.limits)),)
    except ImageInputError as exc:
        await origin.error(str(exc))
        return None


async def complete_control_modes(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
    """The ControlNet modes of the model picked in the same command (the default model's when none is)."""
    bot: EaselBot = interaction.client  # type: ignore[assignment]
    model = getattr(interaction.namespace, "model", None) or ""
    try:
        modes = list(bot.studio.model_info(model).controls)
    except JobError:  # a model name being typed that does not exist (yet)
        modes = list(bot.studio.model_info("").controls)
    return choices(modes, current)


def configured_modes(bot: EaselBot) -> list[str]:
    """Every mode some configured model has a ControlNet for (the modal's hint)."""
    modes: list[str] = []
    for model in bot.config.all_models:
        modes += [c.mode for c in model.controlnets if c.mode not in modes]
    return modes


def parse_strength(text: str) -> float | None:
    """The modal's strength field: empty = the configured default."""
    text = text.strip().replace(",", ".")
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise JobError(f"{text!r} is not a control strength: write a number from 0 to 2, like 0.8.") from None


async def control_request(bot: EaselBot, origin: Origin, source: PendingInput, prompt: str, *, mode: str | None,
                          strength: float | None, model: str = "", flags: Flags = NO_FLAGS) -> str | None:
    """/imagine of ``prompt`` following ``source`` (a message's picture), on the server's default model or
    the one that made the picture (``model``), with that model's defaults."""
    name = await model_for_source(bot, origin, model)

    def build(job_id: str) -> Draft:
        info, common = NO_OPTIONS.for_model(bot, name)
        width, height = fit_source_size(info.preset, source.size)  # the picture's shape, not a squashed square
        return build_imagine(job_id, origin.user.id, info, prompt=prompt, control_image=source.path,
                             control_mode=mode, control_strength=strength, width=width, height=height, **common)

    return await launch(bot, origin, build, inputs=(source,), source=flags)


class ControlModal(discord.ui.Modal, title="Use this picture as control"):
    prompt: discord.ui.TextInput[ControlModal] = discord.ui.TextInput(
        label="What to make", max_length=1000, custom_id="easel:control:prompt")
    mode: discord.ui.TextInput[ControlModal] = discord.ui.TextInput(
        label="Mode", required=False, max_length=20, custom_id="easel:control:mode")
    strength: discord.ui.TextInput[ControlModal] = discord.ui.TextInput(
        label="Strength, 0-2 (empty: the model's default)", required=False, max_length=6,
        custom_id="easel:control:strength")

    def __init__(self, bot: EaselBot, message: discord.Message) -> None:
        super().__init__()
        self.bot = bot
        self.message = message
        modes = configured_modes(bot)
        self.mode.placeholder = ", ".join(modes)[:100] if modes else "no ControlNet is configured here"

    async def on_submit(self, interaction: discord.Interaction) -> None:
        origin = InteractionOrigin(interaction, request_message_id=self.message.id)
        if await too_fast(self.bot, origin):
            return
        try:
            strength = parse_strength(self.strength.value)
            source, job_id = await origin.in_time(pending_of_message(self.bot.studio, self.message,
                                                                     self.bot.config.limits))
            row = await self.bot.studio.database.jobs.get(job_id) if job_id else None
            flags = await gate.message_flags(self.bot, self.message)
            if self.message.author.id != getattr(self.bot.user, "id", None):  # a member's picture
                flags |= gate.spoilered_by_member(self.message.attachments)
        except (JobError, ImageInputError) as exc:
            await origin.error(str(exc))
            return
        await control_request(self.bot, origin, source, self.prompt.value, mode=self.mode.value or None,
                              strength=strength, model=str(row.params.get("model", "")) if row else "", flags=flags)
