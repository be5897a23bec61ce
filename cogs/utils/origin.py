"""Where a request came from, and how to answer it: an interaction, or a reaction on a message.

Slash commands, buttons and context menus answer through the interaction (ephemeral errors, one
status message kept current). Reactions have no interaction: errors go to the member by DM (a
short reply that deletes itself only when their DMs are closed), and the status message is a
reply in the channel, sent with the job's nonce. Both hand the delivery cog a
:class:`StatusMessage` it can edit without knowing which it is.

A status message is edited through the interaction's token while the token lives (15 minutes),
then as the bot's own message by id (Discord allows it for non-ephemeral messages). When neither
reaches it (deleted by a moderator, no id known) the edit raises :class:`StatusGone` and the
poster puts a new message in its place.
"""

from __future__ import annotations

import asyncio
import io
import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable
from typing import TypeVar

import discord
import discord.http

from cogs.utils.text import NO_MENTIONS, fit_message
from studio import RequestContext

log = logging.getLogger(__name__)
T = TypeVar("T")

ERROR_REPLY_SECONDS = 20


class StatusGone(Exception):
    """The status message can no longer be edited: deleted, or neither the interaction token nor an
    edit of the bot's own message by id reaches it. Whoever edits it posts a new message instead."""


def message_gone(exc: discord.HTTPException) -> bool:
    """Discord says the message is not there (404, except a vanished channel) or not ours to edit."""
    return (exc.status == 404 and exc.code != UNKNOWN_CHANNEL) or exc.code == NOT_AUTHOR


UNKNOWN_CHANNEL, NOT_AUTHOR = 10003, 50005  # Discord's JSON error codes


class StatusMessage(ABC):
    """The one message that shows a job's state, then its result."""

    message_id: int | None = None
    channel_id: int

    @abstractmethod
    async def edit(self, content: str, *, files: list[discord.File] | None = None,
                   view: discord.ui.View | None = None) -> None:
        """Replace the message's content (and files / components unless None); raises StatusGone."""


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
    """A channel message posted by the bot (reactions, restarts), or any message of the bot known by
    id (a ``PartialMessage``: an interaction's response once its token has expired)."""

    def __init__(self, message: discord.Message | discord.PartialMessage) -> None:
        self.message = message
        self.message_id = message.id
        self.channel_id = message.channel.id

    async def edit(self, content: str, *, files: list[discord.File] | None = None,
                   view: discord.ui.View | None = None) -> None:
        kwargs = edit_arguments(content, files, view)
        try:
            self.message = await self.message.edit(**kwargs)  # type: ignore[arg-type]
        except discord.HTTPException as exc:
            if message_gone(exc):
                raise StatusGone(f"message {self.message_id}: {exc}") from exc
            raise


def renewed(files: list[discord.File] | None) -> list[discord.File] | None:
    """The same files for another request. discord.py reads a File once per request and rewinds it
    only for its own retries, so a second request needs new File objects over the same bytes."""
    if files is None:
        return None
    fresh = []
    for f in files:
        if isinstance(f.fp, io.BytesIO):
            data = f.fp.getvalue()
        else:
            f.reset()
            data = f.fp.read()
        fresh.append(discord.File(io.BytesIO(data), filename=f.filename, description=f.description))
    return fresh


def by_id(channel: object, message_id: int | None) -> ChannelStatus | None:
    """The bot's own message ``message_id`` in ``channel``, to edit without its interaction token."""
    get = getattr(channel, "get_partial_message", None)
    return ChannelStatus(get(message_id)) if get is not None and message_id is not None else None


def token_refused(exc: discord.HTTPException) -> bool:
    """The interaction webhook refused the edit: token expired (401) or the message not found by it."""
    return exc.status in (401, 404)


class InteractionStatus(StatusMessage):
    """The deferred response of an interaction, edited through its token. When the 15-minute token
    has expired, the same message is edited as the bot's own message by id."""

    def __init__(self, interaction: discord.Interaction, message: discord.Message | None = None) -> None:
        self.interaction = interaction
        self.channel_id = interaction.channel_id or 0
        self.message_id = message.id if message else None
        self._by_id: ChannelStatus | None = None

    async def edit(self, content: str, *, files: list[discord.File] | None = None,
                   view: discord.ui.View | None = None) -> None:
        if self._by_id is None:
            try:
                message = await self.interaction.edit_original_response(
                    **edit_arguments(content, files, view))  # type: ignore[arg-type]
                self.message_id = message.id
                return
            except discord.HTTPException as exc:
                if not token_refused(exc):
                    raise
                log.info("the interaction token no longer edits message %s (%s); editing it by id", self.message_id, exc)
                self._by_id = by_id(self.interaction.channel, self.message_id)
                if self._by_id is None:
                    raise StatusGone(f"interaction {self.interaction.id}: {exc}") from exc
                files = renewed(files)
        await self._by_id.edit(content, files=files, view=view)


