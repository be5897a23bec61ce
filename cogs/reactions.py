"""Emoji reactions as commands, on our results and on any image in an enabled channel.

🔁 reroll (our results), 🎨 vary, 🌸 anime, ✉️ DM me the image with its parameters, ❌ delete
(the requester, or members with Manage Messages). Reactions arrive raw: the message may not be
cached, so it is fetched.

Members react to each other's pictures all the time, so in a channel easel is not enabled in,
reactions on members' images are ignored; on one of our results there the member is told where
easel works. ❌ on our results works everywhere: cleaning up is never refused by channel.

Only reactions easel answers count against the member's rate limit (cogs/utils/ratelimit.py),
charged once that is known: not those on chat messages or ignored pictures, and not a ❌ that
deletes. Refusals are sent by DM (cogs/utils/origin.py ``MessageOrigin.error``), as is all of ✉️.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

import discord
from discord.ext import commands

from cogs.utils import actions, gate, ratelimit
from cogs.utils.inputs import decode, image_attachment, image_of_message, read_attachment
from cogs.utils.launch import NotHere, check_channel
from cogs.utils.origin import MessageOrigin
from cogs.utils.private import is_private_note
from cogs.utils.text import NO_MENTIONS, fit_message
from inference.imaging import ImageInputError, encode_png, fit_for_upload, read_parameters
from inference.jobs import JobError

if TYPE_CHECKING:
    from bot import EaselBot

log = logging.getLogger(__name__)

REROLL, VARY, ANIME, MAIL, DELETE = "\U0001f501", "\U0001f3a8", "\U0001f338", "\u2709\ufe0f", "\u274c"
EMOJIS = {REROLL, VARY, ANIME, MAIL, DELETE, "\u2709"}
DM_UPLOAD_LIMIT = 10 * 1024 * 1024  # a bot's upload limit in direct messages (no server boost there)


class DMsClosed(JobError):
    """A DM to the member was refused (their DMs are closed): the answer goes in the channel."""


class Reactions(commands.Cog):
    def __init__(self, bot: EaselBot) -> None:
        self.bot = bot

    @commands.Cog.listener()
    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        emoji = str(payload.emoji)
        if emoji not in EMOJIS or payload.user_id == getattr(self.bot.user, "id", None):
            return
        try:
            await self.handle(payload, emoji)
        except Exception:
            log.exception("reaction %s on message %s failed", emoji, payload.message_id)

    async def handle(self, payload: discord.RawReactionActionEvent, emoji: str) -> None:
        channel = self.bot.get_channel(payload.channel_id) or await self.bot.fetch_channel(payload.channel_id)
        if not isinstance(channel, discord.abc.Messageable):
            return
        message = await channel.fetch_message(payload.message_id)
        user = payload.member or await self.bot.fetch_user(payload.user_id)
        row = await self.bot.studio.database.jobs.by_message(message.id)
        ours = row is not None and message.author.id == getattr(self.bot.user, "id", None)
        if not ours and image_attachment(message) is None:
            return  # not an image: the reaction is just a reaction (and costs the member nothing)
        origin = MessageOrigin(message, user)
        try:
            if ours and row is not None and is_private_note(message.content) and emoji != DELETE \
                    and user.id != row.user_id:
                return  # a result that went to its owner by DM: the note is nobody else's to use
            if emoji == DELETE:
                if ours and row is not None:  # cleaning up works everywhere, enabled channel or not
                    await self.delete(message, user, row.user_id, payload)
                return
            try:
                await check_channel(self.bot, origin)
            except NotHere:
                if not ours:
                    return  # members react to each other's pictures everywhere: only enabled channels are ours
                if self.charge(payload.user_id, emoji):
                    raise  # the member is told where easel works
                return
            if not self.charge(payload.user_id, emoji):
                return  # over the member's rate limit: ignored (logged once a minute), never answered
            if emoji == REROLL:
                if not ours or row is None:
                    raise JobError("\U0001f501 rerolls work on my own results.")
                await actions.rerun(self.bot, origin, row.job_id, same_seed=False)
            elif emoji == VARY and ours and row is not None:
                await actions.vary_result(self.bot, origin, row.job_id, 0)  # keeps the prompt, like the Vary button
            elif emoji == VARY:
                await actions.from_message(self.bot, origin, message, "vary")
            elif emoji == ANIME:
                await actions.from_message(self.bot, origin, message, "anime")
            elif emoji in (MAIL, "\u2709"):
                await self.mail(message, user)
        except DMsClosed as exc:  # what was to go by DM cannot: said where the reaction was, briefly
            await origin.reply_briefly(str(exc))
        except (JobError, ImageInputError) as exc:
            await origin.error(str(exc))

    def charge(self, member: int, emoji: str) -> bool:
        """Charge a reaction easel answers to the member's rate limit (✉️ to the DM budget: all
        it leads to is a DM); False when they are over it and the reaction must be ignored."""
        return ratelimit.limits_for(self.bot).allow_reaction(member, dm=emoji in (MAIL, "\u2709"))

    async def mail(self, message: discord.Message, user: discord.abc.User) -> None:
        """DM the image with its generation parameters (read from the file itself, so other tools'
        PNGs work too), shown as the NSFW gate shows it where it was posted: spoilered there (or
        posted behind a spoiler by a member), spoilered in the DM; withheld there, never sent (the
        DM says why). The file is sent as it is when it fits a DM's upload limit, else re-encoded
        (WebP/JPEG, then downscaled, as results are) and the DM says so."""
        limits = self.bot.config.limits
        guild_id = message.guild.id if message.guild is not None else None
        how = await gate.treatment(self.bot, await gate.message_flags(self.bot, message), guild_id, message.channel)
        if how is gate.Treatment.WITHHELD:
            why = f"That image is not shown in <#{message.channel.id}> (NSFW), so I cannot send it to you either."
            try:
                await self._dm(user, why)
            except DMsClosed:  # said where the reaction was instead (a reply that deletes itself)
                raise DMsClosed(why) from None
            return
        attachment = image_attachment(message)
        if attachment is not None:
            data = await read_attachment(attachment, limits)
            await decode(data, limits)  # an image, checked from its bytes, within the limits
            filename = attachment.filename.removeprefix("SPOILER_")
            if attachment.is_spoiler() and how is gate.Treatment.PLAIN:
                how = gate.Treatment.SPOILER
        else:  # one of our results whose message shows no file: the stored image (decoded, checked)
            image = (await image_of_message(self.bot.studio, message, limits))[0]
            data, filename = await asyncio.to_thread(encode_png, image), "easel.png"
        params = read_parameters(data)
        text = "Here is the image you asked for."
        if len(data) > DM_UPLOAD_LIMIT:
            data, filename = await asyncio.to_thread(fit_for_upload, data, DM_UPLOAD_LIMIT,
                                                     stem=PurePosixPath(filename).stem)
            text += "\n\u2139\ufe0f Re-encoded to fit Discord's upload limit for direct messages."
        if params:
            text += f"\n```\n{fit_message(params.replace('`', 'ˋ'), 1800)}\n```"
        await self._dm(user, text, gate.image_file(data, filename, how))

    async def _dm(self, user: discord.abc.User, text: str, file: discord.File | None = None) -> None:
        try:
            await user.send(text, file=file, allowed_mentions=NO_MENTIONS)
        except discord.Forbidden:
            raise DMsClosed("I cannot send you direct messages: allow DMs from server members and try again.") from None

    async def delete(self, message: discord.Message, user: discord.abc.User, owner: int,
                     payload: discord.RawReactionActionEvent) -> None:
        member = payload.member
        allowed = user.id == owner or (member is not None and isinstance(message.channel, discord.abc.GuildChannel)
                                       and message.channel.permissions_for(member).manage_messages)
        if not allowed:  # answered (privately), so charged like any reaction easel answers
            if self.charge(user.id, DELETE):
                raise JobError("Only the member who asked for this image (or a moderator) can delete it.")
            return
        await message.delete()  # cleaning up starts no work: never charged


async def setup(bot: EaselBot) -> None:
    await bot.add_cog(Reactions(bot))
