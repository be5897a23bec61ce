"""The one path every request takes from Discord into the studio.

Order matters: the member's rate limit, the channel and NSFW policy are checked, the job is built
and validated, a place in the queue is reserved (the caps are checked in the same step), and only
then are the request's uploads stored, the delivery cog told to expect the job, the job committed
to the job log and queued, and the member shown "Queued". Every refusal is one friendly message
to the requester, and a refused request leaves nothing on disk.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cogs.utils import quota, ratelimit
from cogs.utils.buttons import cancel_view
from cogs.utils.gate import NO_FLAGS, WITHHELD_SOURCE, Flags, Place, Treatment, age_restricted, decide
from cogs.utils.inputs import PendingInput
from cogs.utils.origin import InteractionOrigin, Origin, StatusMessage
from cogs.utils.policy import settings_here
from cogs.utils.posting import from_discord
from cogs.utils.private import hide_previews
from cogs.utils.text import queued_text
from inference.jobs import DiffusionJob, Job, JobError, UpscaleJob
from inference.prompt_words import nsfw_words_in
from inference.validation import Draft
from studio import new_job_id
from studio_admission import Reservation, discard_inputs, store_inputs

if TYPE_CHECKING:
    from bot import EaselBot
    from storage.channels import EffectiveSettings

log = logging.getLogger(__name__)

NSFW_POLICIES = ("block", "spoiler", "off")


class NotHere(JobError):
    """easel is not enabled in this channel."""


class SlowDown(JobError):
    """The member is over ``limits.actions_per_minute``."""


# Input files a job may name; None: it has none of that kind, "": its owner deleted it (/forget).
INPUT_FIELDS = ("init_image", "mask_image", "control_image", "style_image")


def charge(bot: EaselBot, origin: Origin) -> None:
    """Charge the member's rate limit for this request, once per interaction (the cog, the button
    handler and launch() may each ask). Reactions are charged in ``Reactions.handle``, once they
    are known to be requests easel answers. Raises SlowDown."""
    if not isinstance(origin, InteractionOrigin):
        return
    limits = ratelimit.limits_for(bot)
    wait = limits.charge_interaction(origin.interaction.id, origin.user.id)
    if wait:
        raise SlowDown(ratelimit.slow_down_text(wait, limits.actions.per_minute))


async def too_fast(bot: EaselBot, origin: Origin) -> bool:
    """:func:`charge`, answering the member when they are over the limit (then True)."""
    try:
        charge(bot, origin)
    except SlowDown as exc:
        await origin.error(str(exc))
        return True
    return False


async def check_sources(job: Job, inputs: Sequence[PendingInput]) -> None:
    """A job made again (Reroll, Redo) names the input files of the original: refuse when they
    are gone. An empty name means the upload's owner deleted it with /forget."""
    pending = {i.path for i in inputs}
    for field in INPUT_FIELDS:
        path = getattr(job, field, None)
        if path is None or path in pending:
            continue
        if not path:
            raise JobError("The source image of that job was deleted by its owner, so it cannot be made again.")
        if not await asyncio.to_thread(Path(path).is_file):
            raise JobError("The source image of that job is no longer stored here, so it cannot be made again.")


async def input_suppliers(bot: EaselBot, job: Job, given: Mapping[str, int] | None) -> dict[str, int]:
    """Who supplied each input file of ``job`` (field → member), recorded with it: /forget of that
    member takes the file from this job too (storage/retention.py). ``given``: known already (a
    Reroll/Redo keeps the original's suppliers). Else one of our results is its owner's picture,
    anything else (an upload, a member's picture reacted to) the job owner's."""
    suppliers: dict[str, int] = {}
    for field in INPUT_FIELDS:
        path = getattr(job, field, None)
        if not path:
            continue
        if given is not None and field in given:
            suppliers[field] = given[field]
            continue
        owner = await bot.studio.database.images.owner_of(path, prefer=job.owner)
        suppliers[field] = job.owner if owner is None else owner
    return suppliers


async def guild_settings(bot: EaselBot, origin: Origin) -> EffectiveSettings | None:
    """The settings in force where the request was made: the channel's over the server's."""
    return await settings_here(bot, origin.guild.id if origin.guild else None, origin.channel_id, origin.channel)


def channel_is_nsfw(origin: Origin) -> bool:
    return age_restricted(origin.channel)


async def check_channel(bot: EaselBot, origin: Origin) -> EffectiveSettings | None:
    """Raise NotHere when the guild restricted easel to other channels."""
    settings = await guild_settings(bot, origin)
    if settings is not None and not settings.channel_enabled(origin.channel_id):
        places = ", ".join(f"<#{c}>" for c in settings.enabled_channels[:5])
        raise NotHere(f"easel is not enabled in this channel. Try {places}.")
    return settings


def check_command(settings: EffectiveSettings | None, command: str) -> None:
    """Raise NotHere when this channel's policy leaves ``command`` out (/easel settings channel:)."""
    if settings is not None and not settings.allows(command):
        allowed = ", ".join(f"/{c}" for c in settings.allowed_commands or ())
        raise NotHere(f"/{command} is not allowed in this channel. Here you can use {allowed}.")


