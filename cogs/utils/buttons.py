"""Buttons under results, restart-proof: ``discord.ui.DynamicItem`` with templated custom ids.

``easel:<action>:<job id>[:<image index>]``. The bot re-creates the item from the id alone, so a
result posted last month still works after any number of restarts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import discord

if TYPE_CHECKING:
    from bot import EaselBot

ACTIONS = {
    "u": "post that image alone at full size",
    "v": "variations of that image",
    "r": "same settings, new seed",
    "a": "AnimeGAN2 filter",
    "us": "upscale (subtle): that image enlarged by the upscaler alone",
    "uc": "upscale (creative): enlarged, then refined by image-to-image with its prompt and seed",
    "m": "morph: a strength-sweep animation of that image with its prompt and seed",
    "i": "/imagine with that suggestion of a /describe answer",
    "x": "delete the message",
    "c": "cancel the job",
    "redo": "run again with the very same settings",
    "z15": "zoom out 1.5x: grow the canvas and paint the new border",
    "z2": "zoom out 2x",
    "pl": "pan left: add half the width on the left", "pr": "pan right", "pu": "pan up", "pd": "pan down",
}
ZOOM_ROW, PAN_ROW = 3, 4  # rows of their own, below the other buttons
PAN_ARROWS = {"left": "\u2b05\ufe0f", "right": "\u27a1\ufe0f", "up": "\u2b06\ufe0f", "down": "\u2b07\ufe0f"}


def custom_id(action: str, job_id: str, index: int | None = None) -> str:
    return f"easel:{action}:{job_id}" + (f":{index}" if index is not None else "")


class EaselButton(discord.ui.DynamicItem[discord.ui.Button[Any]],
                  template=r"easel:(?P<action>us|uc|u|v|r|a|m|i|x|c|redo|z15|z2|pl|pr|pu|pd):(?P<job>[0-9a-f]{4,32})(?::(?P<index>[0-9]))?"):
    def __init__(self, action: str, job_id: str, index: int | None = None, *, label: str | None = None,
                 emoji: str | None = None, style: discord.ButtonStyle = discord.ButtonStyle.secondary,
                 row: int | None = None) -> None:
        super().__init__(discord.ui.Button(label=label, emoji=emoji, style=style, row=row,
                                           custom_id=custom_id(action, job_id, index)))
        self.action = action
        self.job_id = job_id
        self.index = index

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Button[Any],
                             match: re.Match[str], /) -> EaselButton:
        index = match["index"]
        return cls(match["action"], match["job"], int(index) if index is not None else None)

    async def callback(self, interaction: discord.Interaction) -> None:
        from cogs.utils import actions

        bot: EaselBot = interaction.client  # type: ignore[assignment]
        await actions.on_button(bot, interaction, self.action, self.job_id, self.index)


@dataclass(frozen=True)
class Offers:
    """Which follow-ups can run for a result, so that no button is shown that could only refuse:
    Morph needs a model that morphs (not Kandinsky) and the local backend; Zoom out and Pan need
    inpainting (not the remote backend, Kandinsky only with its inpainting decoder); Upscale needs
    an ``[[upscalers]]`` entry and the local backend."""

    morph: bool = True
    outpaint: bool = True
    upscale: bool = True


def offers_for(bot: EaselBot, model: str) -> Offers:
    """The :class:`Offers` for a result made with ``model`` (a model no longer configured: the default's)."""
    from inference.jobs import JobError, JobKind
    from inference.presets import KANDINSKY

    studio = bot.studio
    try:
        info = studio.model_info(model if model in studio.model_names() else "")
    except JobError:
        return Offers(morph=False, outpaint=False, upscale=False)
    kandinsky = info.preset.family == KANDINSKY
    return Offers(
        morph=not kandinsky and studio.unsupported(JobKind.MORPH) is None,
        outpaint=(not kandinsky or info.inpaint_model) and studio.unsupported(JobKind.PAINT) is None,
        upscale=bool(bot.config.upscalers) and studio.unsupported(JobKind.UPSCALE) is None,
    )


ALL = Offers()


def result_view(job_id: str, count: int, *, kind: str, offers: Offers = ALL) -> discord.ui.View:
    """U1-U4 / V1-V4 for grids (Vary, Morph, Zoom out and Pan for one image), then reroll, anime and delete. An
    animation (a morph) gets reroll and delete only."""
    view = discord.ui.View(timeout=None)
    if count > 1:
        for i in range(count):
            view.add_item(EaselButton("u", job_id, i, label=f"U{i + 1}", row=0))
        for i in range(count):
            view.add_item(EaselButton("v", job_id, i, label=f"V{i + 1}", row=1))
    elif kind not in ("anime", "morph", "upscale"):
        view.add_item(EaselButton("v", job_id, 0, label="Vary", emoji="\U0001f3a8", row=0))
        add_one_image_buttons(view, job_id, 0, offers, morph_row=0)
    if kind not in ("anime", "upscale"):
        view.add_item(EaselButton("r", job_id, label="Reroll", emoji="\U0001f501", row=2))
    if kind not in ("anime", "morph", "upscale"):
        view.add_item(EaselButton("a", job_id, 0, label="Anime", emoji="\U0001f338", row=2))
    view.add_item(EaselButton("x", job_id, label="Delete", emoji="\u274c", style=discord.ButtonStyle.danger, row=2))
    return view


def single_view(job_id: str, index: int, offers: Offers = ALL) -> discord.ui.View:
    """Under one image picked from a grid (U button)."""
    view = discord.ui.View(timeout=None)
    view.add_item(EaselButton("v", job_id, index, label="Vary", emoji="\U0001f3a8"))
    view.add_item(EaselButton("a", job_id, index, label="Anime", emoji="\U0001f338"))
    add_one_image_buttons(view, job_id, index, offers)
    return view


def add_one_image_buttons(view: discord.ui.View, job_id: str, index: int, offers: Offers,
                          morph_row: int | None = None) -> None:
    """Morph, Zoom out and Pan, Upscale: under one image, where they can run (:class:`Offers`)."""
    if offers.morph:
        view.add_item(morph_button(job_id, index, row=morph_row))
    if offers.outpaint:
        add_outpaint_buttons(view, job_id, index)
    if offers.upscale:
        add_upscale_buttons(view, job_id, index)


def add_outpaint_buttons(view: discord.ui.View, job_id: str, index: int) -> None:
    """Zoom out 1.5x / 2x in one row and the four Pan arrows in the next (cogs/utils/outpaint.py)."""
    view.add_item(EaselButton("z15", job_id, index, label="Zoom out 1.5x", emoji="\U0001f50d", row=ZOOM_ROW))
    view.add_item(EaselButton("z2", job_id, index, label="Zoom out 2x", emoji="\U0001f50e", row=ZOOM_ROW))
    for side, emoji in PAN_ARROWS.items():  # labels of their own: screen readers and tests tell them apart
        view.add_item(EaselButton(f"p{side[0]}", job_id, index, label=f"Pan {side}", emoji=emoji, row=PAN_ROW))


UPSCALE_ROW = 1  # a row of their own: row 1 holds V1-V4 under grids only, which get no upscale buttons


def add_upscale_buttons(view: discord.ui.View, job_id: str, index: int) -> None:
    """Upscale (subtle) and Upscale (creative) for one image (inference/upscale/)."""
    view.add_item(EaselButton("us", job_id, index, label="Upscale (subtle)", emoji="\U0001f5bc\ufe0f", row=UPSCALE_ROW))
    view.add_item(EaselButton("uc", job_id, index, label="Upscale (creative)", emoji="\u2728", row=UPSCALE_ROW))


def morph_button(job_id: str, index: int, *, row: int | None = None) -> EaselButton:
    return EaselButton("m", job_id, index, label="Morph", emoji="\U0001f39e\ufe0f", row=row)


def cancel_view(job_id: str) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(EaselButton("c", job_id, label="Cancel", emoji="\u2716\ufe0f"))
    return view
