"""Notes on a waiting job that its queue message shows beside its position: in cluster mode, that no
connected GPU worker holds its model (inference/cluster/dispatch.py, ``ClusterExecutor.unserved``).

The note goes out with each position update (:meth:`WaitingNotes.queued`) and, since a worker may
leave or arrive while no position changes, :meth:`WaitingNotes.refresh` runs every few seconds and
sends a waiting job's position again, with its notes, whenever they changed. A single-process bot's
executor has no ``unserved``: it never shows a note and runs no refresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from config import Config
from inference import jobs as J
from studio_events import JobQueued

log = logging.getLogger(__name__)


def no_worker_note(model: str, timeout_s: float) -> str:
    """What a member whose job waits for a worker is told; ``model`` "" for jobs of no model (/anime)."""
    span = f"{timeout_s / 60:.0f} min" if timeout_s >= 90 else f"{max(1, round(timeout_s))} s"
    which = f'with model "{model}" ' if model else ""
    return f"No GPU worker {which}is connected right now; your request waits for one (up to {span})."


class WaitingNotes:
    """The notes of waiting jobs (the engine's), and who was last told which."""

    def __init__(self, config: Config, engine: Any, publish: Callable[[JobQueued], None]) -> None:
        self.config = config
        self.engine = engine
        self._publish = publish
        self._unserved: Callable[[str], bool] | None = getattr(engine.executor, "unserved", None)
        self._shown: dict[str, tuple[str, ...]] = {}  # job id -> the notes its last JobQueued carried
        self._task: asyncio.Task[None] | None = None

    def notes(self, job: J.Job | None) -> tuple[str, ...]:
        if self._unserved is None or job is None:
            return ()
        name = getattr(job, "model", None)
        try:
            model = "" if name is None else self.engine.executor.model_config(name).display_name
            unserved = self._unserved(model)
        except Exception:  # a model taken out of the configuration: the executor fails the job itself
            return ()
        return (no_worker_note(model, self.config.cluster.no_worker_timeout_s),) if unserved else ()

    def queued(self, event: J.Queued, job: J.Job | None) -> JobQueued:
        """The studio's event for an engine's position update, with the job's notes."""
        notes = self.notes(job)
        if self._unserved is not None:  # only the refresh reads it (and forgets the jobs gone)
            self._shown[event.job_id] = notes
        return JobQueued(event.job_id, event.position, event.total, event.eta_s, notes)

    def refresh(self) -> None:
        """Tell each waiting job whose notes changed since its last position update."""
        waiting = self.engine.waiting()
        changed = [(job.job_id, notes) for job in waiting
                   if (notes := self.notes(job)) != self._shown.get(job.job_id, ())]
        places = self.engine.positions() if changed else {}  # one pass: a worker leaving changes many at once
        for job_id, notes in changed:
            where = places.get(job_id)
            if where is None:
                continue
            self._shown[job_id] = notes
            self._publish(JobQueued(job_id, *where, notes))
        ids = {j.job_id for j in waiting}
        for job_id in [k for k in self._shown if k not in ids]:
            del self._shown[job_id]

    def start(self) -> None:
        if self._unserved is not None and self._task is None:
            self._task = asyncio.create_task(self._refresh_forever(), name="easel-waiting-notes")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _refresh_forever(self) -> None:
        # The dispatcher looks at the workers every heartbeat while a batch waits for one.
        every = max(0.5, self.config.cluster.heartbeat_s)
        while True:
            await asyncio.sleep(every)
            try:
                self.refresh()
            except Exception:  # a note missed must never stop the next ones
                log.exception("updating the notes of waiting jobs failed")
