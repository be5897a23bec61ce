"""Prometheus metrics of the studio: what a job's life and the queue look like from outside.

Counters and histograms move with the studio's events (a job started, done, failed, cancelled;
the wait is from the member's request to the start); gauges (queue by state, the GPU thread's busy share, models loaded) are read from the
engine when Prometheus scrapes. Everything lives in a registry of its own (not prometheus-client's
global one), so two studios in one process (tests) never mix. Label values are bounded: a job's
kind, the model's configured name, and a failure reason from a fixed set, never member text.

cogs/metrics.py serves :meth:`StudioMetrics.exposition` at ``/metrics`` and the health check at
``/healthz``. Knows no discord types.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from inference.executor import OOM_MESSAGE, internal_error_message
from studio_events import JobCancelled, JobDone, JobFailed, JobStarted, StudioEvent

if TYPE_CHECKING:
    from collections.abc import Iterator

    from prometheus_client import Metric

    from studio import Studio

# Seconds: from a second (a turbo model on a GPU) to the longest waits of a busy server.
WAIT_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600)
RUN_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300)
FAILURE_REASONS = ("out_of_memory", "internal", "refused")


def failure_reason(message: str) -> str:
    """A failure's label: ``out_of_memory``, ``internal`` (a bug or a broken model: see the log), or
    ``refused`` (the job could not be served as asked: an input gone, an option the model lacks)."""
    if message == OOM_MESSAGE:
        return "out_of_memory"
    if message == internal_error_message():
        return "internal"
    return "refused"


class StudioMetrics:
    """The studio's metrics, fed by its events (:meth:`on_event` is a studio listener)."""

    def __init__(self, studio: Studio) -> None:
        self.studio = studio
        self.registry = CollectorRegistry()
        labels = ("kind", "model")
        self.wait = Histogram("easel_job_wait_seconds", "Time a job waited in the queue before it started",
                              labels, buckets=WAIT_BUCKETS, registry=self.registry)
        self.run = Histogram("easel_job_run_seconds", "Time from a job's start to its end",
                             labels, buckets=RUN_BUCKETS, registry=self.registry)
        self.served = Counter("easel_jobs_served", "Jobs that finished with a result", labels, registry=self.registry)
        self.failed = Counter("easel_jobs_failed", "Jobs that failed, by reason",
                              ("kind", "model", "reason"), registry=self.registry)
        self.cancelled = Counter("easel_jobs_cancelled", "Jobs cancelled by their member or an admin",
                                 labels, registry=self.registry)
        self.post_failures = Counter("easel_delivery_failures", "Result posts that failed (Discord refused or "
                                     "was unreachable, or the job log failed around the post); each is tried "
                                     "again unless it can never succeed", registry=self.registry)
        self.registry.register(_EngineGauges(studio))
        # Cluster mode only (inference/cluster/): filled by cogs/metrics.py before each scrape, and
        # not exported without a cluster (a single-process bot has no workers to count).
        cluster = self.registry if studio.config.cluster.redis_url else CollectorRegistry()
        self.workers = Gauge("easel_cluster_workers", "Live GPU workers (cluster mode)", registry=cluster)
        worker = ("worker",)
        self.heartbeat_age = Gauge("easel_cluster_worker_heartbeat_age_seconds", "Seconds since a worker's last "
                                   "heartbeat", worker, registry=cluster)
        self.free_slots = Gauge("easel_cluster_worker_free_slots", "Batches a worker can take now", worker,
                                registry=cluster)
        self.worker_served = Gauge("easel_cluster_worker_jobs_served", "Jobs a worker has served", worker,
                                   registry=cluster)
        self._started_at: dict[str, float] = {}  # monotonic
        self._labels: dict[str, tuple[str, str]] = {}

    def set_workers(self, workers: list[dict[str, Any]], now: float | None = None) -> None:
        """The cluster's live workers as ``executor.workers()`` lists them (name, free, served, beat)."""
        now = time.time() if now is None else now
        for gauge in (self.heartbeat_age, self.free_slots, self.worker_served):
            gauge.clear()  # a worker gone since the last scrape is gone from the figures too
        self.workers.set(len(workers))
        for w in workers:
            self.heartbeat_age.labels(w["name"]).set(max(0.0, now - float(w["beat"])))
            self.free_slots.labels(w["name"]).set(w["free"])
            self.worker_served.labels(w["name"]).set(w["served"])

    def exposition(self) -> bytes:
        """The text Prometheus scrapes."""
        return generate_latest(self.registry)

    async def on_event(self, event: StudioEvent) -> None:
        now = time.monotonic()
        job_id = event.job_id
        if isinstance(event, JobStarted):
            self._started_at[job_id] = now
            asked = self.studio.requested_at(job_id)  # None: a job recovered after a restart
            if asked is not None:
                self.wait.labels(*await self._labels_of(job_id)).observe(max(0.0, time.time() - asked))
        elif isinstance(event, JobDone | JobFailed | JobCancelled):
            labels = (str(event.job.kind), self._model_name(getattr(event.job, "model", ""))) \
                if isinstance(event, JobDone) else await self._labels_of(job_id)
            started = self._started_at.pop(job_id, None)
            if started is not None and not isinstance(event, JobCancelled):
                self.run.labels(*labels).observe(now - started)
            if isinstance(event, JobDone):
                self.served.labels(*labels).inc()
            elif isinstance(event, JobFailed):
                self.failed.labels(*labels, failure_reason(event.message)).inc()
            else:
                self.cancelled.labels(*labels).inc()
            self._labels.pop(job_id, None)

    async def _labels_of(self, job_id: str) -> tuple[str, str]:
        labels = self._labels.get(job_id)
        if labels is None:
            job = await self.studio.job(job_id)
            labels = ("unknown", "") if job is None else (str(job.kind), self._model_name(getattr(job, "model", "")))
            self._labels[job_id] = labels
        return labels

    def _model_name(self, model: str) -> str:
        """A job's model as configured ("" is the default model, named as /easel status names it)."""
        return model or self.studio.config.model.display_name


class _EngineGauges(Collector):
    """Read at scrape time: nothing to keep in step."""

    def __init__(self, studio: Studio) -> None:
        self.studio = studio

    def collect(self) -> Iterator[Metric]:
        status = self.studio.engine.status()
        queue = GaugeMetricFamily("easel_queue_jobs", "Jobs in the queue by state", labels=("state",))
        queue.add_metric(("waiting",), status.queued)
        queue.add_metric(("running",), status.running)
        yield queue
        yield GaugeMetricFamily("easel_gpu_busy_ratio", "Share of time the GPU thread ran batches since its first",
                                value=status.busy_fraction)
        loaded = GaugeMetricFamily("easel_models_loaded", "Models held in memory, by where they are",
                                   labels=("model", "where"))
        for name in status.models:
            loaded.add_metric((name, "ram" if name in status.parked else "device"), 1)
        yield loaded
