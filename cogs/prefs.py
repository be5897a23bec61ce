"""/prefs show | set | clear: a member's own defaults, private results, and the DM when a long job is done.

The defaults (aspect, model, negative prompt, sampler) fill the options a member leaves out of
/imagine, /vary and /paint (cogs/utils/member_prefs.py). They live in the job log's ``user_prefs``
table, which /forget empties. Private results: cogs/utils/private.py. The DM when done carries a link to the posted result and no image,
so it shows nothing the channel's NSFW gate did not show there; it is charged to the member's DM
budget (``limits.dms_per_minute``) and skipped when that is spent or their DMs are closed.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from cogs.utils import ratelimit
from cogs.utils.options import complete_models, complete_samplers
from cogs.utils.text import NO_MENTIONS, duration
from inference.presets import ASPECTS

if TYPE_CHECKING:
    from bot import EaselBot
    from storage import JobRow, UserPrefs

log = logging.getLogger(__name__)

MAX_DM_AFTER_S = 86_400
FIELDS = {  # /prefs clear's choices → the stored preference
    "aspect": "default_aspect", "model": "default_model", "negative": "negative", "sampler": "sampler",
    "private": "dm_results", "dm_when_done": "dm_when_done_s",
}


def prefs_text(prefs: UserPrefs, *, changed: str = "") -> str:
    def shown(value: Any) -> str:
        return f"`{value}`" if value else "not set"

    dm = f"when a job takes {duration(prefs.dm_when_done_s)} or more" if prefs.dm_when_done_s else "never"
    return (f"**Your defaults**{changed}\nAspect: {shown(prefs.default_aspect)}\n"
            f"Model: {shown(prefs.default_model)}\nNegative prompt: {shown(prefs.negative)}\n"
            f"Sampler: {shown(prefs.sampler)}\nResults: {'by DM' if prefs.dm_results else 'in the channel'}\n"
            f"DM when done: {dm}\n"
            "They apply to /imagine, /vary and /paint when you leave that option out.")


def result_link(guild_id: int | None, channel_id: int, message_id: int) -> str:
    return f"https://discord.com/channels/{guild_id or '@me'}/{channel_id}/{message_id}"


class Prefs(commands.GroupCog, group_name="prefs", group_description="Your own defaults for easel's commands"):
    def __init__(self, bot: EaselBot) -> None:
        self.bot = bot
        super().__init__()

    async def _answer(self, interaction: discord.Interaction, text: str) -> None:
        await interaction.response.send_message(text, ephemeral=True, allowed_mentions=NO_MENTIONS)

    @app_commands.command(name="show", description="Show your defaults")
    async def show(self, interaction: discord.Interaction) -> None:
        await self._answer(interaction, prefs_text(await self.bot.studio.database.settings.user(interaction.user.id)))

    @app_commands.command(name="set", description="Set some of your defaults (the others stay as they are)")
    @app_commands.describe(aspect="Shape of your images", model="Model to use", negative="What to avoid",
                           sampler="Sampler (euler, ddim, ...)",
                           private="Send your results to you by DM (the channel gets a short note)",
                           dm_when_done="DM me a link when a job took at least this many seconds (0 = never)")
    @app_commands.choices(aspect=[app_commands.Choice(name=a, value=a) for a in ASPECTS])
    @app_commands.autocomplete(model=complete_models, sampler=complete_samplers)
    async def set(self, interaction: discord.Interaction, aspect: str | None = None, model: str | None = None,
                  negative: app_commands.Range[str, 1, 200] | None = None, sampler: str | None = None,
                  private: bool | None = None,
                  dm_when_done: app_commands.Range[int, 0, MAX_DM_AFTER_S] | None = None) -> None:
        studio = self.bot.studio
        if model is not None and model not in studio.model_names():
            await self._answer(interaction, f"There is no model called {model!r}. Known: {', '.join(studio.model_names())}.")
            return
        if sampler is not None and sampler not in studio.sampler_names():
            await self._answer(interaction, f"There is no sampler called {sampler!r}. "
                                            f"Known: {', '.join(studio.sampler_names())}.")
            return
        changes: dict[str, Any] = {}
        for key, value in (("default_aspect", aspect), ("default_model", model), ("negative", negative),
                           ("sampler", sampler)):
            if value is not None:
                changes[key] = value
        if private is not None:
            changes["dm_results"] = private
        if dm_when_done is not None:
            changes["dm_when_done_s"] = dm_when_done or None
        if not changes:
            await self._answer(interaction, "Give at least one option to set. " + prefs_text(
                await studio.database.settings.user(interaction.user.id)))
            return
        try:
            prefs = await studio.database.settings.update_user(interaction.user.id, **changes)
        except ValueError as exc:  # e.g. a negative prompt of only spaces
            await self._answer(interaction, f"That preference cannot be saved: {exc}.")
            return
        await self._answer(interaction, prefs_text(prefs, changed=" (updated)"))

    @app_commands.command(name="clear", description="Clear one of your defaults, or all of them")
    @app_commands.describe(option="Which default to clear (all when left out)")
    @app_commands.choices(option=[app_commands.Choice(name=n, value=n) for n in FIELDS])
    async def clear(self, interaction: discord.Interaction, option: str | None = None) -> None:
        settings = self.bot.studio.database.settings
        if option is None:
            await settings.clear_user(interaction.user.id)
            prefs = await settings.user(interaction.user.id)
        else:
            field = FIELDS[option]
            prefs = await settings.update_user(interaction.user.id, **{field: False if field == "dm_results" else None})
        await self._answer(interaction, prefs_text(prefs, changed=" (cleared)"))

    @commands.Cog.listener()
    async def on_easel_delivered(self, row: JobRow, channel_id: int, message_id: int) -> None:
        """The DM when done: for members who asked for it, after a job that took (queue and run,
        from the request until it finished) at least their threshold."""
        try:
            prefs = await self.bot.studio.database.settings.user(row.user_id)
            took = (row.finished_at or time.time()) - row.created_at
            if prefs.dm_when_done_s is None or took < prefs.dm_when_done_s:
                return
            if ratelimit.limits_for(self.bot).dms.take(row.user_id):
                log.info("job %s: no DM when done, member %s is over the DM limit", row.job_id, row.user_id)
                return
            user = self.bot.get_user(row.user_id) or await self.bot.fetch_user(row.user_id)
            what = "could not be made" if row.error else "is done"  # a failure is posted too: say which
            mark = "\u274c" if row.error else "\u2705"
            await user.send(f"{mark} Your job `{row.job_id}` {what} (it took {duration(took)}): "
                            f"{result_link(row.guild_id, channel_id, message_id)}", allowed_mentions=NO_MENTIONS)
        except discord.HTTPException as exc:  # DMs closed, member gone: the result is posted anyway
            log.info("job %s: could not DM member %s that it is done (%s)", row.job_id, row.user_id, exc)


async def setup(bot: EaselBot) -> None:
    await bot.add_cog(Prefs(bot))
