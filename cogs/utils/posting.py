"""What the poster needs besides the message itself: which failures to try again, how long to wait,
what to tell a member whose result Discord refused, interaction tokens' lifetime, message nonces.

Failures fall in three kinds. ``retry``: Discord is down or busy (5xx, 429), the network between
failed (aiohttp's errors, refused or reset connections, timeouts, DNS), or the job log was locked:
tried again without end, the waits doubling from ``discord.delivery_retry_s`` to
``delivery_retry_max_s``. ``permission``: 403, the bot may not post or attach files there; the
member is told privately once and the post is tried again, ``discord.delivery_attempts`` times in
all. ``refused``: any other answer (4xx) or error (a stored file that cannot be read, a bug); tried
as often, then the job is undeliverable. Result files missing from outputs/ never get here: the
poster says the images are no longer stored.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import socket
import time
from typing import TYPE_CHECKING

import aiohttp
import discord

from cogs.utils.origin import RecordedStatus, StatusGone
from cogs.utils.text import NO_MENTIONS
from storage import is_busy

if TYPE_CHECKING:
    from storage import JobRow

log = logging.getLogger(__name__)

TOKEN_LIFETIME_S = 15 * 60  # Discord's, from the interaction's creation
TOKEN_MARGIN_S = 60  # a token this close to its end is not relied on
PERMISSION_ERROR = "missing permissions"  # how delivery_error starts for a 403


def nonce_for(job_id: str, replaces: int | None) -> str:
    """The nonce of the message posted for a job in place of ``replaces`` (its recorded status
    message, or None). Sent with ``enforce_nonce``, so a post repeated after a crash (before its
    id was recorded) within Discord's nonce window returns the first message instead of a second
    one; a later replacement (of that message) gets a different nonce. 24 characters (Discord: 25)."""
    return hashlib.blake2b(f"easel:{job_id}:{replaces or 0}".encode(), digest_size=12).hexdigest()


def token_alive(row: JobRow, now: float | None = None) -> bool:
    """Whether the job's interaction token still works (with a margin): it lives 15 minutes from
    the interaction's creation, which its id tells."""
    if not row.interaction_token or not row.application_id:
        return False
    born = discord.utils.snowflake_time(row.interaction_id).timestamp() if row.interaction_id else row.created_at
    return (time.time() if now is None else now) < born + TOKEN_LIFETIME_S - TOKEN_MARGIN_S


def recorded_status(bot: discord.Client, row: JobRow) -> RecordedStatus:
    """The job's status message as the job log knows it (after a restart, or a job this process did
    not announce): its interaction webhook while the token lives, its id, its channel."""
    channel = bot.get_channel(row.channel_id)
    if not hasattr(channel, "get_partial_message"):
        channel = bot.get_partial_messageable(row.channel_id, guild_id=row.guild_id)
    webhook = None
    if token_alive(row):
        assert row.application_id is not None and row.interaction_token is not None
        webhook = discord.Webhook.partial(row.application_id, row.interaction_token, client=bot)
    return RecordedStatus(channel, row.channel_id, row.status_message_id, webhook, bot.http)


def retry_delay(attempts: int, first_s: float, max_s: float) -> float:
    """The wait before try number ``attempts + 1``: first_s, doubling, at most max_s."""
    return min(max_s, first_s * 2 ** max(0, min(attempts - 1, 30)))


# The network between us and Discord. Not OSError as a whole: a file missing from outputs/ or
# unreadable is an OSError too, and no wait makes it come back.
NETWORK_ERRORS: tuple[type[BaseException], ...] = (aiohttp.ClientError, ConnectionError, TimeoutError,
                                                   socket.gaierror, socket.herror)
NETWORK_ERRNOS = frozenset({errno.ENETDOWN, errno.ENETUNREACH, errno.ENETRESET, errno.EHOSTDOWN, errno.EHOSTUNREACH})


def from_discord(exc: BaseException) -> bool:
    """Discord's answer, or the network between: not a bug of ours."""
    if isinstance(exc, OSError) and exc.errno in NETWORK_ERRNOS:
        return True
    return isinstance(exc, (discord.HTTPException, discord.RateLimited, StatusGone, *NETWORK_ERRORS))


def classify(exc: BaseException) -> str:
    """``retry``, ``permission`` or ``refused`` (see the module docstring)."""
    if isinstance(exc, discord.Forbidden):
        return "permission"
    if isinstance(exc, discord.HTTPException):
        return "retry" if exc.status >= 500 or exc.status == 429 else "refused"
    return "retry" if from_discord(exc) or is_busy(exc) else "refused"


def describe(exc: BaseException, missing: list[str]) -> str:
    """The failure as kept in the job log (``delivery_error``)."""
    if isinstance(exc, discord.Forbidden):
        return f"{PERMISSION_ERROR}: {', '.join(missing) or 'Send Messages / Attach Files'} ({exc.status} {exc.text})"
    if isinstance(exc, discord.HTTPException):
        return f"Discord answered {exc.status} {exc.text}"[:300]
    return f"{type(exc).__name__}: {exc}"[:300]


def missing_permissions(channel: object) -> list[str]:
    """The permissions a result post needs that the bot lacks in ``channel``, as Discord names
    them; empty when the cache cannot tell (DMs, an uncached channel)."""
    guild = getattr(channel, "guild", None)
    me = getattr(guild, "me", None)
    permissions_for = getattr(channel, "permissions_for", None)
    if me is None or permissions_for is None:
        return []
    perms = permissions_for(me)
    send = "send_messages_in_threads" if isinstance(channel, discord.Thread) else "send_messages"
    needed = (("view_channel", "View Channel"), (send, "Send Messages"), ("attach_files", "Attach Files"),
              ("read_message_history", "Read Message History"))
    return [label for attr, label in needed if not getattr(perms, attr)]


def permission_notice(row: JobRow, missing: list[str], attempts_left: int, wait_s: float) -> str:
    what = " and ".join(f"**{m}**" for m in missing) if missing else "**Send Messages** or **Attach Files**"
    return (f"I could not post the result of job `{row.job_id}` in <#{row.channel_id}>: I am missing the {what} "
            f"permission there. Ask a moderator to allow it; I will try again {attempts_left} more time(s) over the "
            f"next {max(1, round(wait_s / 60))} minute(s). `/history` shows the job.")


async def tell_privately(bot: discord.Client, row: JobRow, text: str) -> str:
    """Tell the job's member something only they should see: an ephemeral followup while the
    interaction token lives, else a DM, else the log. Returns which of the three it was."""
    if token_alive(row):
        assert row.application_id is not None and row.interaction_token is not None
        webhook = discord.Webhook.partial(row.application_id, row.interaction_token, client=bot)
        webhook.type = discord.WebhookType.application  # an interaction's webhook: ephemeral messages work
        try:
            await webhook.send(text, ephemeral=True, allowed_mentions=NO_MENTIONS)
            return "ephemeral"
        except discord.HTTPException as exc:
            log.info("job %s: could not answer through the interaction (%s); trying a DM", row.job_id, exc)
    try:
        user = bot.get_user(row.user_id) or await bot.fetch_user(row.user_id)
        await user.send(text, allowed_mentions=NO_MENTIONS)
        return "dm"
    except discord.HTTPException as exc:
        log.warning("job %s: could not tell member %s privately (%s): %s", row.job_id, row.user_id, exc, text)
        return "log"
