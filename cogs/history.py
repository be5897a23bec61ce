"""/history (your jobs, searchable, each with Redo) and /forget (delete your data)."""

from __future__ import annotations

import contextlib
import datetime as dt
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from cogs.utils.buttons import EaselButton
from cogs.utils.text import NO_MENTIONS, quote

if TYPE_CHECKING:
    from bot import EaselBot
    from storage import HistoryPage

PAGE = 5
KINDS = ("imagine", "vary", "paint", "anime", "morph", "upscale", "describe")


def render(page: HistoryPage, offset: int, title: str) -> discord.Embed:
    embed = discord.Embed(title=title, colour=discord.Colour.blurple())
    if not page.rows:
        embed.description = "Nothing here yet. Try `/imagine`!"
        return embed
    for n, row in enumerate(page.rows, start=1):
        when = dt.datetime.fromtimestamp(row.created_at, dt.UTC)
        p = row.params
        style = f"style `{p['style']}` \u00b7 " if p.get("style") else ""
        detail = (f"{style}seed `{p.get('seed', '-')}` \u00b7 {row.state} \u00b7 job `{row.job_id}` \u00b7 "
                  f"{discord.utils.format_dt(when, 'R')}")
        embed.add_field(name=f"{offset + n}. {row.kind}", value=f"{quote(row.prompt or '(no prompt)', 200)}\n{detail}",
                        inline=False)
    last = min(offset + PAGE, page.total)
    embed.set_footer(text=f"{offset + 1}-{last} of {page.total}")
    return embed


class HistoryView(discord.ui.View):
    """Paging buttons (for the member who asked) plus a Redo per job (restart-proof)."""

    def __init__(self, bot: EaselBot, owner: int, query: dict[str, Any], title: str) -> None:
        super().__init__(timeout=600)
        self.bot, self.owner, self.query, self.title, self.offset = bot, owner, query, title, 0
        self.interaction: discord.Interaction | None = None  # the /history that showed it, to edit on timeout

    async def on_timeout(self) -> None:
        """Paging stops working here: grey it out rather than let a click fail. Redo keeps working
        (restart-proof buttons)."""
        self.previous.disabled = self.next.disabled = True
        if self.interaction is not None:
            with contextlib.suppress(discord.HTTPException):
                await self.interaction.edit_original_response(view=self)

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        if interaction.user.id != self.owner:
            await interaction.response.send_message("This is someone else's history.", ephemeral=True)
            return False
        return True

    async def load(self) -> discord.Embed:
        page = await self.bot.studio.database.jobs.history(limit=PAGE, offset=self.offset, **self.query)
        for item in [i for i in self.children if isinstance(i, EaselButton)]:
            self.remove_item(item)
        for n, row in enumerate(page.rows, start=1):
            self.add_item(EaselButton("redo", row.job_id, label=f"Redo {self.offset + n}", emoji="\U0001f501", row=1))
        self.previous.disabled = self.offset == 0
        self.next.disabled = self.offset + PAGE >= page.total
        return render(page, self.offset, self.title)

    @discord.ui.button(label="Previous", emoji="\u25c0\ufe0f", row=0)
    async def previous(self, interaction: discord.Interaction, _button: discord.ui.Button[HistoryView]) -> None:
        self.offset = max(0, self.offset - PAGE)
        await interaction.response.edit_message(embed=await self.load(), view=self)

    @discord.ui.button(label="Next", emoji="\u25b6\ufe0f", row=0)
    async def next(self, interaction: discord.Interaction, _button: discord.ui.Button[HistoryView]) -> None:
        self.offset += PAGE
        await interaction.response.edit_message(embed=await self.load(), view=self)


def busy_text(bot: EaselBot, user_id: int) -> str | None:
    """Forgetting a member with jobs in the queue would leave those jobs nowhere to record their result."""
    # with the requests past their checks that are being recorded right now
    pending = bot.studio.engine.queue.pending_for(user_id) + bot.studio.reservations.held(user_id)
    if not pending:
        return None
    return (f"You have {pending} job(s) in the queue. Cancel them with `/queue` or wait for them to finish, "
            "then use `/forget` again.")


