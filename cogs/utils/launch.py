"""The one path every request takes from Discord into the studio.

Order matters: the channel and NSFW policy are checked, the job is built and validated, the
delivery cog is told to expect it, the studio commits it to the job log and queues it, and only
then does the member see "Queued". Every refusal is one friendly message to the requester.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import discord

from cogs.utils.buttons import cancel_view
from cogs.utils.origin import Origin, StatusGone
from cogs.utils.text import queued_text
from inference.jobs import DiffusionJob, JobError, QueueRefused
from inference.validation import Draft
from studio import new_job_id

if TYPE_CHECKING:
    from bot import EaselBot
    from storage import GuildSettings

log = logging.getLogger(__name__)

NSFW_POLICIES = ("block", "spoiler", "off")


class NotHere(JobError):
    """easel is not enabled in this channel."""


async def guild_settings(bot: EaselBot, origin: Origin) -> GuildSettings | None:
    if origin.guild is None:
        return None
    return await bot.studio.database.settings.guild(origin.guild.id)


def channel_is_nsfw(origin: Origin) -> bool:
    channel = origin.channel
    is_nsfw = getattr(channel, "is_nsfw", None)
    return bool(is_nsfw()) if callable(is_nsfw) else False


def nsfw_words_in(text: str, words: tuple[str, ...]) -> list[str]:
    lowered = text.lower()
    return [w for w in words if w and re.search(rf"(?<!\w){re.escape(w.lower())}(?!\w)", lowered)]


async def check_channel(bot: EaselBot, origin: Origin) -> GuildSettings | None:
    """Raise NotHere when the guild restricted easel to other channels."""
    settings = await guild_settings(bot, origin)
    if settings is not None and not settings.channel_enabled(origin.channel_id):
        places = ", ".join(f"<#{c}>" for c in settings.enabled_channels[:5])
        raise NotHere(f"easel is not enabled in this channel. Try {places}.")
    return settings


def nsfw_policy(settings: GuildSettings | None, origin: Origin) -> str:
    """What to do with NSFW here: age-restricted channels and DMs allow it."""
    if settings is None or channel_is_nsfw(origin):
        return "off"
    return settings.nsfw_policy


async def launch(bot: EaselBot, origin: Origin, build: Callable[[str], Draft | Awaitable[Draft]]) -> str | None:
    """Validate, record, queue and announce a job. Returns its id, or None after telling the member why not.

    Everything that can refuse a request runs before the interaction is deferred, so refusals
    are ephemeral.
    """
    job_id = new_job_id()
    delivery = bot.delivery
    try:
        settings = await check_channel(bot, origin)
        built = build(job_id)
        draft = await built if isinstance(built, Awaitable) else built
        job = draft.job
        reason = bot.studio.unsupported(job.kind)
        if reason:
            raise JobError(reason)
        policy = nsfw_policy(settings, origin)
        spoiler = False
        if isinstance(job, DiffusionJob) and policy != "off":
            found = nsfw_words_in(job.prompt, bot.config.discord.nsfw_words)
            if found and policy == "block":
                raise JobError("That prompt is not allowed in this channel (NSFW). Try an age-restricted channel.")
            spoiler = bool(found) and policy == "spoiler"
        cap = settings.per_user_cap if settings is not None else None
        if cap is not None and bot.studio.engine.queue.pending_for(origin.user.id) >= cap:
            raise QueueRefused(f"This server allows {cap} job(s) per member at a time. Wait for one to finish.")
        bot.studio.engine.queue.check_room(origin.user.id)
        await origin.acknowledge()
        delivery.expect(job_id, spoiler=spoiler, policy=policy, nsfw_channel=channel_is_nsfw(origin))
        try:
            position, total, eta = await bot.studio.submit(job, origin.context())
        except BaseException:
            delivery.drop(job_id)
            raise
    except JobError as exc:
        await origin.error(str(exc))
        return None
    try:
        status = await origin.open_status(queued_text(job_id, position, total, eta, draft.notes),
                                          view=cancel_view(job_id))
    except (discord.HTTPException, StatusGone) as exc:
        log.warning("job %s: could not show its status (%s); it goes to the channel", job_id, exc)
        status = None
    delivery.attach(job_id, status, origin)
    return job_id
