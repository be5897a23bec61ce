"""The engine end to end on the tiny model: fair order, batching, progress, cancellation, failures."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from config import Config
from inference import executor as executor_module
from inference.engine import Engine
from inference.executor import PROGRESS_EVERY_S, GpuExecutor, internal_error_message
from inference.jobs import (
    Cancelled,
    Failed,
    Finished,
    ImageToImageJob,
    InpaintJob,
    JobKind,
    Progress,
    Queued,
    Started,
    TextToImageJob,
)
from tests.fixtures.recorder import Recorder


def t2i(job_id: str, owner: int = 1, seed: int = 7, **kw: object) -> TextToImageJob:
    params = {"prompt": "a photo of a red fox", "width": 64, "height": 64, "steps": 3, "guidance": 0.0,
              "model": "tiny", "seed": seed}
    params.update(kw)
    return TextToImageJob(job_id=job_id, owner=owner, **params)  # type: ignore[arg-type]


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


@pytest.fixture
async def engine(tiny_config: Config):
    eng = Engine(tiny_config, GpuExecutor(tiny_config, progress_interval_s=0))  # every step reported
    rec = Recorder()
    eng.add_listener(rec)
    await eng.start(warm_up=False)
    eng.recorder = rec  # type: ignore[attr-defined]
    yield eng
    await eng.stop()


async def test_same_seed_gives_identical_images(engine: Engine) -> None:
    rec: Recorder = engine.recorder  # type: ignore[attr-defined]
    engine.submit(t2i("a", seed=42))
    first = await rec.outcome("a")
    engine.submit(t2i("b", seed=42))
    second = await rec.outcome("b")
    engine.submit(t2i("c", seed=43))
    third = await rec.outcome("c")
    assert isinstance(first, Finished) and isinstance(second, Finished) and isinstance(third, Finished)
    assert np.array_equal(pixels(first.result.images[0]), pixels(second.result.images[0]))
    assert not np.array_equal(pixels(first.result.images[0]), pixels(third.result.images[0]))
    assert first.result.seeds == (42,)


async def test_batched_images_match_the_same_jobs_run_alone(tiny_config: Config) -> None:
    jobs = [t2i(f"j{i}", owner=i, seed=100 + i) for i in range(4)]
    alone: dict[str, np.ndarray] = {}
    single = Engine(dataclasses.replace(tiny_config, queue=dataclasses.replace(tiny_config.queue, max_batch=1)),
                    GpuExecutor(tiny_config))
    rec = Recorder()
    single.add_listener(rec)
    await single.start(warm_up=False)
    for job in jobs:
        single.submit(job)
    for job in jobs:
        out = await rec.outcome(job.job_id)
        assert isinstance(out, Finished)
        alone[job.job_id] = pixels(out.result.images[0])
    await single.stop()

    batched = Engine(tiny_config, GpuExecutor(tiny_config))
    batched.policy.single[("imagine", "tiny", 64, 64, 3)] = 1.0  # force one batch of 4
    calls: list[int] = []
    original = executor_module.run_diffusion_batch

    def counting(model, batch, on_step):  # type: ignore[no-untyped-def]
        calls.append(len(batch))
        return original(model, batch, on_step)

    executor_module.run_diffusion_batch = counting
    try:
        rec = Recorder()
        batched.add_listener(rec)
        for job in jobs:
            batched.submit(job)
        await batched.start(warm_up=False)
        worst = 0
        for job in jobs:
            out = await rec.outcome(job.job_id)
            assert isinstance(out, Finished)
            worst = max(worst, int(np.abs(pixels(out.result.images[0]) - alone[job.job_id]).max()))
    finally:
        executor_module.run_diffusion_batch = original
        await batched.stop()
    assert calls == [4]
    assert worst <= 1


async def test_a_job_that_raises_leaves_the_executor_serving_the_next(engine: Engine, monkeypatch) -> None:
    rec: Recorder = engine.recorder  # type: ignore[attr-defined]
    original = executor_module.run_diffusion_batch

    def exploding(model, batch, on_step):  # type: ignore[no-untyped-def]
        if batch[0].job.prompt == "explode":
            raise RuntimeError("boom")
        return original(model, batch, on_step)

    monkeypatch.setattr(executor_module, "run_diffusion_batch", exploding)
    engine.submit(t2i("bad", prompt="explode"))
    engine.submit(t2i("good", owner=2))
    bad = await rec.outcome("bad")
    good = await rec.outcome("good")
    # The member reads our sentence (the poster adds the job id), never the exception or its traceback.
    assert isinstance(bad, Failed) and bad.message == internal_error_message() and "boom" not in bad.message
    assert isinstance(good, Finished)


async def test_progress_events_arrive_in_order_on_the_loop_thread(engine: Engine) -> None:
    rec: Recorder = engine.recorder  # type: ignore[attr-defined]
    engine.submit(t2i("p", steps=5))
    assert isinstance(await rec.outcome("p"), Finished)
    steps = [(e.step, e.total_steps) for e in rec.of("p", Progress)]  # type: ignore[attr-defined]
    assert steps == [(0, 5), (1, 5), (2, 5), (3, 5), (4, 5), (5, 5)]  # the bar starts empty at the job's length
    assert rec.threads == {threading.get_ident()}
    kinds = [type(e) for e in rec.events if e.job_id == "p"]
    assert kinds.index(Started) < kinds.index(Progress) < kinds.index(Finished)
    assert engine.executor.thread_ident != threading.get_ident()


async def test_progress_is_reported_at_most_once_per_interval(tiny_config: Config) -> None:
    """The default reports a step at most every PROGRESS_EVERY_S: a fast job sends far fewer
    progress events than it has steps, and its result still arrives."""
    eng = Engine(tiny_config, GpuExecutor(tiny_config, progress_interval_s=3600))
    rec = Recorder()
    eng.add_listener(rec)
    await eng.start(warm_up=False)
    try:
        eng.submit(t2i("quiet", steps=5))
        assert isinstance(await rec.outcome("quiet"), Finished)
        assert rec.of("quiet", Started)
        assert [(e.step, e.total_steps) for e in rec.of("quiet", Progress)] == [(0, 5)]  # type: ignore[attr-defined]
    finally:
        await eng.stop()
    assert GpuExecutor.__init__.__kwdefaults__["progress_interval_s"] == PROGRESS_EVERY_S > 0


async def test_cancel_a_queued_job(engine: Engine) -> None:
    rec: Recorder = engine.recorder  # type: ignore[attr-defined]
    engine.submit(t2i("first", steps=10))
    engine.submit(t2i("second", steps=10))
    engine.submit(t2i("third", owner=2))
    await asyncio.sleep(0)
    told: list[str] = []
    engine.executor.cancel_queued = told.append  # type: ignore[method-assign]
    assert engine.cancel("third")
    assert told == ["third"]  # a cluster tells a worker that may hold it from before a restart
    assert isinstance(await rec.outcome("third"), Cancelled)
    assert not rec.of("third", Started)
    assert isinstance(await rec.outcome("first"), Finished)
    assert not engine.cancel("no-such-job")


async def test_cancel_a_running_job_between_steps(engine: Engine) -> None:
    rec: Recorder = engine.recorder  # type: ignore[attr-defined]
    engine.submit(t2i("long", steps=20))
    while not rec.of("long", Progress):
        await asyncio.sleep(0.01)
    assert engine.cancel("long")
    out = await rec.outcome("long")
    assert isinstance(out, Cancelled)
    assert len(rec.of("long", Progress)) < 20
    engine.submit(t2i("after", owner=2))
    assert isinstance(await rec.outcome("after"), Finished)


async def test_queue_positions_are_reported(engine: Engine) -> None:
    rec: Recorder = engine.recorder  # type: ignore[attr-defined]
    for i in range(3):
        engine.submit(t2i(f"q{i}", owner=10 + i, steps=2))
    for i in range(3):
        await rec.outcome(f"q{i}")
    queued = [e for e in rec.events if isinstance(e, Queued)]
    assert "q2" in {e.job_id for e in queued}  # q0 and q1 are taken at once (two batches in flight)
    assert all(1 <= e.position <= e.total <= 3 for e in queued)
    assert not engine._eta_keys  # finished jobs take their cached ETA keys with them


async def test_image_to_image_and_inpainting_run_from_files(engine: Engine, tmp_path: Path) -> None:
    rec: Recorder = engine.recorder  # type: ignore[attr-defined]
    src = tmp_path / "src.png"
    Image.new("RGB", (96, 80), (200, 40, 40)).save(src)
    mask = tmp_path / "mask.png"
    m = Image.new("L", (96, 80), 0)
    m.paste(255, (0, 0, 48, 80))
    m.save(mask)
    engine.submit(ImageToImageJob(job_id="v", owner=1, prompt="a fox", init_image=str(src), width=64, height=64,
                                  steps=4, strength=0.5, model="tiny", seed=1))
    engine.submit(InpaintJob(job_id="i", owner=2, prompt="a fox", init_image=str(src), mask_image=str(mask),
                             width=64, height=64, steps=4, model="tiny", seed=1))
    engine.submit(ImageToImageJob(job_id="gone", owner=3, init_image=str(tmp_path / "missing.png"), width=64,
                                  height=64, steps=4, model="tiny"))
    v, i, gone = [await rec.outcome(j) for j in ("v", "i", "gone")]
    assert isinstance(v, Finished) and v.result.images[0].size == (64, 64)
    assert isinstance(i, Finished) and i.result.images[0].size == (64, 64)
    assert isinstance(gone, Failed) and "could not be read" in gone.message


async def test_variation_and_inpainting_share_the_base_weights(engine: Engine) -> None:
    model = engine.executor.loaded("tiny")
    assert model is not None
    base = model.pipes[JobKind.IMAGINE]
    for kind in (JobKind.VARY, JobKind.PAINT):
        pipe = model.pipes[kind]
        assert pipe is not base
        assert pipe.unet is base.unet and pipe.vae is base.vae and pipe.text_encoder is base.text_encoder


async def test_grid_jobs_use_one_seed_per_image(engine: Engine) -> None:
    rec: Recorder = engine.recorder  # type: ignore[attr-defined]
    engine.submit(t2i("grid", seed=5, count=3))
    engine.submit(t2i("cell", owner=2, seed=6))
    grid, cell = await rec.outcome("grid"), await rec.outcome("cell")
    assert isinstance(grid, Finished) and isinstance(cell, Finished)
    assert grid.result.seeds == (5, 6, 7) and len(grid.result.images) == 3
    assert int(np.abs(pixels(grid.result.images[1]) - pixels(cell.result.images[0])).max()) <= 1


def test_a_cpu_host_leaves_a_core_to_the_event_loop(tiny_config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    from inference.devices import cpu_threads

    monkeypatch.setattr("os.cpu_count", lambda: 4)
    assert cpu_threads(tiny_config) == 3  # device = "cpu", threads = 0
    pinned = dataclasses.replace(tiny_config, device=dataclasses.replace(tiny_config.device, threads=2))
    assert cpu_threads(pinned) == 2
    monkeypatch.setattr("os.cpu_count", lambda: 1)
    assert cpu_threads(tiny_config) == 1


async def test_positions_of_a_backlog_are_published_in_coalesced_rounds(engine: Engine) -> None:
    rec: Recorder = engine.recorder  # type: ignore[attr-defined]
    release = threading.Event()
    engine.executor.submit(release.wait, 30)  # hold the GPU thread: everything stays queued
    for i in range(12):
        engine.submit(t2i(f"b{i}", owner=20 + i % 3, steps=2))
    await asyncio.sleep(0.6)
    queued = [e for e in rec.events if isinstance(e, Queued)]
    # one round of positions for the burst of 12 submissions, not one per submission
    assert len(queued) <= 2 * 12 and {e.job_id for e in queued} >= {f"b{i}" for i in range(2, 12)}
    release.set()
    for i in range(12):
        await rec.outcome(f"b{i}")


async def test_position_eta_adds_up_the_jobs_ahead_in_fair_order_and_forgets_jobs_that_left(
        tiny_config: Config) -> None:
    from inference.engine import eta_key
    from inference.eta import EtaEstimator

    eta = EtaEstimator()
    small, large = t2i("k1", steps=2), t2i("k2", steps=9)
    eta.record(eta_key(small), 1.0)
    eta.record(eta_key(large), 5.0)  # the overall average moves too: unknown keys are not asked here
    eng = Engine(tiny_config, GpuExecutor(tiny_config), eta=eta)  # not started: every job waits
    try:
        eng.submit(t2i("a1", owner=1, steps=2))
        eng.submit(t2i("a2", owner=1, steps=9))
        eng.submit(t2i("b1", owner=2, steps=9))
        # fair order: a1, b1, a2
        assert eng.position("a1") == (1, 3, 0.0)
        assert eng.position("b1") == (2, 3, 1.0)
        assert eng.position("a2") == (3, 3, 6.0)
        assert eng.position("nobody") is None
        assert eng.cancel("b1")
        assert eng.position("a2") == (2, 2, 1.0)
        assert "b1" not in eng._eta_keys  # a cancelled job's cached key goes with it
    finally:
        eng.executor.shutdown()


def test_out_of_memory_frees_the_failed_batch_before_retrying_one_by_one(
        tiny_config: Config, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """The retry runs after the except block and a garbage collection: the failed call's frames
    (and the tensors they hold) are gone by then, not kept alive by the exception's traceback."""
    import weakref

    from inference.prepare import PreparedJob

    class Activations:  # stands in for the tensors the failed call had allocated
        cycle: object = None

    failed_call: list[weakref.ref[Activations]] = []
    alive_at_retry: list[bool] = []
    original = executor_module.run_diffusion_batch

    def run(model, batch, on_step):  # type: ignore[no-untyped-def]
        if len(batch) > 1:
            activations = Activations()
            activations.cycle = activations  # freed only by the cycle collector, which the retry runs first
            failed_call.append(weakref.ref(activations))
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        alive_at_retry.append(failed_call[0]() is not None)
        return original(model, batch, on_step)

    monkeypatch.setattr(executor_module, "run_diffusion_batch", run)
    executor = GpuExecutor(tiny_config)
    try:
        outcomes = executor.run_batch([PreparedJob(t2i("m1")), PreparedJob(t2i("m2", owner=2, seed=8))],
                                      lambda event: None).result(timeout=120)
    finally:
        executor.shutdown()
    assert [type(o) for o in outcomes] == [Finished, Finished]
    assert alive_at_retry == [False, False]
    assert "retrying one by one" in caplog.text
