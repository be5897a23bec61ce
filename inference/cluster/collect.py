"""The bot's side of the results: collecting what workers send back (results and progress).

A mixin of :class:`inference.cluster.dispatch.ClusterExecutor` (its state lives there): results are
read through the consumer group ``bot`` (first those read before a restart and never acknowledged,
then new ones), matched to the batches waiting for them, acknowledged and deleted (the stream
keeps only results not handled yet). A result for a job not handed over yet (after a restart the
job log may hand a re-queued job over later) is kept in Redis until the job comes (the bot holds
only its entry id, and reads and decodes it then: a long outage's results cost no memory here); one for a job settled
lately is a duplicate (the job ran twice after a takeover) and is dropped. Progress is read without
a group. Across a Redis outage both readers retry with backoff, one log line per outage.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from inference.cluster.keys import BOT_GROUP, Keys, ensure_group
from inference.cluster.progress import progress_event
from inference.cluster.queued import queued_job_ids
from inference.cluster.wire import WireError, decode_result, result_job_id
from inference.executor import Emit, Outcome
from inference.jobs import Failed
from inference.prepare import PreparedJob

if TYPE_CHECKING:
    import redis.asyncio as aioredis

log = logging.getLogger("inference.cluster.dispatch")

STASH_MAX = 10_000  # results (entry ids) of jobs not handed over (yet) kept; the oldest goes first
SETTLED_MAX = 10000  # ids of jobs settled lately: a result for one of them is a duplicate
UNREADABLE_RESULT = ("The GPU worker's result for this request could not be read (its pictures are beyond what "
                     "the bot takes), so it was not posted. Try again, perhaps with a smaller size.")


@dataclass
class ClusterBatch:
    """A batch the engine handed over, until each of its jobs has an outcome."""

    jobs: list[PreparedJob]
    emit: Emit
    done: Future[list[Outcome]]
    model: str
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    sent: bool = False
    withdrawn: bool = False
    seq: int = -1  # order of arrival (-1: not numbered yet): a model's batches are sent in this order
    # Results (job id -> entry id) taken from the stash for this batch while it could still be
    # withdrawn: acknowledged when the batch ends with its outcomes, put back in the stash if it is withdrawn.
    kept: dict[str, bytes] = field(default_factory=dict)
    since: float = field(default_factory=time.monotonic)

    @property
    def ids(self) -> list[str]:
        return [p.job.job_id for p in self.jobs]


class Collecting:
    """Needs: ``_redis``, ``keys``, ``_batches``, ``_stash``, ``_settled``, ``_cancelled``, ``_queued``, ``_out``, ``_lock``,
    ``_changed``, ``_caught_up``, ``_closing``, ``_outage``, ``_backoff``, ``_served`` and ``_launch``."""

    _redis: aioredis.Redis
    keys: Keys
    _batches: dict[str, ClusterBatch]
    _stash: dict[str, bytes]
    _settled: dict[str, None]
    _cancelled: set[str]
    _queued: set[str]
    _out: dict[str, int]
    _lock: threading.RLock
    _changed: asyncio.Event
    _caught_up: asyncio.Event
    _closing: bool
    _outage: bool
    _backoff: float
    _served: int

    def _launch(self, state: ClusterBatch) -> None:
        raise NotImplementedError

    async def _read_results(self) -> None:
        cursor = "0"  # first what this bot read before and never acknowledged, then new results
        group = False
        while not self._closing:
            try:
                if not group:
                    await ensure_group(self._redis, self.keys.results, BOT_GROUP)
                    group = True
                reply = await self._redis.xreadgroup(BOT_GROUP, "bot", {self.keys.results: cursor}, count=64,
                                                     block=None if cursor != ">" else 500)
                entries = [e for _, es in reply or [] for e in es]
                if cursor != ">" and entries:
                    cursor = entries[-1][0]  # the pending entries after these, next pass
                elif cursor != ">":  # all pending ones read (and stashed or settled): now the new ones
                    cursor = ">"
                    reply = await self._redis.xreadgroup(BOT_GROUP, "bot", {self.keys.results: ">"}, count=1000)
                    entries = [e for _, es in reply or [] for e in es]
                for entry_id, fields in entries:
                    await self._take_safely(entry_id, fields)
                if cursor == ">" and not self._caught_up.is_set():
                    self._queued = await queued_job_ids(self._redis, self.keys)  # before anything is sent
                    self._caught_up.set()
                self._online()
            except asyncio.CancelledError:
                raise
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):  # refused (MISCONF: its disk is full): waited out, as an
                    cursor = "0"  # outage; a reader that ended would leave every job waiting
                    await self._offline(exc)
                    continue
                log.warning("cluster: Redis lost its streams (restarted without persistence?); creating them "
                            "again and sending the jobs in flight again")
                group = False
                self._send_again()
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                # Entries read but not handled yet are pending on us: read them again (those handled
                # already are dropped as duplicates), or their jobs would wait forever.
                cursor = "0"
                await self._offline(exc)

    def _send_again(self) -> None:
        """Send every batch out again (Redis lost them), each in its place (its ``seq``): a second
        result of one is dropped as a duplicate."""
        self._queued.clear()  # what waited in the job streams at start is gone with them
        for state in {id(s): s for s in self._batches.values()}.values():
            if state.sent and not state.done.done():
                self._unsend(state)
                self._launch(state)

    def _unsend(self, state: ClusterBatch) -> None:
        """``state`` is not out after all (its XADD failed, or Redis lost it): it counts no more."""
        with self._lock:
            was, state.sent = state.sent, False
        if was:
            self._out[state.model] = max(0, self._out.get(state.model, 0) - 1)

    def _complete(self, state: ClusterBatch, error: BaseException | None = None) -> bool:
        """End ``state``'s future with its outcomes (or ``error``) unless it has ended already (withdrawn
        on the engine's thread): decided under the lock, so only the first of the two completes it."""
        with self._lock:
            if state.done.done():
                return False
            if error is not None:
                state.done.set_exception(error)
            else:
                state.done.set_result([state.outcomes[jid] for jid in state.ids])
            return True

    async def _ack(self, *entry_ids: bytes) -> None:
        """Acknowledge result entries and delete them: handled, they need not stay in Redis."""
        if not entry_ids:
            return
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xack(self.keys.results, BOT_GROUP, *entry_ids)
            pipe.xdel(self.keys.results, *entry_ids)
            await pipe.execute()

    def _remember(self, job_id: str) -> None:
        self._settled[job_id] = None
        while len(self._settled) > SETTLED_MAX:
            del self._settled[next(iter(self._settled))]

    def _online(self) -> None:
        if self._outage:
            log.info("cluster: Redis reachable again")
        self._outage, self._backoff = False, 0.2

    async def _offline(self, exc: BaseException) -> None:
        """One log line per outage; waits longer each time (at most 5 s)."""
        if not self._outage:
            log.warning("cluster: Redis unreachable or refusing (%s); retrying", exc)
            self._outage = True
        await asyncio.sleep(self._backoff)
        self._backoff = min(self._backoff * 2, 5.0)

    async def _take_safely(self, entry_id: bytes, fields: dict | None) -> None:
        """One bad entry must not stop the reader (every job would wait forever): log it and ack it."""
        if fields is None:  # deleted from the stream since it was read
            await self._ack(entry_id)
            return
        try:
            await self._take_result(entry_id, fields)
        except (RedisConnectionError, RedisTimeoutError, OSError, ResponseError):
            raise
        except Exception:
            log.exception("cluster: dropped result %s that could not be handled", entry_id)
            await self._ack(entry_id)

    async def _take_result(self, entry_id: bytes, fields: dict) -> None:
        job_id = result_job_id(fields)  # from the entry's metadata alone: nothing decoded for a job not waited for
        if job_id is None:
            log.error("cluster: dropped result %s: it names no job", entry_id)
            await self._ack(entry_id)
        elif job_id in self._batches:
            await self._settle(await self._decoded(job_id, entry_id, fields), entry_id)
        elif job_id in self._settled:  # it ran again after a takeover: its outcome is in already
            log.info("cluster: dropped a second result of job %s", job_id)
            await self._ack(entry_id)
        else:  # not handed over (yet): after a restart the job log may hand it over later
            await self._keep(job_id, entry_id)

    async def _decoded(self, job_id: str, entry_id: bytes, fields: dict) -> Outcome:
        """The outcome a result entry of ``job_id`` carries; one it cannot read still ends the job, as
        a failure saying so (else its batch would wait forever)."""
        try:
            outcome, _worker = await asyncio.to_thread(decode_result, fields)
        except WireError as exc:
            log.error("cluster: unreadable result %s of job %s: %s", entry_id, job_id, exc)
            return Failed(job_id, UNREADABLE_RESULT)
        return outcome if outcome.job_id == job_id else Failed(job_id, UNREADABLE_RESULT)

    async def _kept_outcome(self, job_id: str) -> tuple[Outcome, bytes] | None:
        """The stashed result of ``job_id``, read back from Redis and decoded, and taken out of the
        stash; None when none is kept or it is gone from Redis (then the job is sent as any other)."""
        entry_id = self._stash.get(job_id)
        if entry_id is None:
            return None
        entries = await self._redis.xrange(self.keys.results, entry_id, entry_id)
        self._stash.pop(job_id, None)  # only once read: an outage meanwhile leaves it kept
        if not entries or entries[0][1] is None:
            return None
        return await self._decoded(job_id, entry_id, entries[0][1]), entry_id

    async def _keep(self, job_id: str, entry_id: bytes) -> None:
        """Stash a result's entry id until its job is handed over; the oldest goes (acknowledged) past STASH_MAX."""
        dropped = []
        replaced = self._stash.pop(job_id, None)
        if replaced is not None and replaced != entry_id:  # a second result of the job: the first is done with
            dropped.append(replaced)
        self._stash[job_id] = entry_id
        while len(self._stash) > STASH_MAX:
            dropped.append(self._stash.pop(next(iter(self._stash))))
        await self._ack(*dropped)

    async def _settle(self, outcome: Outcome, entry_id: bytes | None) -> None:
        """Record ``outcome`` (from the result ``entry_id``, if any) in its batch; the batch's future
        ends with its last one, and the results it came from are acknowledged and deleted then."""
        state = self._batches.pop(outcome.job_id, None)
        self._cancelled.discard(outcome.job_id)
        self._queued.discard(outcome.job_id)
        if state is None:  # a second result of a settled job, or its batch was taken back while this was read
            if entry_id is not None and outcome.job_id in self._settled:
                await self._ack(entry_id)
            elif entry_id is not None:  # kept for the job's next handover, as a result of a job not handed over
                await self._keep(outcome.job_id, entry_id)
            return
        if entry_id is not None:
            state.kept[outcome.job_id] = entry_id
        if state.withdrawn:  # taken back meanwhile: the result waits for the job's next handover
            self._restash(state)
            return
        self._remember(outcome.job_id)
        if state.done.done():  # the executor shut down: unacknowledged, the results are read at the next start
            return
        state.outcomes[outcome.job_id] = outcome
        if len(state.outcomes) < len(state.jobs):
            if state.sent:  # no longer withdrawable: done with this result
                await self._ack(*state.kept.values())
                state.kept.clear()
            return
        if state.sent:
            self._out[state.model] = max(0, self._out.get(state.model, 0) - 1)
        if self._complete(state):
            self._served += sum(1 for o in state.outcomes.values() if not isinstance(o, Failed))
            await self._ack(*state.kept.values())
            state.kept.clear()
        else:  # withdrawn on the engine's thread just now
            self._restash(state)
        self._changed.set()

    def _restash(self, state: ClusterBatch) -> None:
        self._stash.update(state.kept)
        state.kept.clear()

    async def _read_progress(self, last: bytes | str = "$") -> None:
        while not self._closing:
            try:
                reply = await self._redis.xread({self.keys.progress: last}, count=256, block=500)
            except asyncio.CancelledError:
                raise
            except (RedisConnectionError, RedisTimeoutError, OSError):  # the results reader logs the outage
                last = "$"  # a Redis that comes back empty numbers its entries from the start again
                await asyncio.sleep(1.0)
                continue
            for _, entries in reply or []:
                for entry_id, fields in entries:
                    last = entry_id
                    self._relay_progress(fields)

    def _relay_progress(self, fields: dict) -> None:
        event = progress_event(fields, wanted=self._batches.__contains__)
        state = self._batches.get(event.job_id) if event is not None else None
        if state is not None:
            state.emit(event)
