"""Apps > Vary image / Anime / Describe / Paint... / Show parameters, on any message with an image.

Discord gives a bot five message menus, and these are they: an upscale of any picture is /upscale
(our results carry Upscale buttons)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from cogs.paint import paint_request
from cogs.utils import actions, gate
from cogs.utils.inputs import image_attachment, pending_of_message, read_attachment
from cogs.utils.launch import too_fast
from cogs.utils.origin import InteractionOrigin
from cogs.utils.text import NO_MENTIONS, fit_message
from inference.imaging import ImageInputError, read_parameters
from inference.jobs import JobError

if TYPE_CHECKING:
    from bot import EaselBot


class PaintModal(discord.ui.Modal, title="Paint on this image"):
    prompt: discord.ui.TextInput[PaintModal] = discord.ui.TextInput(
        label="What to paint", max_length=1000, custom_id="easel:paint:prompt")
    region: discord.ui.TextInput[PaintModal] = discord.ui.TextInput(
        label="Where: regions or a box", placeholder="e.g. top-left, B2 C2, or box 25,25,50,50", max_length=100,
        custom_id="easel:paint:region")

    def __init__(self, bot: EaselBot, message: discord.Message) -> None:
        super().__init__()
        self.bot = bot
        self.message = message

    async def on_submit(self, interaction: discord.Interaction) -> None:
        origin = InteractionOrigin(interaction, request_message_id=self.message.id)
        if await too_fast(self.bot, origin):
            return
        try:
            source, _job = await origin.in_time(pending_of_message(self.bot.studio, self.message,
                                                                   self.bot.config.limits))
        except ImageInputError as exc:
            await origin.error(str(exc))
            return
        where = self.region.value.strip()
        box = where[3:].strip(" :") if where.lower().startswith("box") else None
        await paint_request(self.bot, origin, source, self.prompt.value, region=None if box else where, box=box,
                            source_flags=await gate.message_flags(self.bot, self.message))


class ContextMenus(commands.Cog):
    def __init__(self, bot: EaselBot) -> None:
        self.bot = bot
        self.menus = [
            app_commands.ContextMenu(name="Vary image", callback=self.vary),
            app_commands.ContextMenu(name="Anime", callback=self.anime),
            app_commands.ContextMenu(name="Describe", callback=self.describe),
            app_commands.ContextMenu(name="Paint...", callback=self.paint),
            app_commands.ContextMenu(name="Show parameters", callback=self.parameters),
        ]

    async def cog_load(self) -> None:
        for menu in self.menus:
            self.bot.tree.add_command(menu)

    async def cog_unload(self) -> None:
        for menu in self.menus:
            self.bot.tree.remove_command(menu.name, type=menu.type)

    async def _run(self, interaction: discord.Interaction, message: discord.Message, what: str) -> None:
        """Refusals come before deferring (ephemeral); a slow download defers in time."""
        origin = InteractionOrigin(interaction, request_message_id=message.id)
        if await too_fast(self.bot, origin):
            return
        try:
            source, job_id = await origin.in_time(pending_of_message(self.bot.studio, message,
                                                                     self.bot.config.limits))
            if what == "vary" and job_id is not None:  # one of our results: keep its prompt, like the Vary button
                await actions.vary_result(self.bot, origin, job_id, 0)
                return
            flags = await gate.message_flags(self.bot, message)  # a U1-U4 pick of ours: its grid's flags
        except (JobError, ImageInputError) as exc:
            await origin.error(str(exc))
            return
        await actions.on_image(self.bot, origin, source, what, flags)

    async def vary(self, interaction: discord.Interaction, message: discord.Message) -> None:
        await self._run(interaction, message, "vary")

    async def anime(self, interaction: discord.Interaction, message: discord.Message) -> None:
        await self._run(interaction, message, "anime")

    async def describe(self, interaction: discord.Interaction, message: discord.Message) -> None:
        await self._run(interaction, message, "describe")

    async def paint(self, interaction: discord.Interaction, message: discord.Message) -> None:
        if image_attachment(message) is None and not await self.bot.studio.database.images.by_message(message.id):
            await interaction.response.send_message("That message has no image I can paint on.", ephemeral=True)
            return
        await interaction.response.send_modal(PaintModal(self.bot, message))

    async def parameters(self, interaction: discord.Interaction, message: discord.Message) -> None:
        """Read the PNG ``parameters`` chunk (ours, Automatic1111's, ComfyUI exports...). Text only:
        no image file is sent, so the NSFW gate has nothing to decide (a withheld result has no
        attachment to read)."""
        if await too_fast(self.bot, InteractionOrigin(interaction)):  # it downloads the file
            return
        attachment = image_attachment(message)
        if attachment is None:
            await interaction.response.send_message("That message has no image.", ephemeral=True)
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            params = read_parameters(await read_attachment(attachment, self.bot.config.limits))
        except ImageInputError as exc:
            await interaction.followup.send(str(exc), ephemeral=True)
            return
        if not params:
            text = "That image carries no generation parameters."
        else:
            text = f"```\n{fit_message(params.replace('`', 'ˋ'), 1900)}\n```"
        await interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_MENTIONS)


async def setup(bot: EaselBot) -> None:
    await bot.add_cog(ContextMenus(bot))
