"""A throwaway discord.py bot for the fake Discord's self-tests (not easel).

It exercises each path the fake must serve: global and guild command sync, defer + followup with a
file and a button, a button that edits its message, a reaction handler, a message context menu, a
modal, autocomplete, a DM, reading a member's attachment, and falling back to a channel message when
the interaction token has expired. Token from ``DISCORD_TOKEN``, test guild from ``SAMPLE_GUILD_ID``.
"""

from __future__ import annotations

import io
import logging
import os

import discord
from discord import app_commands
from discord.ext import commands
from PIL import Image, PngImagePlugin

log = logging.getLogger("sample_bot")


def echo_png(text: str) -> discord.File:
    """A tiny PNG carrying ``text`` in a text chunk, so a test can check the uploaded bytes."""
    info = PngImagePlugin.PngInfo()
    info.add_text("echo", text)
    buffer = io.BytesIO()
    Image.new("RGB", (4, 3), (200, 30, 60)).save(buffer, format="PNG", pnginfo=info)
    buffer.seek(0)
    return discord.File(buffer, "echo.png")


class EchoView(discord.ui.View):
    def __init__(self) -> None:
        super().__init__(timeout=None)

    @discord.ui.button(label="Again", custom_id="sample:again")
    async def again(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        await interaction.response.edit_message(content=f"clicked by {interaction.user.name}", view=None)


class RenameModal(discord.ui.Modal, title="Rename"):
    name = discord.ui.TextInput(label="New name", custom_id="name")

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(f"renamed to {self.name.value}")


class SampleBot(commands.Bot):
    def __init__(self) -> None:
        intents = discord.Intents.default()
        intents.message_content = True  # on_message reads members' attachments
        super().__init__(command_prefix="!", intents=intents, allowed_mentions=discord.AllowedMentions.none())

    async def setup_hook(self) -> None:
        self.add_view(EchoView())
        guild = discord.Object(int(os.environ["SAMPLE_GUILD_ID"]))
        self.tree.add_command(ping, guild=guild)
        await self.tree.sync()
        await self.tree.sync(guild=guild)

    async def on_ready(self) -> None:
        log.info("sample bot ready in %d guild(s)", len(self.guilds))

    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        if payload.user_id == self.user.id:
            return
        channel = self.get_channel(payload.channel_id)
        await channel.send(f"saw {payload.emoji} from {payload.user_id}")
        await channel.get_partial_message(payload.message_id).add_reaction("👀")

    async def on_message(self, message: discord.Message) -> None:
        if message.author.id != self.user.id and message.attachments:
            data = await message.attachments[0].read()
            await message.channel.send(f"got {len(data)} bytes in {message.attachments[0].filename}")


bot = SampleBot()


@bot.tree.command(description="Echo text back as a PNG")
@app_commands.describe(text="what to echo")
async def echo(interaction: discord.Interaction, text: str) -> None:
    await interaction.response.defer()
    try:
        await interaction.followup.send(f"echo: {text}", file=echo_png(text), view=EchoView())
    except discord.HTTPException as exc:
        log.warning("followup failed (%s %s): posting to the channel instead", exc.status, exc.code)
        await interaction.channel.send(f"echo (token expired): {text}", file=echo_png(text))


@echo.autocomplete("text")
async def echo_autocomplete(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
    return [app_commands.Choice(name=value, value=value) for value in (current, current.upper())]


@bot.tree.command(description="Rename something through a modal")
async def rename(interaction: discord.Interaction) -> None:
    await interaction.response.send_modal(RenameModal())


@bot.tree.context_menu(name="Shout")
async def shout(interaction: discord.Interaction, message: discord.Message) -> None:
    await interaction.response.send_message(message.content.upper() or "(nothing)", ephemeral=True)


@app_commands.command(description="Guild-only: answers ephemerally and by DM")
async def ping(interaction: discord.Interaction) -> None:
    await interaction.response.send_message("pong", ephemeral=True)
    await interaction.user.send("pong by DM")


if __name__ == "__main__":
    bot.run(os.environ["DISCORD_TOKEN"], root_logger=True)
