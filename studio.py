"""The studio: the glue between Discord cogs, the engine and the job log. Knows no discord types.

A request's life, as the cogs see it:

1. ``await studio.submit(job, ctx)`` writes the job as ``queued`` (committed) and only then puts
   it in the engine's queue. It returns the queue position; the cog may now tell the member.
2. The engine's events come back as :class:`StudioEvent` s to the listeners the cogs registered:
   ``JobQueued`` (position changed), ``JobProgress``, ``JobDone`` (images already encoded with
   their parameters and saved under content-addressed names, rows written, status ``done``),
   ``JobFailed``, ``JobCancelled``.
3. The cog posts the result and calls ``begin_delivery`` / ``mark_delivered``.

On start-up, ``start()`` puts ``queued``/``running`` jobs back into the queue in their original
order; ``undelivered()`` lists finished jobs whose result never reached Discord.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import time
from collections.abc import Callable, Coroutine, Mapping
from functools import partial
from typing import Any

from config import Config
from inference import jobs as J
from inference.anime.weights import WeightStore
from inference.backends import build_executor
from inference.describe import CaptionSource
from inference.engine import Engine
from inference.prompt_words import has_nsfw_word, word_list_digest
from inference.samplers import sampler_names
from inference.upscale import UpscalerWeights
from inference.validation import ModelInfo
from storage import Database, OutputStore, write_while_locked
from storage.png_writer import PngWriter
from studio_admission import Reservation, Reservations
from studio_events import (
    JobCancelled,
    JobDone,
    JobFailed,
    JobProgress,
    JobQueued,
    JobStarted,
    Listener,
    RequestContext,
    SavedImage,
    StudioEvent,
)
from studio_results import parameters_text, save_results
from studio_waiting import WaitingNotes

__all__ = [
    "JobCancelled", "JobDone", "JobFailed", "JobProgress", "JobQueued", "JobStarted", "Listener",
    "RequestContext", "SavedImage", "Studio", "StudioEvent", "new_job_id", "parameters_text",
]

log = logging.getLogger(__name__)

RETENTION_INTERVAL_S = 6 * 3600
# A stored file no row names is swept once it is this old: an input is stored just before its job
# is recorded, a result just before its rows, so a younger file may be about to be named.
ORPHAN_GRACE_S = 3600.0
CLOSE_WAIT_S = 60.0  # at shutdown, for the last results to be written


def new_job_id() -> str:
    """Short enough to type in /queue cancel, long enough never to collide (40 bits)."""
    return secrets.token_hex(5)


class Studio:
    def __init__(self, config: Config, *, engine: Engine | None = None) -> None:
        self.config = config
        # On disk only (downloads run on a thread of their own); one store for the refusals here and
        # the anime jobs on the GPU thread, so each file is checked, and each problem logged, once.
        self.anime_weights = WeightStore.from_config(config)
        self.upscaler_weights = UpscalerWeights.from_config(config)
        self.engine = engine or Engine(config, build_executor(config, anime_weights=self.anime_weights,
                                                              upscaler_weights=self.upscaler_weights))
        self.captions = CaptionSource.from_config(config)  # /describe's model: on disk only, fetched apart
        self.db: Database | None = None
        self.outputs = OutputStore(config.path(config.storage.outputs))
        self.png_writer = PngWriter(self.outputs, use_process=config.storage.png_process)
        self._listeners: list[Listener] = []
        self._contexts: dict[str, RequestContext] = {}
        self._jobs: dict[str, J.Job] = {}  # queued or running: saves a job-log read per result
        self._pending: set[asyncio.Task[Any]] = set()
        self._starting: list[str] = []  # started jobs waiting for their one job-log write
        self._announcing: set[str] = set()  # started jobs whose JobStarted is not out yet
        self._held: dict[str, JobProgress] = {}  # their latest progress, which must come after it
        self._start_writes: set[asyncio.Task[None]] = set()  # recorded before any finish is
        self._finishing: list[J.JobResult] = []  # results waiting to be saved together
        self._started = asyncio.Event()
        self._on_started: list[Callable[[], Any]] = []
        self._retention: asyncio.Task[None] | None = None
        self.reservations = Reservations(self.engine.queue)  # places held for requests not queued yet
        # Set by the poster of results (cogs/delivery.py): finished jobs are recorded already claimed
        # for it, and JobDone carries their rows, which saves it a trip to the job log per result.
        self.claim_for_posting = False
        self.engine.add_listener(self._on_engine_event)
        self.waiting_notes = WaitingNotes(config, self.engine, self._publish)  # "no worker holds its model"

    # ------------------------------------------------------------------ lifecycle

    async def start(self, *, warm_up: bool = True) -> list[str]:
        """Open the job log, start the PNG writer, load the model, requeue unfinished jobs.
        Returns the requeued ids."""
        if self.db is not None:
            return []
        place_threads = getattr(self.engine.executor, "place_threads", None)  # the local GPU executor's
        if place_threads is not None:  # before SQLite's worker and the PNG writer start: they inherit its cores
            place_threads()
        await self.outputs.prepare()
        self.db = await Database.open(self.config.path(self.config.storage.database))
        await self.png_writer.start()
        await self.flag_prompt_words()
        recovered = await self.db.jobs.recover()
        jobs = [self._word_flagged(J.job_from_params(row.job_id, row.user_id, row.params)) for row in recovered]
        self._jobs.update((j.job_id, j) for j in jobs)
        await self.engine.start(warm_up=warm_up)
        self.engine.restore(jobs)
        if jobs:
            log.info("requeued %d unfinished job(s) from the job log", len(jobs))
        self._retention = asyncio.create_task(self._prune_forever(), name="easel-retention")
        self.waiting_notes.start()
        self._started.set()
        for callback in self._on_started:
            callback()
        return [j.job_id for j in jobs]

    async def flag_prompt_words(self) -> None:
        """At start-up, before any result is posted: the word flag on stored images whose prompt has
        a ``discord.nsfw_words`` word (recorded before images carried the flag, or before the word
        was added). Flags are only ever set: a word taken off the list leaves them as shown. Once
        per word list: the list checked last is remembered, and the same list is not checked again."""
        words = self.config.discord.nsfw_words
        images, digest = self.database.images, word_list_digest(words)
        if await images.word_scan_digest() == digest:  # checked against this list already: jobs since were flagged
            return
        # No words is a list too: remembered, so results made under it are checked when words come back.
        flagged = await images.backfill_word_flags(partial(has_nsfw_word, words=words)) if words else 0
        await images.remember_word_scan(digest, time.time())
        if flagged:
            log.info("flagged %d stored image(s) whose prompt has a discord.nsfw_words word", flagged)

    def _word_flagged(self, job: J.Job) -> J.Job:
        """A recovered job queued before jobs carried the word flag gets it from its prompt here,
        once (launch() sets it on every new job), so its results are recorded flagged."""
        if not job.nsfw_word and isinstance(job, J.DiffusionJob | J.UpscaleJob) and any(has_nsfw_word(
                text, self.config.discord.nsfw_words) for text in (job.prompt, getattr(job, "to_prompt", ""))):
            return dataclasses.replace(job, nsfw_word=True)
        return job

    @property
    def started(self) -> bool:
        return self._started.is_set()

    async def prune_once(self) -> None:
        """Sweep stored files no job refers to (older than ``ORPHAN_GRACE_S``), and with
        ``storage.retention_days`` set, prune old finished jobs."""
        try:
            await self.database.sweep_orphans(self.outputs.folder, older_than_s=ORPHAN_GRACE_S)
        except Exception:  # pruning below must not depend on it
            log.exception("sweeping files no job refers to failed; will try again later")
        days = self.config.storage.retention_days
        if days <= 0:
            return
        report = await self.database.prune(days)
        if report.jobs or report.files:
            log.info("retention: removed %d job(s) and %d file(s) older than %d day(s)", report.jobs,
                     len(report.files), days)

    async def _prune_forever(self) -> None:
        """Retention runs in the background: at start, then every few hours; errors never stop it."""
        while True:
            try:
                await self.prune_once()
            except Exception:
                log.exception("retention pruning failed; will try again later")
            await asyncio.sleep(RETENTION_INTERVAL_S)

    async def close(self) -> None:
        if self._retention is not None:
            self._retention.cancel()
        await self.waiting_notes.stop()
        await self.engine.stop()
        if self._pending:  # the last results; a write still waiting for a locked job log is let go
            _, late = await asyncio.wait(set(self._pending), timeout=CLOSE_WAIT_S)
            for task in late:
                task.cancel()
            if late:
                log.warning("gave up writing %d result(s) to a locked job log; their jobs run again at the next start",
                            len(late))
                await asyncio.gather(*late, return_exceptions=True)
        await self.png_writer.close()
        if self.db is not None:
            await self.db.close()
            self.db = None

    @property
    def database(self) -> Database:
        if self.db is None:
            raise RuntimeError("the studio is not started")
        return self.db

    # ------------------------------------------------------------------ queries for cogs

    def when_started(self, callback: Callable[[], Any]) -> None:
        """Run ``callback`` once the job log is open (now, if it already is)."""
        if self.started:
            callback()
        else:
            self._on_started.append(callback)

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def model_info(self, name: str = "") -> ModelInfo:
        return self.engine.model_info(name)

    def model_names(self) -> list[str]:
        return [m.display_name for m in self.config.all_models]

    def lora_names(self, model: str = "") -> list[str]:
        return list(self.model_info(model).loras)

    def embedding_tokens(self, model: str = "") -> list[str]:
        """The words members write in a prompt to use the model's textual inversions ([[model.embeddings]])."""
        return [emb.word for emb in self.engine.executor.model_config(model).embeddings]

    def unsupported(self, kind: J.JobKind) -> str | None:
        """Why the configured backend cannot serve this kind of job (member-facing), or None."""
        check = getattr(self.engine.executor, "unsupported", None)
        return check(kind) if check is not None else None

    def refusal(self, job: J.Job) -> str | None:
        """Why ``job`` cannot be accepted (member-facing), or None: the backend cannot serve its kind
        or one of its options, or the weights of its anime style (or /describe's captioning model)
        are not in place (the path and fix go to the log)."""
        reason = self.unsupported(job.kind)
        options = getattr(self.engine.executor, "unsupported_options", None)  # the remote backend's
        if reason is None and options is not None:
            reason = options(job)
        if reason is None and isinstance(job, J.AnimeJob):
            reason = self.anime_weights.refusal(job.style)
        if reason is None and isinstance(job, J.DescribeJob):
            reason = self.captions.refusal()
        if reason is None and isinstance(job, J.UpscaleJob):
            reason = self.upscaler_weights.refusal(job.upscaler)
        return reason

    @staticmethod
    def sampler_names() -> list[str]:
        return sampler_names()

    # ------------------------------------------------------------------ requests

    async def submit(self, job: J.Job, ctx: RequestContext, *, reservation: Reservation | None = None,
                     suppliers: Mapping[str, int] | None = None) -> tuple[int, int, float]:
        """Record the job (committed) and queue it. Returns (position, queue length, eta seconds).

        Raises QueueRefused before anything is written when the member or the queue is full.
        ``reservation`` (from ``reservations.reserve``, studio_admission.py) is released when the
        queue holds the job, in the same step (no await in between), or when it cannot be queued.
        ``suppliers``: who supplied the job's input files (role → member) where it is not the
        job's owner, recorded with them (``JobLog.add``).
        """
        try:
            return await self._record_and_queue(job, ctx, suppliers)
        finally:
            if reservation is not None:
                reservation.release()

    async def _record_and_queue(self, job: J.Job, ctx: RequestContext,
                                suppliers: Mapping[str, int] | None = None) -> tuple[int, int, float]:
        self.engine.queue.check_room(job.owner)
        await self.database.jobs.add(
            job_id=job.job_id, kind=str(job.kind), user_id=ctx.user_id, guild_id=ctx.guild_id,
            channel_id=ctx.channel_id, params=job.to_params(), interaction_id=ctx.interaction_id,
            interaction_token=ctx.interaction_token, application_id=ctx.application_id,
            request_message_id=ctx.request_message_id, suppliers=suppliers,
        )
        self._contexts[job.job_id] = ctx
        self._jobs[job.job_id] = job
        try:
            self.engine.submit(job)
        except J.QueueRefused:
            await self.database.jobs.set_status(job.job_id, "cancelled", error="refused: queue full")
            raise
        position = self.engine.position(job.job_id)
        return position if position is not None else (0, len(self.engine.queue), 0.0)

    async def cancel(self, job_id: str, user_id: int, *, is_admin: bool = False) -> bool:
        """Cancel a member's own job (admins: anyone's). Raises JobError when it is not theirs."""
        row = await self.database.jobs.get(job_id)
        if row is None:
            raise J.JobError(f"There is no job `{job_id}`.")
        if row.user_id != user_id and not is_admin:
            raise J.JobError("You can only cancel your own jobs.")
        return self.engine.cancel(job_id)

    # ------------------------------------------------------------------ engine events

    def _on_engine_event(self, event: J.JobEvent) -> None:
        if isinstance(event, J.Queued):
            self._publish(self.waiting_notes.queued(event, self._jobs.get(event.job_id)))
        elif isinstance(event, J.Progress):
            progress = JobProgress(event.job_id, event.step, event.total_steps, event.preview)
            if event.job_id in self._announcing:  # a JobStarted after it would show an empty bar again
                self._held[event.job_id] = progress
            else:
                self._publish(progress)
        elif isinstance(event, J.Started):
            self._starting.append(event.job_id)
            self._announcing.add(event.job_id)
            if len(self._starting) == 1:
                write = self._track(self._record_started())
                self._start_writes.add(write)
                write.add_done_callback(self._start_writes.discard)
        elif isinstance(event, J.Finished):
            self._finishing.append(event.result)
            if len(self._finishing) == 1:
                self._track(self._record_finished())
        else:
            self._track(self._record(event))

    async def _record_started(self) -> None:
        """Record as running every job whose start arrived in the same turn of the loop (a batch
        starts together): one job-log write for all of them, then tell the cogs."""
        job_ids, self._starting = self._starting, []
        try:
            await write_while_locked(partial(self.database.jobs.set_statuses, job_ids, "running"),
                                     f"the start of job(s) {', '.join(job_ids)}")
        except Exception:
            log.exception("could not record the start of job(s) %s", ", ".join(job_ids))
        else:
            for job_id in job_ids:
                self._publish(JobStarted(job_id))
        for job_id in job_ids:  # then their progress (the executor's first is 0 of the job's steps)
            self._announcing.discard(job_id)
            held = self._held.pop(job_id, None)
            if held is not None:
                self._publish(held)

    async def _record_finished(self) -> None:
        """Save the results that arrived in the same turn of the loop (a batch ends together): their
        PNGs in one request to the PNG writer (storage/png_writer.py), their image rows and then
        their statuses in one trip to the job log; then tell the cogs (the log leads)."""
        results, self._finishing = self._finishing, []
        try:
            await self._starts_recorded()
            for event in await save_results(self, results):
                self._publish(event)
        except Exception:
            log.exception("could not record the result(s) of job(s) %s", ", ".join(r.job_id for r in results))
        finally:
            for result in results:
                self._forget(result.job_id)

    async def _record(self, event: J.JobEvent) -> None:
        """Persist a failure or cancellation, then tell the cogs (order matters: the log leads)."""
        try:
            await self._starts_recorded()
            if isinstance(event, J.Failed):
                await write_while_locked(partial(self.database.jobs.set_status, event.job_id, "failed",
                                                 error=event.message), f"the failure of job {event.job_id}")
                self._publish(JobFailed(event.job_id, event.message))
            elif isinstance(event, J.Cancelled):
                await write_while_locked(partial(self.database.jobs.set_status, event.job_id, "cancelled"),
                                         f"the cancellation of job {event.job_id}")
                self._publish(JobCancelled(event.job_id))
        except Exception:
            log.exception("could not record %s for job %s", type(event).__name__, event.job_id)
        finally:
            self._forget(event.job_id)

    async def _starts_recorded(self) -> None:
        """Wait for the start writes still on their way (retrying a locked job log): a job's end must
        not be written before its start, which would put a finished job back to ``running``."""
        if self._start_writes:
            await asyncio.gather(*self._start_writes, return_exceptions=True)

    def _forget(self, job_id: str) -> None:
        self._jobs.pop(job_id, None)
        self._contexts.pop(job_id, None)

    def requested_at(self, job_id: str) -> float | None:
        """When a queued or running job was asked for (wall clock), if this process took the request."""
        ctx = self._contexts.get(job_id)
        return ctx.requested_at if ctx is not None else None

    async def job(self, job_id: str) -> J.Job | None:
        """The job (kept in memory while it is queued or running, else read back from the log)."""
        job = self._jobs.get(job_id)
        if job is None:
            row = await self.database.jobs.get(job_id)
            if row is None:
                return None
            job = J.job_from_params(row.job_id, row.user_id, row.params)
        return job

    def _publish(self, event: StudioEvent) -> None:
        for listener in list(self._listeners):
            try:
                maybe = listener(event)
            except Exception:
                log.exception("studio listener failed on %s", type(event).__name__)
                continue
            if asyncio.iscoroutine(maybe):
                self._track(maybe)

    def _track(self, work: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``work`` as a task that ``close()`` waits for."""
        task = asyncio.get_running_loop().create_task(work)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        return task
