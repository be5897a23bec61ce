"""The queue message's note that no connected GPU worker holds a waiting job's model (studio_waiting.py)."""

from __future__ import annotations

from types import SimpleNamespace

from cogs.utils.text import queued_text
from inference.jobs import Queued, TextToImageJob
from studio_events import JobQueued
from studio_waiting import WaitingNotes, no_worker_note
from tests.cluster.helpers import cluster_config


def _job(job_id: str, model: str) -> TextToImageJob:
    return TextToImageJob(job_id=job_id, owner=1, prompt="a lighthouse", width=64, height=64, steps=2, model=model)


class _Cluster:
    """The part of ClusterExecutor the notes read: which models no live worker holds."""

    def __init__(self, missing: set[str]) -> None:
        self.missing = missing

    def unserved(self, model: str) -> bool:
        return model in self.missing

    def model_config(self, name: str) -> SimpleNamespace:
        return SimpleNamespace(display_name=name or "tiny")


class _Engine:
    def __init__(self, executor: object, jobs: list[TextToImageJob]) -> None:
        self.executor = executor
        self.jobs = jobs

    def waiting(self) -> list[TextToImageJob]:
        return list(self.jobs)

    def position(self, job_id: str) -> tuple[int, int, float] | None:
        ids = [j.job_id for j in self.jobs]
        return (ids.index(job_id) + 1, len(ids), 4.0) if job_id in ids else None

    def positions(self) -> dict[str, tuple[int, int, float]]:
        return {j.job_id: (i, len(self.jobs), 4.0) for i, j in enumerate(self.jobs, start=1)}


def test_the_note_names_the_model_and_how_long_the_request_waits() -> None:
    assert no_worker_note("sdxl", 600) == ('No GPU worker with model "sdxl" is connected right now; your request '
                                           "waits for one (up to 10 min).")
    assert no_worker_note("", 30) == "No GPU worker is connected right now; your request waits for one (up to 30 s)."


def test_the_queue_message_shows_the_note_under_the_position() -> None:
    text = queued_text("abc123", 2, 3, 5.0, (no_worker_note("sdxl", 600),))
    head, note = text.split("\n")
    assert head.startswith("\u23f3 Queued: position **2** of 3") and "`abc123`" in head
    assert note == "\u2139\ufe0f " + no_worker_note("sdxl", 600)
    assert "\n" not in queued_text("abc123", 2, 3, 5.0)


def test_a_waiting_jobs_note_comes_and_goes_with_the_workers_of_its_model(tiny_config) -> None:
    config = cluster_config(tiny_config, "redis://127.0.0.1:1/0", no_worker_timeout_s=120)
    cluster = _Cluster({"sdxl"})
    engine = _Engine(cluster, [_job("a", "tiny"), _job("b", "sdxl")])
    sent: list[JobQueued] = []
    notes = WaitingNotes(config, engine, sent.append)
    assert notes.queued(Queued("a", 1, 2, 0.0), engine.jobs[0]) == JobQueued("a", 1, 2, 0.0, ())
    assert notes.queued(Queued("b", 2, 2, 4.0), engine.jobs[1]).notes == (no_worker_note("sdxl", 120),)
    notes.refresh()
    assert sent == []  # nothing changed since the position updates
    cluster.missing = set()  # a worker with sdxl connected
    notes.refresh()
    assert sent == [JobQueued("b", 2, 2, 4.0, ())]
    notes.refresh()
    assert len(sent) == 1
    cluster.missing = {"tiny"}  # the only worker with tiny left
    notes.refresh()
    assert sent[1:] == [JobQueued("a", 1, 2, 4.0, (no_worker_note("tiny", 120),))]


def test_a_job_shown_without_the_note_gets_it_when_its_model_has_no_worker(tiny_config) -> None:
    config = cluster_config(tiny_config, "redis://127.0.0.1:1/0")
    engine = _Engine(_Cluster({"sdxl"}), [_job("b", "sdxl")])
    sent: list[JobQueued] = []
    WaitingNotes(config, engine, sent.append).refresh()  # b was told its position at submit, with no note
    assert sent == [JobQueued("b", 1, 1, 4.0, (no_worker_note("sdxl", 600),))]


async def test_a_single_process_bot_never_shows_the_note(tiny_config) -> None:
    engine = _Engine(SimpleNamespace(), [_job("a", "tiny")])  # a GPU executor: no unserved()
    sent: list[JobQueued] = []
    notes = WaitingNotes(tiny_config, engine, sent.append)
    assert notes.queued(Queued("a", 1, 1, 0.0), engine.jobs[0]).notes == ()
    notes.refresh()
    notes.start()
    assert sent == [] and notes._task is None
    await notes.stop()
