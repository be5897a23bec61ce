"""The GPU thread never waits for the event loop: pipelining, batching by measurement, the fast path.

Nothing here asserts on how long anything took. Orderings are proven with gates: a step on the GPU
thread waits (with a generous guard) for something the engine must do meanwhile, and the test
fails if the engine only does it afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from config import Config
from inference import engine as engine_module
from inference import executor as executor_module
from inference.batching import REPROBE_EVERY, REPROBE_MAX, BatchPolicy, shape_key
from inference.engine import Engine
from inference.executor import BusyStats, GpuExecutor
from inference.jobs import Cancelled, Finished, ImageToImageJob, JobEvent, TextToImageJob
from inference.prepare import PreparedJob, needs_preparing
from storage import png_writer_child
from studio import JobDone, RequestContext, Studio, StudioEvent
from tests.inference.engine_helpers import (
    GUARD_S,
    Outcomes,
    fake_runner,
    queue_config,
    started_engine,
    t2i,
    wait_until,
)

# --------------------------------------------------------------------------- pipelining


async def test_the_next_batch_is_queued_on_the_gpu_thread_before_the_previous_one_ends(
        tiny_config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = queue_config(tiny_config, max_batch=1)
    engine, outcomes = await started_engine(config)
    source = tmp_path / "src.png"
    Image.new("RGB", (96, 80), (30, 90, 200)).save(source)
    jobs = [ImageToImageJob(job_id=f"v{i}", owner=i, prompt="a fox", init_image=str(source), width=64, height=64,
                            steps=4, strength=0.5, model="tiny", seed=i) for i in range(4)]
    ready: list[bool] = []
    prepared_on: set[int] = set()
    original_run, original_prepare = executor_module.run_diffusion_batch, engine_module.prepare

    def run(model: Any, batch: list[PreparedJob], on_step: Any) -> Any:
        if len(ready) < len(jobs) - 1:  # every batch but the last: is the next one already handed over?
            ready.append(wait_until(lambda: engine.executor.queued_batches() >= 1))
        return original_run(model, batch, on_step)

    def prepare(job: Any) -> PreparedJob:
        prepared_on.add(threading.get_ident())
        return original_prepare(job)

    monkeypatch.setattr(executor_module, "run_diffusion_batch", run)
    monkeypatch.setattr(engine_module, "prepare", prepare)
    try:
        for job in jobs:
            engine.submit(job)
        results = [await outcomes.get(j.job_id) for j in jobs]
        status = engine.status()
    finally:
        await engine.stop()
    assert all(isinstance(r, Finished) for r in results)
    assert ready == [True, True, True]
    assert prepared_on and not prepared_on & {threading.get_ident(), engine.executor.thread_ident}
    assert 0 < status.busy_fraction <= 1


async def test_text_to_image_jobs_skip_the_helper_thread(tiny_config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    """They have no inputs to decode: no trip to a helper thread (and no thread woken) per batch."""
    engine, outcomes = await started_engine(tiny_config)
    prepared: list[str] = []
    original_prepare = engine_module.prepare
    monkeypatch.setattr(engine_module, "prepare", lambda job: prepared.append(job.job_id) or original_prepare(job))
    try:
        engine.submit(TextToImageJob(job_id="t", owner=1, prompt="a fox", width=64, height=64, steps=2,
                                     model="tiny", seed=1))
        assert isinstance(await outcomes.get("t"), Finished)
    finally:
        await engine.stop()
    assert prepared == []
    assert needs_preparing(ImageToImageJob(job_id="v", owner=1, prompt="a fox", init_image="x.png", width=64,
                                           height=64, steps=2, strength=0.5, model="tiny", seed=1))


async def test_a_result_listener_that_blocks_the_loop_does_not_hold_up_the_gpu(
        tiny_config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    config = queue_config(tiny_config, max_batch=1)
    engine, outcomes = await started_engine(config)
    second_started = threading.Event()
    original = executor_module.run_diffusion_batch

    def run(model: Any, batch: list[PreparedJob], on_step: Any) -> Any:
        if batch[0].job.job_id == "first":
            assert wait_until(lambda: engine.executor.queued_batches() >= 1)
        else:
            second_started.set()
        return original(model, batch, on_step)

    started_while_blocked: list[bool] = []

    def stubborn_listener(event: JobEvent) -> None:
        if isinstance(event, Finished) and event.job_id == "first":
            # The event loop is stuck right here: only the GPU thread itself can start the next job.
            started_while_blocked.append(second_started.wait(GUARD_S))

    engine.add_listener(stubborn_listener)
    monkeypatch.setattr(executor_module, "run_diffusion_batch", run)
    try:
        engine.submit(t2i("first"))
        engine.submit(t2i("second", owner=2))
        assert isinstance(await outcomes.get("first"), Finished)
        assert isinstance(await outcomes.get("second"), Finished)
    finally:
        await engine.stop()
    assert started_while_blocked == [True]


@pytest.mark.parametrize("png_process", [True, False], ids=["writer-process", "writer-thread"])
async def test_slow_posting_and_encoding_happen_off_the_gpu_thread(
        tiny_config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, png_process: bool) -> None:
    config = dataclasses.replace(tiny_config, base_dir=tmp_path,
                                 storage=dataclasses.replace(tiny_config.storage, png_process=png_process))
    studio = Studio(config, engine=Engine(config, GpuExecutor(config)))
    encoded_on: set[int] = set()  # threads of this process that encoded a PNG
    real_encode = png_writer_child.encode_png

    def encode(image: Image.Image, text: str | None = None) -> bytes:
        encoded_on.add(threading.get_ident())
        return real_encode(image, text)

    monkeypatch.setattr(png_writer_child, "encode_png", encode)
    upload_done = asyncio.Event()
    posted: dict[str, JobDone] = {}

    async def slow_poster(event: StudioEvent) -> None:
        if isinstance(event, JobDone):
            posted[event.job_id] = event
            if event.job_id == "a":
                await upload_done.wait()  # an upload that takes as long as the test wants

    studio.add_listener(slow_poster)
    await studio.start(warm_up=False)
    try:
        await studio.submit(t2i("a"), RequestContext(user_id=1, guild_id=1, channel_id=1))
        await studio.submit(t2i("b", owner=2), RequestContext(user_id=2, guild_id=1, channel_id=1))
        async with asyncio.timeout(GUARD_S * 2):
            while "b" not in posted:
                await asyncio.sleep(0.01)
        assert "a" in posted and not upload_done.is_set()
        row = await studio.database.jobs.get("b")
        assert row is not None and row.status == "done"
        writer_pid = studio.png_writer.pid
    finally:
        upload_done.set()
        await studio.close()
    if png_process:  # encoded in the writer process: no thread of this one
        assert writer_pid not in (None, os.getpid()) and not encoded_on
    else:
        assert encoded_on and not encoded_on & {threading.get_ident(), studio.engine.executor.thread_ident}


# --------------------------------------------------------------------------- the GPU thread's account


def test_busy_fraction_counts_gaps_between_batches_not_the_quiet_after(tiny_config: Config) -> None:
    executor = GpuExecutor(tiny_config)
    clock = [100.0]
    executor._clock = lambda: clock[0]  # type: ignore[method-assign]
    cpu = [10.0]
    executor._cpu_clock = lambda: cpu[0]  # type: ignore[method-assign]
    inside = threading.Event()
    release = threading.Event()

    def fake_batch(batch: list[PreparedJob], emit: Any) -> list[Any]:
        inside.set()
        assert release.wait(GUARD_S)
        clock[0] += 2.0
        cpu[0] += 1.5  # on the CPU for 1.5 of its 2 s; the rest it waited (for the GIL, a core)
        return []

    executor._run_batch = fake_batch  # type: ignore[method-assign]
    try:
        assert executor.busy_stats() == BusyStats(0.0, 0.0, 0) and executor.busy_stats().fraction == 0.0
        release.set()
        executor.run_batch([], lambda e: None).result(GUARD_S)
        clock[0] += 1.0  # idle between batches: counts against the fraction
        release.clear()
        inside.clear()
        running = executor.run_batch([], lambda e: None)
        assert inside.wait(GUARD_S)
        clock[0] += 0.5
        assert executor.busy_stats() == BusyStats(2.5, 3.5, 1, 1.5, 2.0)  # a running batch counts up to now
        clock[0] -= 0.5
        release.set()
        running.result(GUARD_S)
        stats = executor.busy_stats()
        assert stats == BusyStats(4.0, 5.0, 2, 3.0, 4.0) and stats.fraction == 0.8
        assert stats.on_cpu_fraction == 0.75
        clock[0] += 50.0  # nothing to do: not counted
        assert executor.busy_stats() == stats
        executor.reset_busy_stats()
        assert executor.busy_stats() == BusyStats(0.0, 0.0, 0) and executor.busy_stats().on_cpu_fraction == 0.0
    finally:
        executor.shutdown()


def test_shutdown_fails_batches_that_never_started(tiny_config: Config) -> None:
    executor = GpuExecutor(tiny_config)
    inside, release = threading.Event(), threading.Event()
    executor.submit(lambda: (inside.set(), release.wait(GUARD_S)))
    assert inside.wait(GUARD_S)
    late = executor.run_batch([PreparedJob(t2i("late"))], lambda e: None)
    assert executor.queued_batches() == 1
    closer = threading.Thread(target=executor.shutdown)
    closer.start()
    with pytest.raises(RuntimeError, match="shut down before this batch ran"):
        late.result(GUARD_S)
    release.set()
    closer.join(GUARD_S)
    assert not closer.is_alive() and executor.queued_batches() == 0


# --------------------------------------------------------------------------- batching by measurement


def test_policy_runs_singly_where_batching_is_measured_slower() -> None:
    policy = BatchPolicy(max_batch=4, device="cpu")
    job = t2i("x")
    assert policy.batch_size(job) == 1 and policy.pays(job) is None  # measure alone first
    policy.record(job, 1, 1.0)
    assert policy.batch_size(job) == 4  # then try a batch once
    policy.record(job, 4, 1.2)
    assert policy.pays(job) is False
    assert [policy.batch_size(job) for _ in range(10)] == [1] * 10
    policy.record(job, 4, 0.97)  # 0.7 * 1.2 + 0.3 * 0.97 is still not under 95% of single
    assert policy.batch_size(job) == 1
    assert policy.summary() == [{"device": "cpu", "shape": shape_key(job), "single_s_per_image": 1.0,
                                 "batched_s_per_image": pytest.approx(1.131), "batching": False}]


def test_policy_batches_where_it_pays_and_remeasures_the_losing_choice_now_and_then() -> None:
    policy = BatchPolicy(max_batch=3)
    job, other_size = t2i("x"), t2i("y", width=128)
    policy.record(job, 1, 1.0)
    policy.record(job, 3, 0.5)
    decisions = [policy.batch_size(job) for _ in range(2 * REPROBE_EVERY)]
    assert decisions.count(1) == 2 and set(decisions) == {1, 3}
    assert policy.batch_size(other_size) == 1  # another size is measured on its own
    policy.record(job, 1, 0.0)  # a broken measurement is ignored
    assert policy.single[shape_key(job)] == 1.0
    assert BatchPolicy(max_batch=1).batch_size(job) == 1


def test_each_remeasurement_that_confirms_the_decision_doubles_the_interval_and_a_change_resets_it() -> None:
    policy = BatchPolicy(max_batch=4)
    job = t2i("x")
    policy.record(job, 1, 1.0)
    policy.record(job, 4, 0.5)

    def decisions_until_a_single_run() -> int:
        for n in range(1, 10 * REPROBE_MAX):
            if policy.batch_size(job) == 1:
                return n
        raise AssertionError("the losing choice was never measured again")

    intervals = []
    for _ in range(6):
        intervals.append(decisions_until_a_single_run())
        policy.record(job, 1, 1.0)  # alone is still twice as slow: the decision stands
    assert intervals == [REPROBE_EVERY, 2 * REPROBE_EVERY, 4 * REPROBE_EVERY, 8 * REPROBE_EVERY, REPROBE_MAX,
                         REPROBE_MAX]
    decisions_until_a_single_run()
    for _ in range(3):  # the machine changed: alone is now faster per image than in a batch
        policy.record(job, 1, 0.2)
    assert policy.pays(job) is False
    assert [policy.batch_size(job) for _ in range(REPROBE_EVERY)].count(4) == 1  # back to every REPROBE_EVERY


@pytest.mark.parametrize(("batched_s", "pays"), [(2.0, False), (0.3, True)], ids=["slower", "faster"])
async def test_engine_batches_a_shape_only_while_batches_measure_faster(
        tiny_config: Config, monkeypatch: pytest.MonkeyPatch, batched_s: float, pays: bool) -> None:
    calls: list[int] = []
    monkeypatch.setattr(executor_module, "run_diffusion_batch", fake_runner(calls, 1.0, batched_s))
    engine, outcomes = await started_engine(tiny_config)
    jobs = [t2i(f"j{i}", owner=i) for i in range(16)]
    try:
        for job in jobs:
            engine.submit(job)
        assert all([isinstance(await outcomes.get(j.job_id), Finished) for j in jobs])
    finally:
        await engine.stop()
    assert sum(calls) == 16 and calls[0] == 1 and max(calls) == 4  # measured alone, then tried a batch
    assert engine.policy.pays(jobs[0]) is pays
    if pays:
        assert calls.count(4) >= 3
    else:
        assert calls[-4:] == [1, 1, 1, 1]


# --------------------------------------------------------------------------- queue.batch_wait_ms


async def engine_that_batches(config: Config, monkeypatch: pytest.MonkeyPatch, *, pays: bool,
                              calls: list[int]) -> tuple[Engine, Outcomes, list[float], list[bool]]:
    """An engine whose policy already measured the 64 px shape, with its companion waits recorded."""
    monkeypatch.setattr(executor_module, "run_diffusion_batch", fake_runner(calls, 1.0, 1.0))
    engine, outcomes = await started_engine(config)
    engine.policy.record(t2i("m"), 1, 1.0)
    engine.policy.record(t2i("m"), 2, 0.2 if pays else 2.0)
    timeouts: list[float] = []
    woken: list[bool] = []
    original = engine._wait_for_queue_change

    async def recorded(timeout: float) -> bool:
        timeouts.append(timeout)
        woken.append(await original(timeout))
        return woken[-1]

    monkeypatch.setattr(engine, "_wait_for_queue_change", recorded)
    return engine, outcomes, timeouts, woken


async def test_a_lone_job_waits_for_companions_no_longer_than_batch_wait_ms(
        tiny_config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    config = queue_config(tiny_config, batch_wait_ms=200)
    engine, outcomes, timeouts, woken = await engine_that_batches(config, monkeypatch, pays=True, calls=calls)
    original = engine._wait_for_queue_change

    async def other_size_arrives(timeout: float) -> bool:
        if not timeouts:
            engine.submit(t2i("other", owner=2, width=128))  # a queue change, but no companion
        return await original(timeout)

    monkeypatch.setattr(engine, "_wait_for_queue_change", other_size_arrives)
    try:
        engine.submit(t2i("lone"))
        assert isinstance(await outcomes.get("lone"), Finished)
        assert isinstance(await outcomes.get("other"), Finished)
    finally:
        await engine.stop()
    assert woken == [True, False]  # woken by the other size, then the time was up
    assert 0 < timeouts[1] < timeouts[0] <= 0.2  # one deadline for the whole wait, not one per wake-up
    assert calls == [1, 1]


async def test_a_companion_arriving_within_the_wait_joins_and_the_batch_goes_when_full(
        tiny_config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    config = queue_config(tiny_config, batch_wait_ms=1000, max_batch=2)
    engine, outcomes, timeouts, woken = await engine_that_batches(config, monkeypatch, pays=True, calls=calls)
    original = engine._wait_for_queue_change

    async def companion_arrives(timeout: float) -> bool:
        if not timeouts:
            engine.submit(t2i("companion", owner=2, seed=9))
        return await original(timeout)

    monkeypatch.setattr(engine, "_wait_for_queue_change", companion_arrives)
    try:
        engine.submit(t2i("first"))
        assert isinstance(await outcomes.get("first"), Finished)
        assert isinstance(await outcomes.get("companion"), Finished)
    finally:
        await engine.stop()
    assert calls == [2] and woken == [True]


async def test_shapes_where_batching_does_not_pay_never_wait(
        tiny_config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    config = queue_config(tiny_config, batch_wait_ms=1000)
    engine, outcomes, timeouts, _ = await engine_that_batches(config, monkeypatch, pays=False, calls=calls)
    try:
        engine.submit(t2i("alone"))
        assert isinstance(await outcomes.get("alone"), Finished)
    finally:
        await engine.stop()
    assert timeouts == [] and calls == [1]


# --------------------------------------------------------------------------- filling a batch while the GPU is busy


@dataclasses.dataclass
class BusyGpu:
    engine: Engine
    outcomes: Outcomes
    gate: threading.Event  # opening it lets the batch ahead (a1, a2) finish
    calls: list[int]  # the size of each batch that reached the pipeline


@contextlib.asynccontextmanager
async def engine_with_a_busy_gpu(tiny_config: Config, monkeypatch: pytest.MonkeyPatch, *,
                                 measured_s: float | None) -> AsyncIterator[BusyGpu]:
    """An engine (batches of 2, ``batch_wait_ms`` 1) whose policy batches the 64 px shape, with
    the batch a1 + a2 held on the GPU thread until ``gate`` opens; ``measured_s``: each job's
    measured duration (None: nothing measured yet). Opens the gate and stops the engine after."""
    calls: list[int] = []
    gate, entered = threading.Event(), threading.Event()
    runner = fake_runner(calls, 1.0, 1.0)

    def run(model: Any, batch: list[PreparedJob], on_step: Any) -> Any:
        if not calls:
            entered.set()
            gate.wait(GUARD_S)
        return runner(model, batch, on_step)

    monkeypatch.setattr(executor_module, "run_diffusion_batch", run)
    engine, outcomes = await started_engine(queue_config(tiny_config, batch_wait_ms=1, max_batch=2))
    try:
        engine.policy.record(t2i("m"), 1, 1.0)
        engine.policy.record(t2i("m"), 2, 0.2)
        if measured_s is not None:
            engine.eta.record(engine_module.eta_key(t2i("m")), measured_s)
        engine.submit(t2i("a1"))
        engine.submit(t2i("a2", owner=2))
        assert await asyncio.to_thread(entered.wait, GUARD_S)  # the batch ahead is on the GPU thread
        yield BusyGpu(engine, outcomes, gate, calls)
    finally:
        gate.set()
        await engine.stop()


async def test_a_batch_keeps_taking_companions_while_the_batch_ahead_runs(
        tiny_config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    async with engine_with_a_busy_gpu(tiny_config, monkeypatch, measured_s=30.0) as busy:
        busy.engine.submit(t2i("b1", owner=3))
        await asyncio.sleep(0.05)  # fifty times batch_wait_ms: alone, b1 would have been handed over by now
        assert busy.engine.executor.queued_batches() == 0
        busy.engine.submit(t2i("b2", owner=4))
        assert await asyncio.to_thread(wait_until, lambda: busy.engine.executor.queued_batches() >= 1)
        busy.gate.set()
        for job_id in ("a1", "a2", "b1", "b2"):
            assert isinstance(await busy.outcomes.get(job_id), Finished)
    assert busy.calls == [2, 2]  # b2 arrived long after batch_wait_ms and still joined b1


async def test_a_batch_waiting_for_companions_goes_as_soon_as_the_batch_ahead_ends(
        tiny_config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    async with engine_with_a_busy_gpu(tiny_config, monkeypatch, measured_s=600.0) as busy:
        busy.engine.submit(t2i("b1", owner=3))
        await asyncio.sleep(0.05)
        assert busy.engine.executor.queued_batches() == 0  # held: the batch ahead is expected to take minutes
        busy.gate.set()  # ...but it ends now
        assert isinstance(await asyncio.wait_for(busy.outcomes.get("b1"), GUARD_S), Finished)
    assert busy.calls == [2, 1]


async def test_before_jobs_are_measured_a_batch_waits_only_batch_wait_ms(
        tiny_config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    async with engine_with_a_busy_gpu(tiny_config, monkeypatch, measured_s=None) as busy:
        busy.engine.submit(t2i("b1", owner=3))
        # handed over alone while the GPU is still held: nothing says how long the batch ahead takes
        assert await asyncio.to_thread(wait_until, lambda: busy.engine.executor.queued_batches() >= 1)
        busy.gate.set()
        assert isinstance(await busy.outcomes.get("b1"), Finished)
    assert busy.calls == [2, 1]


async def test_a_job_in_a_batch_still_taking_companions_can_be_cancelled(
        tiny_config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    async with engine_with_a_busy_gpu(tiny_config, monkeypatch, measured_s=30.0) as busy:
        cancelled: asyncio.Future[JobEvent] = asyncio.get_running_loop().create_future()
        busy.engine.add_listener(lambda event: cancelled.set_result(event) if isinstance(event, Cancelled) else None)
        busy.engine.submit(t2i("b1", owner=3))
        await asyncio.sleep(0.05)  # b1 is out of the queue, in a batch that waits for a companion
        assert busy.engine.is_known("b1")
        assert busy.engine.cancel("b1")
        busy.gate.set()
        assert (await asyncio.wait_for(cancelled, GUARD_S)).job_id == "b1"
    assert busy.calls == [2]  # b1's batch never reached the pipeline