class RecordedStatus(StatusMessage):
    """A status message known only from the job log (after a restart): edited through the job's
    interaction webhook while its token lives, else as the bot's own message by id. With a live
    token but no recorded id (the process died between showing the status and recording it), the
    interaction's original response is looked up through the token."""

    def __init__(self, channel: object, channel_id: int, message_id: int | None,
                 webhook: discord.Webhook | None = None, http: discord.http.HTTPClient | None = None) -> None:
        self.channel = channel
        self.channel_id = channel_id
        self.message_id = message_id
        self.webhook = webhook
        self.http = http

    async def edit(self, content: str, *, files: list[discord.File] | None = None,
                   view: discord.ui.View | None = None) -> None:
        if self.webhook is not None and self.message_id is None and self.http is not None:
            self.message_id = await original_response_id(self.http, self.webhook)
        if self.webhook is not None and self.message_id is not None:
            try:
                await self.webhook.edit_message(self.message_id, **edit_arguments(content, files, view))  # type: ignore[arg-type]
                return
            except discord.HTTPException as exc:
                if not token_refused(exc):
                    raise
                log.info("the interaction token no longer edits message %s (%s); editing it by id", self.message_id, exc)
                self.webhook = None
                files = renewed(files)
        status = by_id(self.channel, self.message_id)
        if status is None:
            raise StatusGone(f"no message recorded in channel {self.channel_id}")
        await status.edit(content, files=files, view=view)


async def original_response_id(http: discord.http.HTTPClient, webhook: discord.Webhook) -> int | None:
    """The id of an interaction's original response, asked through its webhook (application id and
    token); None when the token no longer works or there is no response."""
    route = discord.http.Route("GET", "/webhooks/{webhook_id}/{webhook_token}/messages/@original",
                               webhook_id=webhook.id, webhook_token=webhook.token)
    try:
        data = await http.request(route)
    except discord.HTTPException as exc:
        if not token_refused(exc):
            raise
        return None
    return int(data["id"])


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
    async def open_status(self, text: str, view: discord.ui.View | None = None, *, job_id: str) -> StatusMessage:
        """Show the first status line of job ``job_id``; returns the message later edits go to."""

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

    async def error(self, text: str, *, view: discord.ui.View | None = None) -> None:
        """Always ephemeral (``view``: buttons under it). Usually we have not answered yet (requests are checked before
        deferring) and the refusal is the answer. After a deferral with a "thinking" message
        (slow input, see :meth:`Origin.in_time`) Discord would turn the first followup into that
        public message whatever it asks for, so the thinking message is completed with a neutral
        line first, the refusal goes as an ephemeral followup, and the public message is deleted."""
        text = fit_message(text)
        response = self.interaction.response
        extra = {"view": view} if view is not None else {}
        if not response.is_done():
            await response.send_message(text, ephemeral=True, allowed_mentions=NO_MENTIONS, **extra)
            return
        thinking = response.type is discord.InteractionResponseType.deferred_channel_message
        if thinking:
            await self.interaction.edit_original_response(content=ANSWERED_PRIVATELY, attachments=[], view=None,
                                                          allowed_mentions=NO_MENTIONS)
        await self.interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_MENTIONS, **extra)
        if thinking:
            try:
                await self.interaction.delete_original_response()
            except discord.HTTPException as exc:  # it says no more than "Answered privately."
                log.info("could not delete the deferred response of interaction %s: %s", self.interaction.id, exc)

    async def open_status(self, text: str, view: discord.ui.View | None = None, *, job_id: str) -> StatusMessage:
        status = InteractionStatus(self.interaction)
        await status.edit(text, view=view)
        return status

    def context(self) -> RequestContext:
        i = self.interaction
        return RequestContext(user_id=i.user.id, guild_id=i.guild_id, channel_id=self.channel_id,
                              interaction_id=i.id, interaction_token=i.token, application_id=i.application_id,
                              request_message_id=self.request_message_id)


class MessageOrigin(Origin):
    """A reaction on a message: no interaction, so refusals go by DM and the status is a reply."""

    def __init__(self, message: discord.Message, user: discord.abc.User) -> None:
        self.message = message
        self.user = user
        self.guild = message.guild
        self.channel = message.channel
        self.channel_id = message.channel.id

    async def acknowledge(self) -> None:
        return None

    async def error(self, text: str) -> None:
        """A DM to the member, saying which reaction it answers. Only when their DMs are closed is it
        a reply in the channel (naming the member without pinging) that deletes itself."""
        try:
            await self.user.send(fit_message(f"{text}\n-# Your reaction on {self.message.jump_url}"),
                                 allowed_mentions=NO_MENTIONS)
        except discord.Forbidden:
            await self.reply_briefly(text)

    async def reply_briefly(self, text: str) -> None:
        """A reply naming the member (not pinging them) that deletes itself after a while: for what
        cannot reach them by DM."""
        await self.message.reply(fit_message(f"{self.user.mention} {text}"), delete_after=ERROR_REPLY_SECONDS,
                                 allowed_mentions=NO_MENTIONS, mention_author=False)

    async def open_status(self, text: str, view: discord.ui.View | None = None, *, job_id: str) -> StatusMessage:
        """A reply to the message, sent with the nonce the poster uses for a job's first channel
        message (``posting.nonce_for(job_id, None)``, with ``enforce_nonce``). The id of this reply is
        recorded only once Discord answered; if the process dies before that, the restarted poster
        finds no recorded message and posts one with that same nonce: within Discord's nonce window
        it gets this very reply back and turns it into the result (Cancel button and all replaced)
        instead of leaving it behind as a second message."""
        from cogs.utils.posting import nonce_for  # posting builds on this module

        sent = await self.message.reply(fit_message(text), view=view or discord.ui.View(), allowed_mentions=NO_MENTIONS,
                                        mention_author=False, nonce=nonce_for(job_id, None))
        return ChannelStatus(sent)

    def context(self) -> RequestContext:
        return RequestContext(user_id=self.user.id, guild_id=self.guild.id if self.guild else None,
                              channel_id=self.channel_id, request_message_id=self.message.id)
