"""Where a request came from, and how to answer it: an interaction, or a reaction on a message.

Slash commands, buttons and context menus answer through the interaction (ephemeral errors, one
status message kept current). Reactions have no interaction: errors are short replies that
delete themselves, and the status message is a reply in the channel. Both hand the delivery cog
a :class:`StatusMessage` it can edit without knowing which it is.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable
from typing import TypeVar

import discord

from cogs.utils.text import NO_MENTIONS, fit_message
from studio import RequestContext

log = logging.getLogger(__name__)
T = TypeVar("T")

ERROR_REPLY_SECONDS = 20


class StatusMessage(ABC):
    """The one message that shows a job's state, then its result."""

    message_id: int | None = None
    channel_id: int

    @abstractmethod
    async def edit(self, content: str, *, files: list[discord.File] | None = None,
                   view: discord.ui.View | None = None) -> None: ...


def edit_arguments(content: str, files: list[discord.File] | None,
                   view: discord.ui.View | None) -> dict[str, object]:
    """What a status edit sends: ``None`` keeps the message's files / components as they are."""
    kwargs: dict[str, object] = {"content": fit_message(content), "allowed_mentions": NO_MENTIONS}
    if files is not None:
        kwargs["attachments"] = files
    if view is not None:
        kwargs["view"] = view
    return kwargs


class ChannelStatus(StatusMessage):
    """A normal channel message posted by the bot (reactions, expired interactions, restarts)."""

    def __init__(self, message: discord.Message) -> None:
        self.message = message
        self.message_id = message.id
        self.channel_id = message.channel.id

    async def edit(self, content: str, *, files: list[discord.File] | None = None,
                   view: discord.ui.View | None = None) -> None:
        kwargs = edit_arguments(content, files, view)
        self.message = await self.message.edit(**kwargs)  # type: ignore[arg-type]


class InteractionStatus(StatusMessage):
    """The deferred response of an interaction. When its 15-minute token has expired, the next
    edit goes to the channel as a reply instead."""

    def __init__(self, interaction: discord.Interaction, message: discord.Message | None = None) -> None:
        self.interaction = interaction
        self.channel_id = interaction.channel_id or 0
        self.message_id = message.id if message else None
        self._fallback: ChannelStatus | None = None

    async def edit(self, content: str, *, files: list[discord.File] | None = None,
                   view: discord.ui.View | None = None) -> None:
        if self._fallback is not None:
            await self._fallback.edit(content, files=files, view=view)
            return
        kwargs = edit_arguments(content, files, view)
        try:
            message = await self.interaction.edit_original_response(**kwargs)  # type: ignore[arg-type]
            self.message_id = message.id
        except discord.HTTPException as exc:
            if exc.status not in (401, 404):
                raise
            log.info("interaction token of message %s expired (%s); posting to the channel", self.message_id, exc)
            channel = self.interaction.channel
            if not isinstance(channel, discord.abc.Messageable):
                raise
            reference = None
            if self.message_id is not None:
                reference = discord.MessageReference(message_id=self.message_id, channel_id=self.channel_id,
                                                     fail_if_not_exists=False)
            sent = await channel.send(fit_message(content), files=files or [], view=view,
                                      reference=reference, allowed_mentions=NO_MENTIONS)
            self._fallback = ChannelStatus(sent)
            self.message_id = sent.id


ACK_BUDGET_S = 1.5  # Discord wants an answer within 3 s of the click
ANSWERED_PRIVATELY = "Answered privately."  # what a public "thinking" message says until it is deleted


