"""The pictures posted with a result but not part of it: a seamless tile's 2x2 preview, the map a
ControlNet followed (``JobResult.extras``, stored with the job: storage/extras.py).

They go into the result's message after its image, as more attachments named for what they are
(``tile-preview.png``, ``control.png``), never named like a result (``easel-<job>``): no buttons
point at them, /history does not list them and a reaction or menu on the message picks the result.
They are shown as the NSFW gate decided for the job's images (the caller withholds the whole post,
or passes the spoiler treatment): a job's extras are as flagged as what it made.

A message holds 10 attachments and Discord limits the upload's size: the result goes first, then
as many extras as fit the rest of the upload limit (each re-encoded smaller if need be, as the
result is); what does not fit, or is no longer stored, is left out and the message says so.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import discord

from cogs.utils import gate
from inference.imaging import fit_for_upload

if TYPE_CHECKING:
    from bot import EaselBot

log = logging.getLogger(__name__)

MAX_ATTACHMENTS = 10  # Discord's limit per message
STEMS = {"tile": "tile-preview", "control": "control"}
WHAT = {"tile": "the tile preview", "control": "the control map"}


@dataclass
class ExtraFiles:
    files: list[discord.File] = field(default_factory=list)
    note: str = ""  # a line for the message when some were left out ("" when none were)


def file_stems(labels: Sequence[str]) -> list[str]:
    """A file name stem per label: ``tile-preview``; ``tile-preview-1``, ``tile-preview-2`` ... for several of one label."""
    stems, seen = [], dict.fromkeys(labels, 0)
    for label in labels:
        seen[label] += 1
        stem = STEMS.get(label, label)
        stems.append(stem if labels.count(label) == 1 else f"{stem}-{seen[label]}")
    return stems


async def extra_files(bot: EaselBot, extras: Sequence[tuple[str, Path]], how: gate.Treatment, budget: int,
                      *, attached: int = 1) -> ExtraFiles:
    """The files for ``extras`` shown as ``how`` (never withheld: the caller posts nothing then),
    together no larger than ``budget`` bytes and no more than the attachments left beside the
    ``attached`` files already in the message."""
    out = ExtraFiles()
    left_out: list[str] = []
    room = MAX_ATTACHMENTS - attached
    for (label, path), stem in zip(extras, file_stems([label for label, _ in extras]), strict=True):
        what = WHAT.get(label, f"the {label} picture")
        if len(out.files) >= room:
            left_out.append(what)
            continue
        try:
            data = await bot.studio.outputs.read(path)
            fitted, filename = await asyncio.to_thread(fit_for_upload, data, budget, stem=stem)
        except FileNotFoundError:  # deleted from outputs/ by hand
            log.warning("%s of a result is no longer stored (%s)", what, path)
            left_out.append(what)
            continue
        except ValueError:  # no room left in the upload limit
            left_out.append(what)
            continue
        budget -= len(fitted)
        out.files.append(gate.image_file(fitted, filename, how))
    if left_out:
        out.note = f"\n\u2139\ufe0f Not attached, to fit Discord's limits or no longer stored: {', '.join(left_out)}."
    return out
