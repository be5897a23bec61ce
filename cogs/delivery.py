"""The poster: keeps each job's status message current and posts the result exactly once.

It listens to the studio. A job announced by a command has a status message (the deferred
interaction, or a reply for reactions), recorded in the job log when it is created; progress
edits are throttled to one per ``discord.progress_interval_s``; the result replaces the status.
After a restart the recorded message is edited the same way (through the interaction token while
it lives, else as the bot's own message by id). Only when that message is gone (deleted, or no
id known) is a new one posted, as a reply: first a placeholder, sent with a nonce derived from
the job, recorded, then filled with the result.

Exactly once: a finished job is claimed before posting and ``mark_delivered`` records the
message id. A live result comes claimed already: this cog sets ``Studio.claim_for_posting``, so
the studio records a finished job as ``delivering`` in the statement that records it finished,
and its JobDone carries the row and images (no trip to the job log before posting). Jobs the
studio did not claim (after a restart, a failure) are claimed here with ``begin_delivery``. A job
found ``delivering`` at start-up (the bot died between filling its message and recording it) is
posted again into its recorded message: an edit to the same final content, so once either way.

A post Discord did not take is tried again by a loop in this process (cogs/utils/posting.py says
which failures and how long to wait); refused for good, the job is ``undeliverable``. Every way a
post can fail ends there, also where the job log failed (claiming, reading, recording: tried again
from memory, cogs/utils/redelivery.py); the job log's writes around a post are written again while
another program holds it locked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import discord
from discord.ext import commands

from cogs.utils import describing, gate, posting, postlog
from cogs.utils.buttons import offers_for, result_view
from cogs.utils.extras import extra_files
from cogs.utils.origin import ChannelStatus, Origin, StatusGone, StatusMessage, renewed
from cogs.utils.private import PrivateResults, is_private_note
from cogs.utils.redelivery import RetryLoop
from cogs.utils.result_text import caption, failure_text, gone_text, grid_png
from cogs.utils.text import (
    NO_MENTIONS,
    fit_message,
    progress_text,
    queued_text,
)
from inference.imaging import fit_for_upload, thumbnail_png
from inference.imaging.animation import fit_stored
from inference.jobs import MorphJob, job_from_params
from studio import JobCancelled, JobDone, JobProgress, JobQueued, JobStarted, StudioEvent

if TYPE_CHECKING:
    from bot import EaselBot
    from storage import ImageRow, JobRow

log = logging.getLogger(__name__)

DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024


@dataclass
class Tracked:
    job_id: str
    previews: gate.Treatment = gate.Treatment.PLAIN  # how the NSFW gate lets its previews be shown
    status: asyncio.Future[StatusMessage | None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    origin: Origin | None = None
    text: str = ""
    preview: Any = None
    dirty: bool = False
    updater: asyncio.Task[None] | None = None
    gone: bool = False  # the status message can no longer be edited: the result gets a new one
    kind: str = ""  # the job's kind: what its progress line says it is doing


class Delivery(commands.Cog):
    def __init__(self, bot: EaselBot) -> None:
        self.bot = bot
        self.tracked: dict[str, Tracked] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._redelivery_scheduled = False
        # Jobs this process is posting right now. A job requeued at start-up can finish and be
        # mid-upload ("delivering") when the redelivery scan reads the job log; without this the
        # scan would take it for a post the previous process left unfinished and post it again.
        self._posting: set[str] = set()
        self.interval = bot.config.discord.progress_interval_s
        self.retries = RetryLoop(self)
        self.private = PrivateResults(bot)

    async def cog_load(self) -> None:
        self.bot.delivery = self
        self.bot.studio.add_listener(self.on_studio_event)
        self.bot.studio.claim_for_posting = True  # results come claimed for us, with their rows

    async def cog_unload(self) -> None:
        self.bot.studio.claim_for_posting = False  # nobody would post them: the next start's scan will
        await self.close()

    async def close(self) -> None:
        """Stop posting (shutdown). Finished jobs not yet posted are posted by the next start."""
        await self.retries.close()
        tasks = [*self._tasks, *(t.updater for t in self.tracked.values() if t.updater is not None)]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # ------------------------------------------------------------------ tracking

    def expect(self, job_id: str, *, previews: gate.Treatment = gate.Treatment.PLAIN, kind: str = "") -> None:
        self.tracked[job_id] = Tracked(job_id, previews=previews, kind=kind)

    def drop(self, job_id: str) -> None:
        self.tracked.pop(job_id, None)

    def attach(self, job_id: str, status: StatusMessage | None, origin: Origin) -> None:
        t = self.tracked.get(job_id)
        if t is None:
            return
        t.origin = origin
        self._spawn(self._adopt(t, status, origin))

    async def _adopt(self, t: Tracked, status: StatusMessage | None, origin: Origin) -> None:
        """Record the job's status message in the job log before anything can be uploaded into it
        (the result waits for ``t.status``). A job whose status could not be shown through its
        origin gets one in the channel."""
        try:
            if status is None or status.message_id is None:
                text = t.text or f"\u23f3 Queued \u00b7 job `{t.job_id}`"
                status = await self._open_in_channel(t.job_id, origin.channel_id, text,
                                                     reference_id=origin.context().request_message_id, replaces=None)
            else:
                await postlog.record_status_message(self.bot.studio.database, t.job_id, status.message_id)
        except Exception as exc:  # the result still goes out; only a crash before it would post it twice
            log.warning("job %s: could not record or open its status message (%s)", t.job_id, exc)
        finally:
            if not t.status.done():
                t.status.set_result(status)
            self._poke(t)

    # ------------------------------------------------------------------ events

    def on_studio_event(self, event: StudioEvent) -> None:
        t = self.tracked.get(event.job_id)
        if isinstance(event, JobQueued | JobStarted | JobProgress):
            if t is None:
                return
            if isinstance(event, JobQueued):
                t.text = queued_text(event.job_id, event.position, event.total, event.eta_s, event.notes)
            elif isinstance(event, JobStarted):
                t.text = progress_text(event.job_id, 0, 1, t.kind)
            else:
                t.text = progress_text(event.job_id, event.step, event.total_steps, t.kind)
                if event.preview is not None and self.bot.config.device.previews:
                    t.preview = event.preview  # keep the last preview until a newer one comes
            t.dirty = True
            self._poke(t)
            return
        if isinstance(event, JobDone) and event.row is not None:
            # Recorded already claimed for us: ours to post from this moment (the restart scan
            # must not take it for a post a previous process left unfinished).
            self._posting.add(event.job_id)
        self._spawn(self._finish(event, t))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _poke(self, t: Tracked) -> None:
        """Make sure an edit is on its way if the status changed and nobody is editing."""
        if not t.dirty or t.gone or not t.status.done() or t.status.result() is None:
            return
        if t.updater is None or t.updater.done():
            t.updater = asyncio.create_task(self._keep_current(t, t.status.result()))

    async def _keep_current(self, t: Tracked, status: StatusMessage) -> None:
        """Edit the status message while something changed, at most once per interval."""
        while t.dirty:
            t.dirty = False
            files = None
            if t.preview is not None and t.previews is not gate.Treatment.WITHHELD:
                data = await asyncio.to_thread(thumbnail_png, t.preview, 256)
                files = [gate.image_file(data, "preview.png", t.previews)]
            try:
                await status.edit(t.text, files=files)
            except StatusGone as exc:
                log.info("job %s: its status message is gone (%s); the result will get a new one", t.job_id, exc)
                t.gone = True
                return
            except discord.HTTPException as exc:
                log.info("job %s: progress edit failed (%s)", t.job_id, exc)
            await asyncio.sleep(self.interval)

    async def _finish(self, event: StudioEvent, t: Tracked | None) -> None:
        status: StatusMessage | None = None
        if t is not None:
            status = await t.status
            if t.updater is not None:
                t.updater.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await t.updater
            self.tracked.pop(event.job_id, None)
        if isinstance(event, JobCancelled):
            try:
                await self._show_cancelled(event.job_id, status)
            except Exception:
                log.exception("job %s: could not show that it was cancelled", event.job_id)
            return
        await self.deliver(event.job_id, status, t, event if isinstance(event, JobDone) else None)

    async def _show_cancelled(self, job_id: str, status: StatusMessage | None) -> None:
        """The status says cancelled and loses its Cancel button; after a restart (no status in
        memory) the recorded message is edited."""
        if status is None:
            row = await self.bot.studio.database.jobs.get(job_id)
            if row is None or (row.status_message_id is None and not posting.token_alive(row)):
                return
            status = posting.recorded_status(self.bot, row)
        try:
            await status.edit(f"\u2716\ufe0f Cancelled \u00b7 job `{job_id}`", files=[], view=discord.ui.View())
        except (StatusGone, discord.HTTPException) as exc:
            log.info("job %s: could not show that it was cancelled (%s)", job_id, exc)

    # ------------------------------------------------------------------ posting

    async def deliver(self, job_id: str, status: StatusMessage | None, t: Tracked | None = None,
                      done: JobDone | None = None) -> None:
        """Post a finished job's result exactly once: claim it in the job log (unless the studio
        recorded it claimed for us: ``done.row``), post, record the message. Never raises: a post
        that fails in any way is tried again (cogs/utils/redelivery.py)."""
        claimed = done is not None and done.row is not None  # on_studio_event marked it as ours
        if job_id in self._posting and not claimed:
            return  # this process is already posting it
        self._posting.add(job_id)  # before the claim: the scan must never see our claim without this
        try:
            await self._deliver(job_id, status, t, done)
        except Exception as exc:  # the job log failed around the post (claim, read, record)
            self.bot.dispatch("easel_post_failed", job_id)
            self.retries.later(job_id, exc)
        finally:
            self._posting.discard(job_id)

    async def _deliver(self, job_id: str, status: StatusMessage | None, t: Tracked | None,
                       done: JobDone | None) -> None:
        if done is not None and done.row is not None:  # claimed when it was recorded
            row, images, extras = done.row, list(done.image_rows), list(done.extras)
        else:
            claimed = await postlog.claim(self.bot.studio.database, job_id)
            if claimed is None:
                return  # already delivered (or being delivered) elsewhere
            row, images, extras = claimed
        try:
            if status is None:
                status = posting.recorded_status(self.bot, row)
            content, files, view = await self._render(row, images, t, done, extras)
            content, files, view = await self.private.divert(row, content, files, view)  # /prefs private
            try:
                await status.edit(content, files=files, view=view)
            except StatusGone as exc:
                log.info("job %s: its status message is gone (%s); posting the result in a new one", job_id, exc)
                status = await self._open_in_channel(job_id, row.channel_id, f"\u23f3 Finishing job `{job_id}`\u2026",
                                                     reference_id=row.request_message_id or status.message_id,
                                                     replaces=status.message_id)
                await status.edit(content, files=renewed(files), view=view)  # the same result, new File objects
        except Exception as exc:
            await self.retries.failed(row, exc)
            return
        assert status.message_id is not None
        # A private result's note in the channel is no image source: its images are not linked to it, so
        # nobody's reaction or menu on the note reaches them (cogs/utils/private.py).
        await postlog.record_posted(self.bot.studio.database, job_id, status.channel_id, status.message_id,
                                    link_images=not is_private_note(content))
        self.retries.settled(job_id)
        self.bot.dispatch("easel_delivered", row, status.channel_id, status.message_id)  # cogs/prefs.py: DM when done

    async def _open_in_channel(self, job_id: str, channel_id: int, text: str, *, reference_id: int | None,
                               replaces: int | None) -> ChannelStatus:
        """A new status message in the job's channel, recorded in the job log before anything is
        uploaded into it. Its nonce (from the job and the message it replaces) makes a repeat of
        this post after a crash, before the record, return the same message."""
        channel = await self._channel(channel_id)
        reference = None
        if reference_id:
            reference = discord.MessageReference(message_id=reference_id, channel_id=channel_id,
                                                 fail_if_not_exists=False)
        message = await channel.send(fit_message(text), reference=reference, allowed_mentions=NO_MENTIONS,
                                     nonce=posting.nonce_for(job_id, replaces))
        await postlog.record_status_message(self.bot.studio.database, job_id, message.id)
        return ChannelStatus(message)

    async def _render(self, row: JobRow, images: list[ImageRow], t: Tracked | None, done: JobDone | None,
                      extras: list[tuple[str, Path]]) -> tuple[str, list[discord.File], discord.ui.View]:
        if row.error:
            return failure_text(row.error, row.job_id), [], discord.ui.View()
        seconds = done.seconds if done else (row.finished_at - row.started_at if row.finished_at and row.started_at
                                             else None)
        if row.kind == "describe":  # text only: the suggestions, gated (cogs/utils/describing.py)
            content, view = await describing.render(self.bot, row, await self._channel(row.channel_id), seconds)
            return content, [], view
        job = job_from_params(row.job_id, row.user_id, row.params)
        images = sorted(images, key=lambda r: r.idx)
        if not images:
            return gone_text(row.job_id), [], discord.ui.View()
        content = caption(job, [im.seed for im in images], seconds, done.note if done else "")
        flags, how = gate.Flags.of(images), gate.Treatment.PLAIN
        if flags:  # the NSFW gate, with the server's policy in force now (also after a restart)
            how = await gate.treatment(self.bot, flags, row.guild_id, await self._channel(row.channel_id))
        if how is gate.Treatment.WITHHELD:
            blocked = "\n\U0001f6ab The result was flagged as NSFW and is not shown in this channel."
            return content + blocked, [], discord.ui.View()
        paths = [Path(im.path) for im in images]
        if isinstance(job, MorphJob):
            return await self._render_animation(row, paths[0], content, how, t)
        try:
            if len(paths) > 1:
                data = await asyncio.to_thread(grid_png, paths)
            else:
                data = await self.bot.studio.outputs.read(paths[0])
        except FileNotFoundError as exc:  # deleted from outputs/ by hand: no wait brings it back
            log.warning("job %s: its image files are gone (%s); posting that they are no longer stored", row.job_id, exc)
            return gone_text(row.job_id), [], discord.ui.View()
        limit = self._upload_limit(row, t)
        fitted, filename = await asyncio.to_thread(fit_for_upload, data, limit, stem=f"easel-{row.job_id}")
        if not filename.endswith(".png"):
            content += "\n\u2139\ufe0f Re-encoded to fit Discord's upload limit; the original PNG is kept by the bot."
        files = [gate.image_file(fitted, filename, how)]
        shown = await extra_files(self.bot, extras, how, limit - len(fitted))  # cogs/utils/extras.py
        files, content = files + shown.files, content + shown.note
        offers = offers_for(self.bot, getattr(job, "model", ""))
        return fit_message(content), files, result_view(row.job_id, len(images), kind=str(job.kind), offers=offers)

    async def _render_animation(self, row: JobRow, path: Path, content: str, how: gate.Treatment,
                                t: Tracked | None) -> tuple[str, list[discord.File], discord.ui.View]:
        """A morph: its stored animation, or a shorter copy that fits the upload limit (said so)."""
        try:
            data = await self.bot.studio.outputs.read(path)
        except FileNotFoundError as exc:
            log.warning("job %s: its animation is gone (%s); posting that it is no longer stored", row.job_id, exc)
            return gone_text(row.job_id), [], discord.ui.View()
        fitted = await asyncio.to_thread(fit_stored, data, self._upload_limit(row, t))
        if fitted.note:
            content += f"\n\u2139\ufe0f {fitted.note}"
        files = [gate.image_file(fitted.data, f"easel-{row.job_id}.{fitted.fmt}", how)]
        return fit_message(content), files, result_view(row.job_id, 1, kind=str(row.params.get("kind", "")))

    async def _channel(self, channel_id: int) -> discord.abc.Messageable:
        channel = self.bot.get_channel(channel_id) or await self.bot.fetch_channel(channel_id)
        assert isinstance(channel, discord.abc.Messageable)
        return channel

    def _upload_limit(self, row: JobRow, t: Tracked | None) -> int:
        if t is not None and t.origin is not None:
            return t.origin.upload_limit
        guild = self.bot.get_guild(row.guild_id) if row.guild_id else None
        return guild.filesize_limit if guild is not None else DEFAULT_UPLOAD_LIMIT

    # ------------------------------------------------------------------ after a restart

    @commands.Cog.listener()
    async def on_ready(self) -> None:
        """Once per process, after the first connection: post what a previous run did not, then
        keep trying the posts that fail."""
        if not self._redelivery_scheduled:
            self._redelivery_scheduled = True
            self.bot.studio.when_started(lambda: self._spawn(self.retries.after_restart()))

    async def redeliver(self) -> None:
        """Post what a previous process left unposted (cogs/utils/redelivery.py)."""
        await self.retries.scan()

    def due(self, job_id: str) -> bool:
        """Whether the retry loop may post this job now (nobody in this process is at it)."""
        return job_id not in self.tracked and job_id not in self._posting


async def setup(bot: EaselBot) -> None:
    await bot.add_cog(Delivery(bot))
