"""A member's cancel, in cluster mode: of a batch not sent yet (it ends at once), of one a worker holds
(a key for a worker that has not started it, a message for the one running it), and of a job cancelled
in the fair queue whose batch may still wait in a job stream from before the bot's restart."""

from __future__ import annotations

import logging
from typing import Any

from redis.exceptions import RedisError

from inference.jobs import Cancelled

log = logging.getLogger("inference.cluster.dispatch")

# A cancel for a batch waiting in a job stream from before a restart stays until a worker holding its
# model reads it, however long that takes (a week; it is one small key per cancelled job).
QUEUED_CANCEL_TTL_S = 7 * 24 * 3600


class Cancelling:
    """Mixed into :class:`inference.cluster.dispatch.ClusterExecutor`; needs what :class:`Collecting`
    needs (``_redis``, ``keys``, ``_batches``, ``_stash``, ``_cancelled``, ``_queued``, ``_caught_up``,
    ``_settle``, ``_remember``, ``_ack``) and ``_soon`` and ``_track``."""

    _redis: Any
    keys: Any
    _batches: dict[str, Any]
    _stash: dict[str, bytes]
    _cancelled: set[str]
    _queued: set[str]
    _caught_up: Any

    def cancel(self, job_id: str) -> None:
        self._soon(self._cancel, job_id)

    def cancel_queued(self, job_id: str) -> None:
        """A job cancelled in the fair queue before the job log handed it over again: should its batch
        wait in a job stream from before the bot's restart, the worker is told not to run it."""
        self._soon(lambda: self._track(self._cancel_waiting(job_id)))

    async def _cancel_waiting(self, job_id: str) -> None:
        await self._caught_up.wait()  # the startup scan has found what waits in the job streams
        self._remember(job_id)  # settled: a result still to come for it is dropped as a duplicate
        kept = self._stash.pop(job_id, None)  # one that came while the bot was away: nobody wants it now
        if kept is not None:
            await self._ack(kept)
        if job_id in self._queued:
            self._queued.discard(job_id)
            await self._cancel_sent(job_id, ttl_s=QUEUED_CANCEL_TTL_S)

    def _cancel(self, job_id: str) -> None:
        state = self._batches.get(job_id)
        if state is None:
            self._cancelled.add(job_id)
        elif not state.sent:
            self._track(self._settle(Cancelled(job_id), None))
        else:  # also noted: should its XADD fail after all, it is not sent again but ends as cancelled
            self._cancelled.add(job_id)
            self._track(self._cancel_sent(job_id))

    async def _cancel_sent(self, job_id: str, ttl_s: int = 3600) -> None:
        """The key, for a worker that has not started the job; the message, for the one running it."""
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.set(self.keys.cancel(job_id), 1, ex=ttl_s)
                pipe.publish(self.keys.cancels, job_id)
                await pipe.execute()
        except RedisError as exc:  # out of memory, or unreachable: the worker runs the job to its end
            log.warning("cluster: could not pass on the cancel of job %s (%s)", job_id, exc)
