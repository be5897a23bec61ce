"""Review findings on the queue message's worker note (studio_waiting.py)."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

from config import ClusterConfig
from inference.jobs import Queued, TextToImageJob
from studio_events import JobQueued
from studio_waiting import WaitingNotes, no_worker_note


def _job(job_id: str) -> TextToImageJob:
    return TextToImageJob(job_id=job_id, owner=1, prompt="a lighthouse", width=64, height=64, steps=2, model="tiny")


class _Engine:
    def __init__(self) -> None:
        self.executor = SimpleNamespace()  # a GPU executor: no unserved(), so no refresh ever runs

    def waiting(self) -> list[TextToImageJob]:
        return []


def test_a_single_process_bot_remembers_nothing_per_job_it_was_told_about(tiny_config) -> None:
    """Every position update of every job went into ``_shown``, and only the cluster's refresh ever
    emptied it: a single-process bot kept one entry per job ever queued, for as long as it ran."""
    sent: list[JobQueued] = []
    notes = WaitingNotes(tiny_config, _Engine(), sent.append)
    for i in range(50):
        assert notes.queued(Queued(f"j{i}", 1, 1, 0.0), _job(f"j{i}")).notes == ()
    assert notes._shown == {}


class _Cluster:
    def __init__(self, missing: set[str]) -> None:
        self.missing = missing

    def unserved(self, model: str) -> bool:
        return model in self.missing

    def model_config(self, name: str) -> SimpleNamespace:
        return SimpleNamespace(display_name=name)


class _Backlog:
    """An engine whose every read of the waiting order is counted (each is a pass over the queue)."""

    def __init__(self, executor: _Cluster, jobs: list[TextToImageJob]) -> None:
        self.executor = executor
        self.jobs = jobs
        self.passes = 0

    def waiting(self) -> list[TextToImageJob]:
        self.passes += 1
        return list(self.jobs)

    def positions(self) -> dict[str, tuple[int, int, float]]:
        self.passes += 1
        return {j.job_id: (i, len(self.jobs), 2.0 * i) for i, j in enumerate(self.jobs, start=1)}


def test_a_worker_leaving_updates_every_note_in_one_pass_over_the_queue(tiny_config) -> None:
    """When the only worker of a model leaves, every waiting job of it gets the note at once: asking
    the engine for each one's position read the whole queue once per job (O(n^2) on the event loop)."""
    config = dataclasses.replace(tiny_config, cluster=ClusterConfig(redis_url="redis://127.0.0.1:1/0"))
    cluster = _Cluster(set())
    engine = _Backlog(cluster, [_job(f"j{i}") for i in range(40)])
    sent: list[JobQueued] = []
    notes = WaitingNotes(config, engine, sent.append)
    cluster.missing = {"tiny"}
    engine.passes = 0
    notes.refresh()
    assert [(e.job_id, e.position, e.total, e.eta_s) for e in sent] == [(f"j{i}", i + 1, 40, 2.0 * (i + 1))
                                                                        for i in range(40)]
    assert all(e.notes == (no_worker_note("tiny", 600),) for e in sent)
    assert engine.passes <= 2


def test_the_engines_positions_are_its_position_of_each_waiting_job(tiny_config) -> None:
    from inference.engine import Engine, eta_key
    from inference.eta import EtaEstimator
    from inference.executor import GpuExecutor

    eta = EtaEstimator()
    jobs = [TextToImageJob(job_id=job_id, owner=owner, prompt="p", width=64, height=64, steps=steps, model="tiny")
            for job_id, owner, steps in [("a1", 1, 2), ("a2", 1, 9), ("b1", 2, 9)]]
    eta.record(eta_key(jobs[0]), 1.0)
    eta.record(eta_key(jobs[1]), 5.0)
    eng = Engine(tiny_config, GpuExecutor(tiny_config), eta=eta)  # not started: every job waits
    try:
        for job in jobs:
            eng.submit(job)
        assert eng.positions() == {j.job_id: eng.position(j.job_id) for j in jobs}
        assert eng.positions()["a2"] == (3, 3, 6.0)
    finally:
        eng.executor.shutdown()
