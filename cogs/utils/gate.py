"""The NSFW gate: the one place that decides how an image may be shown, wherever it goes.

Every image easel stores carries two flags in the job log: ``nsfw`` (the safety checker flagged
it) and ``nsfw_word`` (its prompt has a ``discord.nsfw_words`` word, whatever the channel's policy
was when it was made; the studio also sets it from the prompt when it records results and, for
older results, at start-up: inference/prompt_words.py). An image made from one of our results (a
pick, 🌸 anime, a variation, a paint, a reroll or redo) inherits the flags of that result as a
whole, as it was shown (a grid's flags are those of all its cells): see ``Job.nsfw`` and ``launch()``.

Every path that sends an image file asks :func:`decide` (through :func:`treatment`) and builds the
file with :func:`image_file`: the posted result, a U1-U4 pick, the ✉️ DM, the progress previews.
Paths that make new images from a result (🎨 🌸 🔁, Vary/Anime/Redo buttons, the context menus,
/history's Redo) refuse a source the channel withholds, before anything is queued; their results
carry the inherited flags, so the result poster applies the gate again. /history and
*Describe* (a picture's parameters) send text only.

The rule, in the words of README's "Channels and NSFW":

============================  ==========  ===========  ===========
flags \\ server policy         ``block``   ``spoiler``  ``off``
============================  ==========  ===========  ===========
none                          plain       plain        plain
NSFW word                     withheld    spoiler      plain
safety checker                withheld    spoiler      spoiler
============================  ==========  ===========  ===========

In an age-restricted channel everything is plain. In DMs there is no server policy (``off``).
Withheld images are never sent anywhere: not posted, not DMed, not used as a source.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import discord

from cogs.utils.inputs import png_file
from cogs.utils.policy import settings_here

if TYPE_CHECKING:
    from bot import EaselBot
    from inference.jobs import Job
    from storage import ImageRow


class Treatment(StrEnum):
    PLAIN = "plain"
    SPOILER = "spoiler"
    WITHHELD = "withheld"


@dataclass(frozen=True)
class Flags:
    """What is known to be NSFW about an image (or a set of images shown together)."""

    checker: bool = False  # the safety checker flagged it (or its source)
    word: bool = False  # its prompt (or its source's) has an NSFW word

    def __or__(self, other: Flags) -> Flags:
        return Flags(self.checker or other.checker, self.word or other.word)

    def __bool__(self) -> bool:
        return self.checker or self.word

    @classmethod
    def of(cls, images: Iterable[ImageRow]) -> Flags:
        """The flags of images shown together (a grid is as flagged as its most flagged cell)."""
        flags = NO_FLAGS
        for image in images:
            flags |= Flags(bool(image.nsfw), bool(image.nsfw_word))
        return flags

    @classmethod
    def of_job(cls, job: Job) -> Flags:
        """The flags a job gives all its images (inherited or from its prompt)."""
        return Flags(bool(job.nsfw), bool(job.nsfw_word))


NO_FLAGS = Flags()


@dataclass(frozen=True)
class Place:
    """Where an image is about to be shown."""

    policy: str  # the server's NSFW policy: block, spoiler or off ("off" outside servers)
    age_restricted: bool = False


def decide(flags: Flags, place: Place) -> Treatment:
    """The one rule (see the module docstring's table)."""
    if place.age_restricted or not flags:
        return Treatment.PLAIN
    if place.policy == "block":
        return Treatment.WITHHELD
    if flags.checker or place.policy == "spoiler":
        return Treatment.SPOILER  # "off" turns off the word list, never the safety checker
    return Treatment.PLAIN


def age_restricted(channel: Any) -> bool:
    """An age-restricted (NSFW) channel; threads follow their parent. DMs have no such flag."""
    is_nsfw = getattr(channel, "is_nsfw", None)
    return bool(is_nsfw()) if callable(is_nsfw) else False


async def place_of(bot: EaselBot, guild_id: int | None, channel: Any) -> Place:
    """The policy in force now: the channel's (else the server's) setting and the channel's age restriction."""
    settings = await settings_here(bot, guild_id, getattr(channel, "id", None), channel)
    if settings is None:
        return Place("off")
    return Place(settings.nsfw_policy, age_restricted(channel))


async def treatment(bot: EaselBot, flags: Flags, guild_id: int | None, channel: Any) -> Treatment:
    """How images with ``flags`` may be shown in ``channel`` (unflagged images need no lookup)."""
    if not flags:
        return Treatment.PLAIN
    return decide(flags, await place_of(bot, guild_id, channel))


def image_file(data: bytes, filename: str, how: Treatment) -> discord.File:
    """The file that shows an image as the gate decided. A withheld image has no file."""
    if how is Treatment.WITHHELD:
        raise ValueError("a withheld image is never sent")
    return png_file(data, filename, spoiler=how is Treatment.SPOILER)


# ---------------------------------------------------------------------------- flags of sources


async def job_flags(bot: EaselBot, job_id: str) -> Flags:
    """The flags of a result as it was shown: all its images together."""
    return Flags.of(await bot.studio.database.images.for_job(job_id))


_OUR_FILE = re.compile(r"^(?:SPOILER_)?easel-([0-9a-f]+)(?:-\d+)?\.[a-z]+$")


async def message_flags(bot: EaselBot, message: discord.Message) -> Flags:
    """The flags of the image(s) a message shows: our posted result's, or a message of ours that is
    not recorded as a result (a U1-U4 pick) named after its job; a member's picture has none.

    A spoilered image on a message of ours whose job has no rows any more (pruned by retention,
    deleted by its owner's /forget) was flagged when it was posted, and the log no longer says by
    what: it counts as the safety checker's flag, the most cautious one (never plain outside
    age-restricted channels, withheld under ``block``). A message of ours whose result was withheld
    has no file, so it is no source at all (``upload_of_message`` finds no image)."""
    rows = await bot.studio.database.images.by_message(message.id)
    if rows:
        return Flags.of(rows)
    if message.author.id != getattr(bot.user, "id", None):
        return NO_FLAGS
    flags = NO_FLAGS
    for attachment in message.attachments:
        match = _OUR_FILE.match(attachment.filename)
        rows = await bot.studio.database.images.for_job(match.group(1)) if match else []
        if rows:
            flags |= Flags.of(rows)
        elif attachment.is_spoiler():
            flags |= UNKNOWN_SPOILER
    return flags


UNKNOWN_SPOILER = Flags(checker=True)  # a spoilered image of ours with no rows: see message_flags


def spoilered_by_member(attachments: Iterable[discord.Attachment]) -> Flags:
    """A member's own picture put behind a spoiler counts as flagged (as an NSFW word would) where a
    job shows what is derived from it as it is (a ControlNet's edge map): spoilered under the
    ``spoiler`` policy, refused under ``block``. Not the checker's flag: nobody judged it."""
    return Flags(word=True) if any(a.is_spoiler() for a in attachments) else NO_FLAGS


WITHHELD_SOURCE = "That image is not shown in this channel (NSFW), so I cannot work from it here."
