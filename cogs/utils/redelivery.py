"""Posts that failed are tried again by the running process, not left for the next start.

The poster hands every failed post to :meth:`RetryLoop.failed`, which records it in the job log
(attempts, error, when to try again, or undeliverable: cogs/utils/posting.py decides) and tells
the member privately the first time Discord refuses for lack of a permission. A failure the job
log itself could not take (claiming the post, reading the job or recording the outcome met a
locked or failing database) goes to :meth:`RetryLoop.later` and is kept in memory instead, with
the same doubling waits, without end. The loop wakes when the earliest retry is due (and at least
every ``SWEEP_INTERVAL_S``, when it also drops interaction tokens older than Discord's 15 minutes)
and posts what is due through the poster's ``deliver``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from functools import partial
from typing import TYPE_CHECKING

from cogs.utils import posting
from storage import is_busy, write_while_locked

if TYPE_CHECKING:
    from cogs.delivery import Delivery
    from storage import JobRow

log = logging.getLogger(__name__)

SWEEP_INTERVAL_S = 60.0
MIN_WAIT_S = 0.2  # between two looks at the job log, even when something is due at once


class RetryLoop:
    def __init__(self, poster: Delivery) -> None:
        self.poster = poster
        self.bot = poster.bot
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._later: dict[str, float] = {}  # job id -> when to try again: failures the job log did not take
        self._tries: dict[str, int] = {}  # job id -> such failures in a row (the waits double)

    async def after_restart(self) -> None:
        """Post what a previous process did not (:meth:`scan`), then start the loop. Unposted jobs
        are found only by this scan, so it is tried again until it gets through."""
        cfg = self.bot.config.discord
        tries = 0
        while True:
            try:
                await self.scan()
                break
            except Exception:
                tries += 1
                wait = posting.retry_delay(tries, cfg.delivery_retry_s, cfg.delivery_retry_max_s)
                log.exception("the redelivery of finished jobs failed; trying again in %.0f s", wait)
                await asyncio.sleep(wait)
        self.start()

    async def scan(self) -> None:
        """Post every finished job whose result a previous process did not record as posted."""
        db = self.bot.studio.database
        await self.sweep_tokens()
        for row in await db.jobs.undelivered():
            if not self.poster.due(row.job_id):
                continue  # this process posts it (a status message waits for it, or the post is on its way)
            if row.status == "delivering":
                # Cut short by the end of the previous process: filled again into its recorded
                # message, an edit that leaves that message the same whether or not it arrived.
                try:
                    await db.jobs.release_delivery(row.job_id)
                except Exception as exc:
                    self.later(row.job_id, exc)  # released and posted by the loop
                    continue
            log.info("posting the result of job %s that was not delivered before the restart", row.job_id)
            await self.poster.deliver(row.job_id, None)

    def start(self) -> None:
        """Start the loop (once the restart's redelivery is done)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="easel-redelivery")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def later(self, job_id: str, exc: BaseException) -> None:
        """A post that failed where the job log could not record it: tried again from memory after
        the usual doubling wait. The next try takes the job as the log has it then (claimed by the
        failed try, it is released first: :meth:`_post_again`)."""
        cfg = self.bot.config.discord
        tries = self._tries[job_id] = self._tries.get(job_id, 0) + 1
        wait = posting.retry_delay(tries, cfg.delivery_retry_s, cfg.delivery_retry_max_s)
        self._later[job_id] = time.time() + wait
        log.warning("job %s: its post failed and the job log could not record it (%s: %s); trying again in %.0f s",
                    job_id, type(exc).__name__, exc, wait, exc_info=None if is_busy(exc) or tries > 1 else exc)
        self._wake.set()

    def settled(self, job_id: str) -> None:
        """The job log holds the post's outcome (posted, or its failure recorded)."""
        self._tries.pop(job_id, None)
        self._later.pop(job_id, None)

    async def failed(self, row: JobRow, exc: BaseException) -> None:
        """Record a post Discord did not take, and when to try it again (or that it never will be)."""
        self.bot.dispatch("easel_post_failed", row.job_id)  # cogs/metrics.py counts them
        try:
            await self._record_failure(row, exc)
        except Exception as err:
            self.later(row.job_id, err)
        else:
            self.settled(row.job_id)
        self._wake.set()

    async def _record_failure(self, row: JobRow, exc: BaseException) -> None:
        cfg = self.bot.config.discord
        kind = posting.classify(exc)
        missing = posting.missing_permissions(self.bot.get_channel(row.channel_id)) if kind == "permission" else []
        error = posting.describe(exc, missing)
        attempts = row.delivery_attempts + 1
        give_up = kind != "retry" and attempts >= cfg.delivery_attempts
        wait = posting.retry_delay(attempts, cfg.delivery_retry_s, cfg.delivery_retry_max_s)
        if kind == "permission" and not (row.delivery_error or "").startswith(posting.PERMISSION_ERROR):
            left = cfg.delivery_attempts - attempts
            over = sum(posting.retry_delay(n, cfg.delivery_retry_s, cfg.delivery_retry_max_s)
                       for n in range(attempts, cfg.delivery_attempts))
            try:
                await posting.tell_privately(self.bot, row, posting.permission_notice(row, missing, left, over))
            except Exception:  # the member not told (the network, say) must not keep the failure unrecorded
                log.exception("job %s: could not tell member %s about the missing permission", row.job_id, row.user_id)
        if give_up:
            log.warning("job %s: Discord refused its result %d time(s), last: %s; it is marked undeliverable",
                        row.job_id, attempts, error)
        else:
            log.warning("job %s: posting failed (%s); trying again in %.0f s", row.job_id, error, wait)
        if not posting.from_discord(exc) and not is_busy(exc):  # our own bug, not Discord's answer: show where
            log.error("job %s: posting failed inside easel", row.job_id, exc_info=exc)
        await write_while_locked(partial(self.bot.studio.database.jobs.delivery_failed, row.job_id, error,
                                         retry_at=None if give_up else time.time() + wait),
                                 f"the failed post of job {row.job_id}")

    async def sweep_tokens(self) -> None:
        """Drop interaction tokens Discord no longer honours (15 minutes after the interaction)."""
        dropped = await self.bot.studio.database.jobs.clear_interaction_tokens(
            time.time() - posting.TOKEN_LIFETIME_S)
        if dropped:
            log.debug("dropped %d expired interaction token(s)", dropped)

    async def _post_again(self, job_id: str) -> None:
        """Post a job whose last try failed without the job log recording it. Found ``delivering``
        (claimed by that try; nobody in this process is posting it), it is released first, as a
        post cut short by a restart is."""
        self._later.pop(job_id, None)
        if not self.poster.due(job_id):
            return  # this process is at it already; that try settles it
        db = self.bot.studio.database
        try:
            row = await db.jobs.get(job_id)
            if row is None or row.undeliverable or row.status not in ("delivering", "done", "failed"):
                self.settled(job_id)  # posted, forgotten or given up meanwhile
                return
            if row.status == "delivering":
                await db.jobs.release_delivery(job_id)
        except Exception as exc:
            self.later(job_id, exc)
            return
        log.info("posting the result of job %s again (its last failure was not recorded)", job_id)
        await self.poster.deliver(job_id, None)

    async def _run(self) -> None:
        """Post what is due, then sleep until the next retry is due (or the next sweep)."""
        db = self.bot.studio.database
        cfg = self.bot.config.discord
        next_sweep = time.time() + SWEEP_INTERVAL_S
        while True:
            self._wake.clear()  # before looking: a failure recorded from here on wakes the wait below
            due: float | None = None
            try:
                now = time.time()
                for job_id in [j for j, when in self._later.items() if when <= now]:
                    await self._post_again(job_id)
                if now >= next_sweep:
                    next_sweep = now + SWEEP_INTERVAL_S
                    await self.sweep_tokens()
                for row in await db.jobs.undelivered(due_by=now):
                    if self.poster.due(row.job_id):
                        log.info("posting the result of job %s again (try %d)", row.job_id, row.delivery_attempts + 1)
                        await self.poster.deliver(row.job_id, None)
                due = await db.jobs.next_delivery_due()
            except Exception:
                log.exception("the redelivery loop failed; it goes on")
                due = time.time() + cfg.delivery_retry_s  # what it did not get to is looked at again soon
            if self._later:
                soonest = min(self._later.values())
                due = soonest if due is None else min(due, soonest)
            until = min(next_sweep, due if due is not None else next_sweep)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(MIN_WAIT_S, until - time.time()))
