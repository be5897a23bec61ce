"""The poster: keeps each job's status message current and posts the result exactly once.

It listens to the studio. A job announced by a command has a status message (the deferred
interaction, or a reply for reactions); progress edits are throttled to one per
``discord.progress_interval_s``; the result replaces the status. Jobs without a status message
(restarted bot, requeued job) are posted to their channel as a reply quoting the request.

Exactly once: a finished job is claimed before posting and ``mark_delivered`` records the
message id. A live result comes claimed already: this cog sets ``Studio.claim_for_posting``, so
the studio records a finished job as ``delivering`` in the statement that records it finished,
and its JobDone carries the row and images (no trip to the job log before posting). Jobs the
studio did not claim (after a restart, a failure) are claimed here with ``begin_delivery``. A job
found ``delivering`` at start-up (the bot died between finishing and recording the post) is
looked up in its channel's recent messages before anything is posted again.
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
from PIL import Image

from cogs.utils import gate
from cogs.utils.buttons import result_view
from cogs.utils.origin import ChannelStatus, Origin, StatusMessage
from cogs.utils.text import NO_MENTIONS, duration, fit_message, progress_text, queued_text, quote
from inference.imaging import encode_png, fit_for_upload, make_grid, read_parameters, thumbnail_png
from inference.jobs import AnimeJob, DiffusionJob, Job, job_from_params
from studio import JobCancelled, JobDone, JobProgress, JobQueued, JobStarted, StudioEvent

if TYPE_CHECKING:
    from bot import EaselBot
    from storage import ImageRow, JobRow

log = logging.getLogger(__name__)

DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024
HISTORY_SCAN = 50  # messages looked at to find a result posted just before a crash
POST_ATTEMPTS = 3


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


def caption(job: Job, seeds: list[int], seconds: float | None, note: str = "") -> str:
    by = f"<@{job.owner}>"
    took = f"{duration(seconds)} \u00b7 " if seconds is not None else ""
    if isinstance(job, AnimeJob):
        head = f"\U0001f338 AnimeGAN2 `{job.style}` for {by}"
        tail = f"{took}job `{job.job_id}`"
    else:
        assert isinstance(job, DiffusionJob)
        head = f"**{quote(job.prompt)}** for {by}"
        tail = (f"seed `{', '.join(map(str, seeds)) or job.seed}` \u00b7 {job.steps} steps \u00b7 "
                f"{job.width}x{job.height} \u00b7 {took}job `{job.job_id}`")
    lines = [head, tail]
    if note:
        lines.append(f"\u2139\ufe0f {quote(note, 300)}")
    return "\n".join(lines)


def is_result_of(message: discord.Message, job_id: str) -> bool:
    """Our posted result for this job: its file (easel-<job>.*, maybe spoilered) or, for a
    failure or a blocked result, its text without any status attachment."""
    names = [a.filename.removeprefix("SPOILER_") for a in message.attachments]
    if any(n.startswith(f"easel-{job_id}") for n in names):
        return True
    return f"job `{job_id}`" in message.content and message.content.startswith("\u26a0") and not names


def grid_png(paths: list[Path]) -> bytes:
    """The grid posted for count > 1, carrying the first image's parameters."""
    images = []
    for path in paths:
        with Image.open(path) as im:
            images.append(im.convert("RGB"))
    return encode_png(make_grid(images), read_parameters(paths[0].read_bytes()))


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

    async def cog_load(self) -> None:
        self.bot.delivery = self
        self.bot.studio.add_listener(self.on_studio_event)
        self.bot.studio.claim_for_posting = True  # results come claimed for us, with their rows

    async def cog_unload(self) -> None:
        self.bot.studio.claim_for_posting = False  # nobody would post them: the next start's scan will
        await self.close()

    async def close(self) -> None:
        """Stop posting (shutdown). Finished jobs not yet posted are posted by the next start."""
        tasks = [*self._tasks, *(t.updater for t in self.tracked.values() if t.updater is not None)]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # ------------------------------------------------------------------ tracking

    def expect(self, job_id: str, *, previews: gate.Treatment = gate.Treatment.PLAIN) -> None:
        self.tracked[job_id] = Tracked(job_id, previews=previews)

    def drop(self, job_id: str) -> None:
        self.tracked.pop(job_id, None)

    def attach(self, job_id: str, status: StatusMessage | None, origin: Origin) -> None:
        t = self.tracked.get(job_id)
        if t is None:
            return
        t.origin = origin
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
                t.text = queued_text(event.job_id, event.position, event.total, event.eta_s)
            elif isinstance(event, JobStarted):
                t.text = progress_text(event.job_id, 0, 1)
            else:
                t.text = progress_text(event.job_id, event.step, event.total_steps)
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
        if not t.dirty or not t.status.done() or t.status.result() is None:
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
        try:
            if isinstance(event, JobCancelled):
                if status is not None:
                    await status.edit(f"\u2716\ufe0f Cancelled \u00b7 job `{event.job_id}`", files=[],
                                      view=discord.ui.View())
                return
            await self.deliver(event.job_id, status, t, event if isinstance(event, JobDone) else None)
        except Exception:
            log.exception("job %s: delivery failed; it will be retried at the next start", event.job_id)

    # ------------------------------------------------------------------ posting

    async def deliver(self, job_id: str, status: StatusMessage | None, t: Tracked | None = None,
                      done: JobDone | None = None) -> None:
        """Post a finished job's result exactly once: claim it in the job log (unless the studio
        recorded it claimed for us: ``done.row``), post, record the message."""
        claimed = done is not None and done.row is not None  # on_studio_event marked it as ours
        if job_id in self._posting and not claimed:
            return  # this process is already posting it
        self._posting.add(job_id)  # before the claim: the scan must never see our claim without this
        try:
            await self._deliver(job_id, status, t, done)
        finally:
            self._posting.discard(job_id)

    async def _deliver(self, job_id: str, status: StatusMessage | None, t: Tracked | None,
                       done: JobDone | None) -> None:
        db = self.bot.studio.database
        if done is not None and done.row is not None:  # claimed when it was recorded
            row, images = done.row, list(done.image_rows)
        else:
            # Claim, then read the row and its images: issued together they share one trip to
            # SQLite's thread and run in this order (storage/batched.py), so what is read is the
            # claimed job.
            claimed, found, images = await asyncio.gather(
                db.jobs.begin_delivery(job_id), db.jobs.get(job_id), db.images.for_job(job_id))
            if not claimed:
                return  # already delivered (or being delivered) elsewhere
            assert found is not None
            row = found
        for attempt in range(1, POST_ATTEMPTS + 1):
            try:
                if status is None:
                    status = await self._channel_status(row)
                content, files, view = await self._render(row, images, t, done)
                await status.edit(content, files=files, view=view)
                break
            except discord.HTTPException as exc:
                log.warning("job %s: posting failed (attempt %d): %s", job_id, attempt, exc)
                if attempt == POST_ATTEMPTS:
                    await db.jobs.release_delivery(job_id)
                    return
                await asyncio.sleep(attempt)
        assert status is not None and status.message_id is not None
        await self._record_posted(job_id, status.channel_id, status.message_id)

    async def _record_posted(self, job_id: str, channel_id: int, message_id: int) -> None:
        """The job delivered as ``message_id`` and its images linked to it, in one trip to SQLite."""
        db = self.bot.studio.database
        await asyncio.gather(db.jobs.mark_delivered(job_id, channel_id=channel_id, message_id=message_id),
                             db.images.set_message(job_id, message_id))

    async def _channel_status(self, row: JobRow) -> StatusMessage:
        """A fresh reply in the request's channel (the interaction token is gone)."""
        channel = await self._channel(row.channel_id)
        reference = None
        if row.request_message_id:
            reference = discord.MessageReference(message_id=row.request_message_id, channel_id=row.channel_id,
                                                 fail_if_not_exists=False)
        text = f"\u23f3 Finishing job `{row.job_id}` for <@{row.user_id}>\u2026"
        message = await channel.send(text, reference=reference, allowed_mentions=NO_MENTIONS)
        return ChannelStatus(message)

    async def _render(self, row: JobRow, images: list[ImageRow], t: Tracked | None,
                      done: JobDone | None) -> tuple[str, list[discord.File], discord.ui.View]:
        if row.error:
            return f"\u26a0\ufe0f {quote(row.error, 1500)} \u00b7 job `{row.job_id}`", [], discord.ui.View()
        job = job_from_params(row.job_id, row.user_id, row.params)
        images = sorted(images, key=lambda r: r.idx)
        if not images:
            return f"\u26a0\ufe0f The images of job `{row.job_id}` are no longer stored.", [], discord.ui.View()
        seconds = done.seconds if done else (row.finished_at - row.started_at if row.finished_at and row.started_at
                                             else None)
        content = caption(job, [im.seed for im in images], seconds, done.note if done else "")
        flags, how = gate.Flags.of(images), gate.Treatment.PLAIN
        if flags:  # the NSFW gate, with the server's policy in force now (also after a restart)
            how = await gate.treatment(self.bot, flags, row.guild_id, await self._channel(row.channel_id))
        if how is gate.Treatment.WITHHELD:
            blocked = "\n\U0001f6ab The result was flagged as NSFW and is not shown in this channel."
            return content + blocked, [], discord.ui.View()
        paths = [Path(im.path) for im in images]
        if len(paths) > 1:
            data = await asyncio.to_thread(grid_png, paths)
        else:
            data = await self.bot.studio.outputs.read(paths[0])
        limit = self._upload_limit(row, t)
        fitted, filename = await asyncio.to_thread(fit_for_upload, data, limit, stem=f"easel-{row.job_id}")
        if not filename.endswith(".png"):
            content += "\n\u2139\ufe0f Re-encoded to fit Discord's upload limit; the original PNG is kept by the bot."
        files = [gate.image_file(fitted, filename, how)]
        return fit_message(content), files, result_view(row.job_id, len(images), kind=str(job.kind))

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
        """Once per process, after the first connection: post what a previous run did not."""
        if not self._redelivery_scheduled:
            self._redelivery_scheduled = True
            self.bot.studio.when_started(lambda: self._spawn(self._redeliver()))

    async def _redeliver(self) -> None:
        try:
            await self.redeliver()
        except Exception:
            log.exception("redelivery of finished jobs failed")

    async def redeliver(self) -> None:
        db = self.bot.studio.database
        for row in await db.jobs.undelivered():
            if row.job_id in self.tracked or row.job_id in self._posting:
                continue  # this process posts it (a status message waits for it, or the post is on its way)
            if row.status == "delivering":
                message = await self._find_posted(row)
                if message is not None:
                    await self._record_posted(row.job_id, message.channel.id, message.id)
                    continue
                await db.jobs.release_delivery(row.job_id)
            log.info("posting the result of job %s that was not delivered before the restart", row.job_id)
            await self.deliver(row.job_id, None)

    async def _find_posted(self, row: JobRow) -> discord.Message | None:
        """Our message for this job, if it reached Discord before the crash."""
        try:
            channel = await self._channel(row.channel_id)
            async for message in channel.history(limit=HISTORY_SCAN):
                if message.author.id == getattr(self.bot.user, "id", None) and is_result_of(message, row.job_id):
                    return message
        except discord.HTTPException as exc:
            log.warning("job %s: could not read channel history (%s)", row.job_id, exc)
        return None


async def setup(bot: EaselBot) -> None:
    await bot.add_cog(Delivery(bot))
