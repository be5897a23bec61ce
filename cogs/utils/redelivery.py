"""Posts that failed are tried again by the running process, not left for the next start.

The poster hands every failed post to :meth:`RetryLoop.failed`, which records it in the job log
(attempts, error, when to try again, or undeliverable: cogs/utils/posting.py decides) and tells
the member privately the first time Discord refuses for lack of a permission. The loop wakes when
the earliest retry is due (and at least every ``SWEEP_INTERVAL_S``, when it also drops interaction
tokens older than Discord's 15 minutes) and posts what is due through the poster's ``deliver``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from functools import partial
from typing import TYPE_CHECKING

from cogs.utils import posting
from storage import write_while_locked

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

    async def failed(self, row: JobRow, exc: BaseException) -> None:
        """Record a post Discord did not take, and when to try it again (or that it never will be)."""
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
            await posting.tell_privately(self.bot, row, posting.permission_notice(row, missing, left, over))
        if give_up:
            log.warning("job %s: Discord refused its result %d time(s), last: %s; it is marked undeliverable",
                        row.job_id, attempts, error)
        else:
            log.warning("job %s: posting failed (%s); trying again in %.0f s", row.job_id, error, wait)
        if not posting.from_discord(exc):  # our own bug, not Discord's answer: show where
            log.error("job %s: posting failed inside easel", row.job_id, exc_info=exc)
        try:
            await write_while_locked(partial(self.bot.studio.database.jobs.delivery_failed, row.job_id, error,
                                             retry_at=None if give_up else time.time() + wait),
                                     f"the failed post of job {row.job_id}")
        except Exception:
            log.exception("job %s: could not record the failed post; it is posted again at the next start", row.job_id)
        self._wake.set()

    async def sweep_tokens(self) -> None:
        """Drop interaction tokens Discord no longer honours (15 minutes after the interaction)."""
        dropped = await self.bot.studio.database.jobs.clear_interaction_tokens(
            time.time() - posting.TOKEN_LIFETIME_S)
        if dropped:
            log.debug("dropped %d expired interaction token(s)", dropped)

    async def _run(self) -> None:
        """Post what is due, then sleep until the next retry is due (or the next sweep)."""
        db = self.bot.studio.database
        next_sweep = time.time() + SWEEP_INTERVAL_S
        while True:
            self._wake.clear()  # before looking: a failure recorded from here on wakes the wait below
            due: float | None = None
            try:
                now = time.time()
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
            until = min(next_sweep, due if due is not None else next_sweep)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(MIN_WAIT_S, until - time.time()))