class Origin(ABC):
    user: discord.abc.User
    guild: discord.Guild | None
    channel: discord.abc.Messageable | None
    channel_id: int

    @abstractmethod
    async def acknowledge(self) -> None:
        """Tell Discord we are on it (within 3 s)."""

    @abstractmethod
    async def error(self, text: str) -> None:
        """A short message only the requester needs to see."""

    @abstractmethod
    async def open_status(self, text: str, view: discord.ui.View | None = None) -> StatusMessage:
        """Show the first status line; returns the message later edits go to."""

    @abstractmethod
    def context(self) -> RequestContext: ...

    async def in_time(self, awaitable: Awaitable[T]) -> T:
        """Await slow input (downloads, decoding) without missing Discord's 3-second deadline:
        if it is not ready within the budget, acknowledge first and keep waiting."""
        task = asyncio.ensure_future(awaitable)
        done, _ = await asyncio.wait({task}, timeout=ACK_BUDGET_S)
        if not done:
            await self.acknowledge()
        return await task

    @property
    def upload_limit(self) -> int:
        return self.guild.filesize_limit if self.guild is not None else 10 * 1024 * 1024


class InteractionOrigin(Origin):
    def __init__(self, interaction: discord.Interaction, *, request_message_id: int | None = None) -> None:
        self.interaction = interaction
        self.user = interaction.user
        self.guild = interaction.guild
        self.channel = interaction.channel  # type: ignore[assignment]
        self.channel_id = interaction.channel_id or 0
        self.request_message_id = request_message_id

    @property
    def upload_limit(self) -> int:
        limit = getattr(self.interaction, "filesize_limit", None)
        return int(limit) if limit else super().upload_limit

    async def acknowledge(self) -> None:
        if not self.interaction.response.is_done():
            await self.interaction.response.defer(thinking=True)

    async def error(self, text: str) -> None:
        """Always ephemeral. Usually we have not answered yet (requests are checked before
        deferring) and the refusal is the answer. After a deferral with a "thinking" message
        (slow input, see :meth:`Origin.in_time`) Discord would turn the first followup into that
        public message whatever it asks for, so the thinking message is completed with a neutral
        line first, the refusal goes as an ephemeral followup, and the public message is deleted."""
        text = fit_message(text)
        response = self.interaction.response
        if not response.is_done():
            await response.send_message(text, ephemeral=True, allowed_mentions=NO_MENTIONS)
            return
        thinking = response.type is discord.InteractionResponseType.deferred_channel_message
        if thinking:
            await self.interaction.edit_original_response(content=ANSWERED_PRIVATELY, attachments=[], view=None,
                                                          allowed_mentions=NO_MENTIONS)
        await self.interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_MENTIONS)
        if thinking:
            try:
                await self.interaction.delete_original_response()
            except discord.HTTPException as exc:  # it says no more than "Answered privately."
                log.info("could not delete the deferred response of interaction %s: %s", self.interaction.id, exc)

    async def open_status(self, text: str, view: discord.ui.View | None = None) -> StatusMessage:
        status = InteractionStatus(self.interaction)
        await status.edit(text, view=view)
        return status

    def context(self) -> RequestContext:
        i = self.interaction
        return RequestContext(user_id=i.user.id, guild_id=i.guild_id, channel_id=self.channel_id,
                              interaction_id=i.id, interaction_token=i.token, application_id=i.application_id,
                              request_message_id=self.request_message_id)


class MessageOrigin(Origin):
    """A reaction on a message: no interaction, so replies go to the channel."""

    def __init__(self, message: discord.Message, user: discord.abc.User) -> None:
        self.message = message
        self.user = user
        self.guild = message.guild
        self.channel = message.channel
        self.channel_id = message.channel.id

    async def acknowledge(self) -> None:
        return None

    async def error(self, text: str) -> None:
        await self.message.reply(fit_message(f"{self.user.mention} {text}"), delete_after=ERROR_REPLY_SECONDS,
                                 allowed_mentions=NO_MENTIONS, mention_author=False)

    async def open_status(self, text: str, view: discord.ui.View | None = None) -> StatusMessage:
        sent = await self.message.reply(fit_message(text), view=view or discord.ui.View(), allowed_mentions=NO_MENTIONS,
                                        mention_author=False)
        return ChannelStatus(sent)

    def context(self) -> RequestContext:
        return RequestContext(user_id=self.user.id, guild_id=self.guild.id if self.guild else None,
                              channel_id=self.channel_id, request_message_id=self.message.id)
