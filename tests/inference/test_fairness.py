"""Fairness is exact: the batch queued early on the GPU thread is chosen for good only when it starts.

Member A submits four jobs; B submits one while A's first runs. The engine has taken A's second
job already (pipelining: it waits on the GPU thread, so the thread never waits for it), yet B's job
must run second. The orderings are proven with gates (a batch held on the GPU thread until the
test opens it), never with timings; the last test repeats the scenario on the tiny model.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from config import Config
from inference import executor as executor_module
from inference.engine import Engine
from inference.executor import GpuExecutor, Withdrawn
from inference.jobs import Cancelled, Finished, JobEvent, Progress, Started
from inference.prepare import PreparedJob
from studio import JobProgress, JobStarted, Studio, StudioEvent
from tests.inference.engine_helpers import GUARD_S, Outcomes, fake_runner, queue_config, started_engine, t2i


async def until(check: Callable[[], bool]) -> None:
    """Let the event loop run until ``check`` holds (the engine's hand-overs take a few turns)."""
    async with asyncio.timeout(GUARD_S):
        while not check():
            await asyncio.sleep(0.001)


def ids(jobs: Any) -> list[str]:
    return [job.job_id for job in jobs]


@dataclass
class HeldGpu:
    engine: Engine
    outcomes: Outcomes
    gate: threading.Event  # opening it lets the first batch finish
    entered: threading.Event  # the first batch is on the GPU thread
    calls: list[list[str]]  # the jobs of each batch that reached the pipeline, in order
    finished: list[str]  # Finished events, in order


@contextlib.asynccontextmanager
async def held_gpu(config: Config, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[HeldGpu]:
    """An engine whose first batch stays on the GPU thread until ``gate`` opens."""
    calls: list[list[str]] = []
    gate, entered = threading.Event(), threading.Event()
    runner = fake_runner([], 1.0, 1.0)

    def run(model: Any, batch: list[PreparedJob], on_step: Any) -> Any:
        calls.append(ids(p.job for p in batch))
        if len(calls) == 1:
            entered.set()
            assert gate.wait(GUARD_S)
        return runner(model, batch, on_step)

    monkeypatch.setattr(executor_module, "run_diffusion_batch", run)
    engine, outcomes = await started_engine(config)
    finished: list[str] = []
    engine.add_listener(lambda event: finished.append(event.job_id) if isinstance(event, Finished) else None)
    try:
        yield HeldGpu(engine, outcomes, gate, entered, calls, finished)
    finally:
        gate.set()
        await engine.stop()


async def a_runs_and_its_next_waits_on_the_gpu_thread(held: HeldGpu, first: list[str]) -> None:
    """A's four jobs are in; the batch ``first`` runs (held) and A's next batch is handed over."""
    for i in range(1, 5):
        held.engine.submit(t2i(f"a{i}", owner=1))
    assert await asyncio.to_thread(held.entered.wait, GUARD_S)
    await until(lambda: ids(held.engine.running()) == first and held.engine.executor.queued_batches() == 1)


async def test_b_submitting_while_as_first_job_runs_finishes_second(
        tiny_config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    async with held_gpu(queue_config(tiny_config, max_batch=1), monkeypatch) as held:
        engine = held.engine
        await a_runs_and_its_next_waits_on_the_gpu_thread(held, ["a1"])
        # a2 waits on the GPU thread: next, not running, and /queue says so
        assert ids(engine.waiting()) == ["a2", "a3", "a4"]
        assert engine.position("a2")[:2] == (1, 3)  # type: ignore[index]
        assert engine.status().running == 1 and engine.status().queued == 3
        assert engine.submit(t2i("b1", owner=2)) == 1
        assert ids(engine.waiting()) == ["b1", "a2", "a3", "a4"]
        assert engine.position("a2")[:2] == (2, 4)  # type: ignore[index]
        await until(lambda: engine.executor.queued_batches() == 1)  # b1's batch is on the thread in a2's place
        held.gate.set()
        for job_id in ("a1", "b1", "a2", "a3", "a4"):
            assert isinstance(await held.outcomes.get(job_id), Finished)
    assert held.finished == ["a1", "b1", "a2", "a3", "a4"]
    assert held.calls == [["a1"], ["b1"], ["a2"], ["a3"], ["a4"]]  # a2's withdrawn batch never ran


async def test_a_member_later_in_the_round_does_not_displace_the_batch_taken_early(
        tiny_config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only a job the fair order puts first replaces the batch on the GPU thread: A's own fifth
    job, or a member served after A, leaves it where it is."""
    config = queue_config(tiny_config, max_batch=1, per_user=5)
    async with held_gpu(config, monkeypatch) as held:
        engine = held.engine
        await a_runs_and_its_next_waits_on_the_gpu_thread(held, ["a1"])
        handed = engine._handover.batch_of("a2")
        assert handed is not None and handed.handed is not None
        engine.submit(t2i("a5", owner=1))
        assert engine.executor.queued_batches() == 1 and not handed.withdrawn
        assert ids(engine.waiting()) == ["a2", "a3", "a4", "a5"]
        held.gate.set()
        for job_id in ("a1", "a2", "a3", "a4", "a5"):
            assert isinstance(await held.outcomes.get(job_id), Finished)
    assert held.calls == [["a1"], ["a2"], ["a3"], ["a4"], ["a5"]]


async def test_with_batches_the_newcomer_leads_the_next_one(
        tiny_config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches of 2 that pay: a1+a2 run, a3+a4 wait on the GPU thread; b1 (same shape) arrives
    and the next batch is b1+a3."""
    async with held_gpu(queue_config(tiny_config, max_batch=2, batch_wait_ms=1), monkeypatch) as held:
        engine = held.engine
        engine.policy.record(t2i("m"), 1, 1.0)
        engine.policy.record(t2i("m"), 2, 0.2)
        await a_runs_and_its_next_waits_on_the_gpu_thread(held, ["a1", "a2"])
        assert ids(engine.waiting()) == ["a3", "a4"]
        engine.submit(t2i("b1", owner=2))
        held.gate.set()
        for job_id in ("a1", "a2", "b1", "a3", "a4"):
            assert isinstance(await held.outcomes.get(job_id), Finished)
    assert held.calls == [["a1", "a2"], ["b1", "a3"], ["a4"]]


async def test_a_batch_still_filling_gives_way_to_a_job_whose_turn_comes_first(
        tiny_config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    """While the GPU is busy, A's a3 waits for a companion (the batch ahead is expected to take 30 s);
    B's job of another size arrives and goes before it instead of after it."""
    config = queue_config(tiny_config, max_batch=2, batch_wait_ms=1)
    async with held_gpu(config, monkeypatch) as held:
        engine = held.engine
        engine.policy.record(t2i("m"), 1, 1.0)
        engine.policy.record(t2i("m"), 2, 0.2)
        engine.eta.record(engine._eta_key(t2i("m")), 30.0)
        for i in range(1, 4):
            engine.submit(t2i(f"a{i}", owner=1))
        assert await asyncio.to_thread(held.entered.wait, GUARD_S)
        await until(lambda: engine._handover.batch_of("a3") is not None)
        await asyncio.sleep(0.02)  # twenty times batch_wait_ms: a3 is filling, not handed over
        assert engine.executor.queued_batches() == 0
        engine.submit(t2i("b1", owner=2, width=128))
        await until(lambda: engine.executor.queued_batches() == 1)
        held.gate.set()
        for job_id in ("a1", "a2", "b1", "a3"):
            assert isinstance(await held.outcomes.get(job_id), Finished)
    assert held.calls == [["a1", "a2"], ["b1"], ["a3"]]


async def test_cancelling_a_job_waiting_on_the_gpu_thread_is_immediate(
        tiny_config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    async with held_gpu(queue_config(tiny_config, max_batch=1), monkeypatch) as held:
        engine = held.engine
        cancelled: list[JobEvent] = []
        engine.add_listener(lambda event: cancelled.append(event) if isinstance(event, Cancelled) else None)
        await a_runs_and_its_next_waits_on_the_gpu_thread(held, ["a1"])
        assert engine.cancel("a2")
        assert ids(cancelled) == ["a2"] and not engine.is_known("a2")  # at once, the GPU thread still held
        await until(lambda: engine.executor.queued_batches() == 1)  # a3 took its place
        held.gate.set()
        for job_id in ("a1", "a3", "a4"):
            assert isinstance(await held.outcomes.get(job_id), Finished)
    assert held.calls == [["a1"], ["a3"], ["a4"]]


def test_the_executor_gives_back_a_batch_only_before_it_starts(tiny_config: Config) -> None:
    executor = GpuExecutor(tiny_config)
    ran: list[str] = []
    inside, release = threading.Event(), threading.Event()

    def fake_batch(batch: list[PreparedJob], emit: Any) -> list[Any]:
        ran.extend(ids(p.job for p in batch))
        inside.set()
        assert release.wait(GUARD_S)
        return []

    executor._run_batch = fake_batch  # type: ignore[method-assign]
    try:
        running = executor.run_batch([PreparedJob(t2i("first"))], lambda e: None)
        assert inside.wait(GUARD_S)
        waiting = executor.run_batch([PreparedJob(t2i("second"))], lambda e: None)
        assert executor.queued_batches() == 1
        assert executor.withdraw(waiting)
        assert executor.queued_batches() == 0 and isinstance(waiting.exception(0), Withdrawn)
        assert not executor.withdraw(running)  # started: it runs as handed over
        release.set()
        running.result(GUARD_S)
        executor.run_batch([PreparedJob(t2i("third"))], lambda e: None).result(GUARD_S)
    finally:
        release.set()
        executor.shutdown()
    assert ran == ["first", "third"]  # the withdrawn batch was skipped by the thread


async def test_progress_starts_at_zero_of_the_jobs_steps_after_it_is_announced(
        tiny_config: Config, tmp_path: Path) -> None:
    """The executor's first progress is 0 of the job's steps; the studio never lets a progress
    overtake the job's JobStarted (which waits for its job-log write), so the bar the member
    sees starts at 0/N, not at 0/1."""
    config = dataclasses.replace(tiny_config, base_dir=tmp_path)
    studio = Studio(config)
    await studio.start(warm_up=False)
    events: list[StudioEvent] = []
    studio.add_listener(events.append)
    try:
        await studio.database.jobs.add(job_id="x", kind="imagine", user_id=1, guild_id=None, channel_id=6,
                                       params=t2i("x", steps=7).to_params())
        studio._on_engine_event(Started("x"))
        studio._on_engine_event(Progress("x", 0, 7))
        await until(lambda: len(events) == 2)
    finally:
        await studio.close()
    assert events == [JobStarted("x"), JobProgress("x", 0, 7)]


async def test_b_finishes_second_on_the_tiny_model(tiny_config: Config) -> None:
    """The issue's reproduction, ten times, on the real pipeline: B submits the moment A's first
    job is announced as started."""
    engine = Engine(queue_config(tiny_config, max_batch=1), GpuExecutor(tiny_config))
    finished: list[str] = []
    done: dict[str, asyncio.Event] = {}
    run = [0]

    def listener(event: JobEvent) -> None:
        if isinstance(event, Started) and event.job_id == f"r{run[0]}a1":
            engine.submit(t2i(f"r{run[0]}b1", owner=100 * run[0] + 2, steps=4))
        if isinstance(event, Finished):
            finished.append(event.job_id)
            if len(finished) == 5:
                done[f"r{run[0]}"].set()

    engine.add_listener(listener)
    await engine.start(warm_up=False)
    seconds: list[int] = []
    try:
        for n in range(10):
            run[0] = n
            finished.clear()
            done[f"r{n}"] = asyncio.Event()
            for i in range(1, 5):
                engine.submit(t2i(f"r{n}a{i}", owner=100 * n + 1, steps=4))
            await asyncio.wait_for(done[f"r{n}"].wait(), GUARD_S * 2)
            seconds.append(finished.index(f"r{n}b1") + 1)
    finally:
        await engine.stop()
    assert seconds.count(2) >= 9, seconds
