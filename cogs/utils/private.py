"""Private results (/prefs private:yes): a member's finished images go to them by DM, and the
channel's result message only says so.

The job is still posted exactly once in the channel (the short note is the delivered message the
job log records); the DM carries the rendered result with the files as the NSFW gate let the
channel show them (a withheld result has no files and stays in the channel as it is), without
buttons: a button in a DM has no channel policy to answer to. Previews are not shown in the
channel either (see :func:`hide_previews`). The DM goes through the member's DM budget
(``limits.dms_per_minute``); when that is spent, their DMs are closed or Discord refuses the
upload, the result is posted in the channel as usual, with a line saying why.

A post tried again in this process after its DM went out (the channel edit failed) does not DM
again; a restart between the DM and recording the post may send it twice: the channel post is the
one promised exactly once.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord

from cogs.utils import ratelimit
from cogs.utils.gate import Treatment
from cogs.utils.origin import renewed
from cogs.utils.text import NO_MENTIONS

if TYPE_CHECKING:
    from bot import EaselBot
    from storage import JobRow

log = logging.getLogger(__name__)

DM_UPLOAD_LIMIT = 10 * 1024 * 1024  # a bot's upload limit in direct messages (no server boost there)
_REMEMBERED = 1000

Rendered = tuple[str, list[discord.File], discord.ui.View | None]


async def wants_private(bot: EaselBot, member: int, guild_id: int | None) -> bool:
    """Whether ``member``'s results in a server go to them by DM (outside servers they are private anyway)."""
    return guild_id is not None and (await bot.studio.database.settings.user(member)).dm_results


async def hide_previews(bot: EaselBot, member: int, guild_id: int | None, previews: Treatment) -> Treatment:
    """No preview images in the channel for a member whose results are private."""
    return Treatment.WITHHELD if await wants_private(bot, member, guild_id) else previews


NOTE_PREFIX = "\u2709\ufe0f Your result is in your DMs"


def note_text(job_id: str) -> str:
    return f"{NOTE_PREFIX} \u00b7 job `{job_id}`"


def is_private_note(content: str | None) -> bool:
    """Whether a result message is the channel's note of a result that went by DM."""
    return bool(content) and content.startswith(NOTE_PREFIX)


class PrivateResults:
    """Sends finished results by DM for members who asked for it (one per Delivery cog)."""

    def __init__(self, bot: EaselBot) -> None:
        self.bot = bot
        self._sent: dict[str, None] = {}  # jobs DMed by this process (a retried post is not DMed again)

    async def divert(self, row: JobRow, content: str, files: list[discord.File],
                     view: discord.ui.View | None) -> Rendered:
        """The result to post in the channel: the note when the result went by DM, else the result
        itself (with a line saying why it is not private)."""
        if not files or not await wants_private(self.bot, row.user_id, row.guild_id):
            return content, files, view
        if row.job_id in self._sent:
            return note_text(row.job_id), [], discord.ui.View()
        why = await self._send(row, content, files)
        if why is None:
            self._remember(row.job_id)
            return note_text(row.job_id), [], discord.ui.View()
        return f"{content}\n\u2139\ufe0f {why}", renewed(files) or [], view

    async def _send(self, row: JobRow, content: str, files: list[discord.File]) -> str | None:
        """DM the result; None when sent, else why not (for the channel post)."""
        if sum(_size(f) for f in files) > DM_UPLOAD_LIMIT:
            return "Too large for a DM, so posted here."
        if ratelimit.limits_for(self.bot).dms.take(row.user_id):
            return "Too many DMs just now, so posted here."
        try:
            user = self.bot.get_user(row.user_id) or await self.bot.fetch_user(row.user_id)
            await user.send(content, files=renewed(files) or [], allowed_mentions=NO_MENTIONS)
        except discord.Forbidden:
            return "I cannot send you DMs (allow DMs from server members), so posted here."
        except discord.HTTPException as exc:
            log.info("job %s: could not DM the result to member %s (%s)", row.job_id, row.user_id, exc)
            return "Discord did not take the DM, so posted here."
        return None

    def _remember(self, job_id: str) -> None:
        self._sent[job_id] = None
        while len(self._sent) > _REMEMBERED:
            self._sent.pop(next(iter(self._sent)))


def _size(file: discord.File) -> int:
    fp = file.fp
    try:
        position = fp.tell()
        size = fp.seek(0, 2)
        fp.seek(position)
    except (OSError, ValueError):
        return 0
    return int(size)
