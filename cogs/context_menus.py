"""Apps > Vary image / Anime / Describe / Paint... / Use as control..., on any message with an image.

Discord gives a bot five message menus, and these are they: an upscale of any picture is /upscale
(our results carry Upscale buttons). Describe of a picture that carries generation parameters shows
them (privately) with a button for prompt suggestions anyway: it was the "Show parameters" menu."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from cogs.paint import paint_request
from cogs.utils import actions, gate
from cogs.utils.control import ControlModal
from cogs.utils.inputs import image_attachment, pending, pending_of_message, upload_of_message
from cogs.utils.launch import too_fast
from cogs.utils.origin import InteractionOrigin
from cogs.utils.text import fit_message
from inference.imaging import ImageInputError, read_parameters
from inference.jobs import JobError, JobKind

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


def parameters_text(params: str) -> str:
    """A picture's generation parameters as a code block (what "Show parameters" showed)."""
    return f"```\n{fit_message(params.replace('`', 'ˋ'), 1900)}\n```"


class SuggestAnyway(discord.ui.View):
    """Under the parameters Describe showed: prompt suggestions for the picture after all. Keeps the
    message, not its picture: the picture is read again on a click (a view lives 10 minutes, and a
    member may open many)."""

    def __init__(self, bot: EaselBot, message: discord.Message, flags: gate.Flags) -> None:
        super().__init__(timeout=600)
        self.bot, self.message, self.flags = bot, message, flags

    @discord.ui.button(label="Suggest prompts", emoji="\U0001f50e", custom_id="easel:describe:anyway")
    async def suggest(self, interaction: discord.Interaction, _button: discord.ui.Button[SuggestAnyway]) -> None:
        origin = InteractionOrigin(interaction, request_message_id=self.message.id)
        if await too_fast(self.bot, origin):
            return
        try:
            data, image, _job_id = await origin.in_time(upload_of_message(self.bot.studio, self.message,
                                                                          self.bot.config.limits))
            source = await pending(self.bot.studio, image, data)
        except (JobError, ImageInputError) as exc:
            await origin.error(str(exc))
            return
        await actions.on_image(self.bot, origin, source, "describe", self.flags)


class ContextMenus(commands.Cog):
    def __init__(self, bot: EaselBot) -> None:
        self.bot = bot
        self.menus = [
            app_commands.ContextMenu(name="Vary image", callback=self.vary),
            app_commands.ContextMenu(name="Anime", callback=self.anime),
            app_commands.ContextMenu(name="Describe", callback=self.describe),
            app_commands.ContextMenu(name="Paint...", callback=self.paint),
            app_commands.ContextMenu(name="Use as control...", callback=self.control),
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
        """The picture's generation parameters when it carries them, else prompt suggestions."""
        origin = InteractionOrigin(interaction, request_message_id=message.id)
        if await too_fast(self.bot, origin):
            return
        try:
            data, image, _job_id = await origin.in_time(upload_of_message(self.bot.studio, message,
                                                                          self.bot.config.limits))
            flags = await gate.message_flags(self.bot, message)
            params = read_parameters(data)
            source = None if params else await pending(self.bot.studio, image, data)
        except (JobError, ImageInputError) as exc:
            await origin.error(str(exc))
            return
        if source is not None:
            await actions.on_image(self.bot, origin, source, "describe", flags)
            return
        # Suggestions only where a captioning model can make them (else the button could only refuse).
        can_describe = bool(self.bot.config.describe.source) and not self.bot.studio.unsupported(JobKind.DESCRIBE)
        await origin.error(parameters_text(params),
                           view=SuggestAnyway(self.bot, message, flags) if can_describe else None)

    async def control(self, interaction: discord.Interaction, message: discord.Message) -> None:
        if image_attachment(message) is None and not await self.bot.studio.database.images.by_message(message.id):
            await interaction.response.send_message("That message has no image I can follow.", ephemeral=True)
            return
        await interaction.response.send_modal(ControlModal(self.bot, message))

    async def paint(self, interaction: discord.Interaction, message: discord.Message) -> None:
        if image_attachment(message) is None and not await self.bot.studio.database.images.by_message(message.id):
            await interaction.response.send_message("That message has no image I can paint on.", ephemeral=True)
            return
        await interaction.response.send_modal(PaintModal(self.bot, message))


async def setup(bot: EaselBot) -> None:
    await bot.add_cog(ContextMenus(bot))
