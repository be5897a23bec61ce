"""``cluster.local_worker = true``: the bot's own GPU serves as one more worker of its cluster.

The bot still dispatches every job through Redis (:class:`ClusterExecutor`), so the fair order, the
room per worker and exactly-once delivery are the cluster's, unchanged; the local worker is the very
:class:`Worker` of ``python bot.py --worker`` (its own :class:`GpuExecutor`, models loaded at its
start, a model that fails to load logged and not announced), heartbeating and reading the job streams
like any other. It runs on a thread of its own with its own event loop ("easel-local-worker"), so its
Redis and GPU work never waits on the bot's loop, nor the bot's on it.

Stopping (the engine's stop calls the executor's ``shutdown``): the worker stops reading, its running
batches end and are answered, it leaves the roster, and only then does the dispatcher stop. Results it
answers after the dispatcher stopped reading wait in Redis for the next start, as a remote worker's do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading

from config import Config
from inference.cluster.dispatch import ClusterExecutor
from inference.cluster.worker import Worker

log = logging.getLogger(__name__)

# At shutdown, how long the bot waits for the local worker's running batches to end (a batch runs to
# its end; one still running after this is answered by the next start, as after a crash).
STOP_WAIT_S = 300.0


def local_worker_name(config: Config) -> str:
    """``cluster.worker_name``, or this machine's name with ``-local`` (remote workers add their pid)."""
    return config.cluster.worker_name or f"{socket.gethostname()}-local"


class LocalWorker:
    """A :class:`Worker` serving from this process, on its own thread and event loop."""

    def __init__(self, config: Config, *, worker: Worker | None = None) -> None:
        self.worker = worker or Worker(config, name=local_worker_name(config))
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name="easel-local-worker", daemon=True)

    @property
    def name(self) -> str:
        return self.worker.name

    @property
    def running(self) -> bool:
        """Whether its thread still serves (or lets its last batches end)."""
        return self._thread.is_alive()

    def start(self) -> None:
        self._thread.start()

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self.worker.run())
        except Exception:  # logged, not raised: the bot keeps serving through its other workers
            log.exception("local worker %s stopped on an error", self.worker.name)
        finally:  # what asyncio.run does on leaving: no generator or helper thread left behind
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.run_until_complete(self._loop.shutdown_default_executor())
            self._loop.close()

    def stop(self, timeout: float = STOP_WAIT_S) -> None:
        """Stop reading new work and wait for the running batches to end and be answered."""
        if not self.running:
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: the worker has already left
            self._loop.call_soon_threadsafe(self.worker.stop)
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("local worker %s: its batches did not end within %g s; the next start answers them",
                        self.worker.name, timeout)


class ClusterWithLocalWorker(ClusterExecutor):
    """The cluster's dispatcher, with the bot's own GPU as one of the workers it dispatches to."""

    def __init__(self, config: Config, *, local: LocalWorker | None = None) -> None:
        super().__init__(config)
        try:
            self.local_worker = local or LocalWorker(config)
        except BaseException:  # no dispatcher thread left behind by a bot that could not start
            super().shutdown()
            raise
        self.local_worker.start()

    def shutdown(self) -> None:
        self.local_worker.stop()  # first: its last results go out while the dispatcher still reads them
        super().shutdown()