class ForgetView(discord.ui.View):
    def __init__(self, bot: EaselBot, owner: int) -> None:
        super().__init__(timeout=120)
        self.bot, self.owner = bot, owner
        self.interaction: discord.Interaction | None = None  # the /forget that asked, to edit on timeout

    async def on_timeout(self) -> None:
        if self.interaction is not None:
            with contextlib.suppress(discord.HTTPException):
                await self.interaction.edit_original_response(
                    content="Nothing was deleted: the question expired. Use `/forget` again if you meant it.",
                    view=None)

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        if interaction.user.id != self.owner:
            await interaction.response.send_message("Only the member who asked to be forgotten can confirm this.",
                                                    ephemeral=True)
            return False
        return True

    @discord.ui.button(label="Yes, delete everything", style=discord.ButtonStyle.danger)
    async def confirm(self, interaction: discord.Interaction, _button: discord.ui.Button[ForgetView]) -> None:
        self.stop()
        busy = busy_text(self.bot, self.owner)
        if busy is not None:
            await interaction.response.edit_message(content=f"Nothing was deleted. {busy}", view=None)
            return
        await interaction.response.defer()  # scrubbing the database files can take longer than Discord waits
        report = await self.bot.studio.database.forget(self.owner)
        await interaction.edit_original_response(
            content=f"Done: deleted {report.jobs} job(s), {report.images} image record(s) and {len(report.files)} "
                    "file(s). Messages already posted in channels stay until someone deletes them.", view=None)

    @discord.ui.button(label="Keep my data", style=discord.ButtonStyle.secondary)
    async def keep(self, interaction: discord.Interaction, _button: discord.ui.Button[ForgetView]) -> None:
        self.stop()
        await interaction.response.edit_message(content="Nothing was deleted.", view=None)


class History(commands.Cog):
    def __init__(self, bot: EaselBot) -> None:
        self.bot = bot

    @app_commands.command(name="history", description="Your past images, searchable, with Redo")
    @app_commands.describe(search="Words from the prompt", kind="Only this kind of job",
                           server="Everyone's jobs on this server (needs Manage Server)")
    @app_commands.choices(kind=[app_commands.Choice(name=k, value=k) for k in KINDS])
    async def history(self, interaction: discord.Interaction, search: app_commands.Range[str, 1, 100] | None = None,
                      kind: str | None = None, server: bool = False) -> None:
        query: dict[str, Any] = {"kind": kind, "search": search}
        title = "Your history"
        if server:
            if interaction.guild_id is None or not interaction.permissions.manage_guild:
                await interaction.response.send_message("Seeing the server's history needs Manage Server.",
                                                        ephemeral=True)
                return
            query["guild_id"] = interaction.guild_id
            title = "This server's history"
        else:
            query["user_id"] = interaction.user.id
        if search:
            title += f" \u00b7 \u201c{quote(search, 60)}\u201d"
        view = HistoryView(self.bot, interaction.user.id, query, title)
        embed = await view.load()
        await interaction.response.send_message(embed=embed, view=view, ephemeral=True, allowed_mentions=NO_MENTIONS)
        view.interaction = interaction

    @app_commands.command(name="forget", description="Delete your prompts, jobs and images from this bot")
    async def forget(self, interaction: discord.Interaction) -> None:
        busy = busy_text(self.bot, interaction.user.id)
        if busy is not None:
            await interaction.response.send_message(busy, ephemeral=True)
            return
        view = ForgetView(self.bot, interaction.user.id)
        await interaction.response.send_message(
            "This deletes every job, prompt and stored image of yours from this bot, on every server. Sure?",
            view=view, ephemeral=True)
        view.interaction = interaction


async def setup(bot: EaselBot) -> None:
    await bot.add_cog(History(bot))