def nsfw_policy(settings: EffectiveSettings | None, origin: Origin) -> str:
    """What to do with NSFW here: age-restricted channels and DMs allow it."""
    if settings is None or channel_is_nsfw(origin):
        return "off"
    return settings.nsfw_policy


async def launch(bot: EaselBot, origin: Origin, build: Callable[[str], Draft | Awaitable[Draft]], *,
                 inputs: Sequence[PendingInput] = (), source: Flags = NO_FLAGS,
                 suppliers: Mapping[str, int] | None = None) -> str | None:
    """Validate, record, queue and announce a job. Returns its id, or None after telling the member why not.

    ``inputs``: the request's uploads, checked and named but not stored yet; the job refers to
    their paths. They are stored once every check passed. Everything that can refuse a request
    runs before the interaction is deferred, so refusals are ephemeral. ``source``: the NSFW flags
    of the result the job is made from (cogs/utils/gate.py); the job's images inherit them, and a
    source this channel withholds is refused. ``suppliers``: who supplied the job's input files
    (field → member) when the caller knows (a Reroll/Redo); see :func:`input_suppliers`.
    """
    job_id = new_job_id()
    delivery = bot.delivery
    reservation: Reservation | None = None
    quota_hold: quota.Hold | None = None
    try:
        charge(bot, origin)
        settings = await check_channel(bot, origin)
        built = build(job_id)
        draft = await built if isinstance(built, Awaitable) else built
        job = draft.job
        check_command(settings, str(job.kind))
        reason = bot.studio.refusal(job)
        if reason:
            raise JobError(reason)
        await check_sources(job, inputs)
        supplied = await input_suppliers(bot, job, suppliers)
        # The NSFW gate: the prompt's words count whatever the policy here, so that the flag
        # follows the images wherever they are shown later.
        place = Place(nsfw_policy(settings, origin), channel_is_nsfw(origin))
        words = [w for text in (getattr(job, "prompt", ""), getattr(job, "to_prompt", ""))  # a morph has two
                 for w in nsfw_words_in(text, bot.config.discord.nsfw_words)] if isinstance(job, DiffusionJob | UpscaleJob) else []
        flags = source | Flags.of_job(job) | Flags(word=bool(words))
        if decide(flags, place) is Treatment.WITHHELD:
            raise JobError("That prompt is not allowed in this channel (NSFW). Try an age-restricted channel."
                           if words else WITHHELD_SOURCE)
        job = dataclasses.replace(job, nsfw=flags.checker, nsfw_word=flags.word)
        # Previews come before the checker's verdict on the finished image: with a checker on,
        # they are shown as a flagged image would be.
        checked = isinstance(job, DiffusionJob) and any(m.safety_checker for m in bot.config.all_models)
        previews = decide(flags | Flags(checker=checked), place)
        quota_hold = await quota.admit(bot, origin, job)  # the daily image limit, held until the job is recorded
        previews = await hide_previews(bot, job.owner, origin.guild.id if origin.guild else None, previews)
        cap = settings.per_user_cap if settings is not None else None
        reservation = bot.studio.reservations.reserve(job.owner, cap)  # the caps and the hold: one step
        position, total, eta = await _commit(bot, origin, job, inputs, reservation, previews=previews,
                                             suppliers=supplied)
    except JobError as exc:
        if quota_hold is not None:  # before answering: the member's next request must not wait on Discord
            quota_hold.release()
        await origin.error(str(exc))
        return None
    finally:
        if reservation is not None:
            reservation.release()
        if quota_hold is not None:
            quota_hold.release()
    # The job is queued and the poster waits for its status message: whatever showing it runs
    # into (Discord, the network, a timeout), the poster is told, and without one it posts in the channel.
    try:
        await quota.give_weight(bot, origin, job.owner)  # the member's roles' queue weight (cogs/utils/quota.py)
    except Exception:  # the job is queued: a weight not given is a turn of one, never a lost request
        log.exception("job %s: could not give its member their queue weight", job_id)
    status: StatusMessage | None = None
    try:
        status = await origin.open_status(queued_text(job_id, position, total, eta, draft.notes),
                                          view=cancel_view(job_id), job_id=job_id)
    except Exception as exc:
        log.warning("job %s: could not show its status (%s: %s); it goes to the channel", job_id,
                    type(exc).__name__, exc, exc_info=not from_discord(exc))
    finally:
        delivery.attach(job_id, status, origin)
    return job_id


async def _commit(bot: EaselBot, origin: Origin, job: Job, inputs: Sequence[PendingInput], reservation: Reservation,
                  *, previews: Treatment, suppliers: Mapping[str, int]) -> tuple[int, int, float]:
    """The accepted request: store its uploads, acknowledge, record (with who supplied its inputs)
    and queue the job. Uploads stored here for a job that then could not be recorded are removed again."""
    stored = await origin.in_time(store_inputs(bot.studio, job.owner, [i.file for i in inputs], reservation))
    delivery = bot.delivery
    try:
        await origin.acknowledge()
        delivery.expect(job.job_id, previews=previews, kind=str(job.kind))
        try:
            return await bot.studio.submit(job, origin.context(), reservation=reservation, suppliers=suppliers)
        except BaseException:
            delivery.drop(job.job_id)
            raise
    except Exception:
        if stored:
            await discard_inputs(bot.studio, stored)
        raise
