"""Start-up and the GPU fast path: warm-up, SDPA, CPU threads, executor hooks, a broken executor."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from typing import Any

import pytest

from config import Config
from inference import engine as engine_module
from inference import executor as executor_module
from inference import warmup as warmup_module
from inference.batching import shape_key
from inference.engine import Engine, eta_key
from inference.executor import GpuExecutor, internal_error_message
from inference.generate import ensure_sdpa, warm_up_sizes
from inference.jobs import Failed, Finished
from inference.loader import load_model
from inference.prepare import PreparedJob
from inference.presets import PRESETS
from tests.inference.engine_helpers import (
    GUARD_S,
    Outcomes,
    queue_config,
    started_engine,
    t2i,
    wait_until,
)

# --------------------------------------------------------------------------- start-up and the fast path


async def test_warm_up_measures_batching_for_the_default_shape(tiny_config: Config) -> None:
    engine = Engine(tiny_config, GpuExecutor(tiny_config))
    await engine.start(warm_up=True)
    await engine.stop()
    shape = shape_key(t2i("x", steps=4))  # tiny_config: 64 px, 4 steps by default
    assert engine.policy.device == "cpu"
    assert shape in engine.policy.single and shape in engine.policy.batched
    # the estimate members' queue positions use (and batches filling while the GPU is busy) is measured too
    assert engine.eta.measured(eta_key(t2i("x", steps=4))) == pytest.approx(engine.policy.batched[shape])


async def test_warm_up_leaves_batching_to_real_jobs_when_measuring_would_be_slow(
        tiny_config: Config, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(warmup_module, "CALIBRATION_BUDGET_S", 0.0)
    engine = Engine(tiny_config, GpuExecutor(tiny_config))
    with caplog.at_level("INFO", logger="inference.warmup"):
        await engine.start(warm_up=True)
    await engine.stop()
    assert engine.policy.single == {} and engine.policy.batched == {}
    assert "measured on the first jobs" in caplog.text


def test_warm_up_sizes_cover_every_aspect_only_when_compiled() -> None:
    preset = PRESETS["sd15"]
    assert warm_up_sizes(preset, compiled=False) == [(512, 512)]
    compiled = warm_up_sizes(preset, compiled=True)
    assert compiled[0] == (512, 512) and len(compiled) == len(set(compiled)) == 5
    assert all(w % 8 == 0 and h % 8 == 0 for w, h in compiled)


def test_attention_runs_on_sdpa_unless_slicing_was_asked_for(tiny_config: Config) -> None:
    from diffusers.models.attention_processor import AttnProcessor

    pipe = load_model(tiny_config.model, tiny_config.device, tiny_config.base_dir).pipes["imagine"]  # type: ignore[index]
    pipe.unet.set_attn_processor(AttnProcessor())  # the pre-2.0 processor
    counts = ensure_sdpa(pipe)
    assert set(counts) == {"AttnProcessor2_0"}
    assert {type(p).__name__ for p in pipe.unet.attn_processors.values()} == {"AttnProcessor2_0"}
    pipe.enable_attention_slicing()
    assert "SlicedAttnProcessor" in ensure_sdpa(pipe)


def test_configured_cpu_threads_are_applied(tiny_config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    applied: list[int] = []
    monkeypatch.setattr(executor_module.torch, "set_num_threads", applied.append)
    monkeypatch.setattr("os.cpu_count", lambda: 1)
    GpuExecutor(tiny_config).shutdown()  # threads = 0 on a one-core CPU host: one thread
    config = dataclasses.replace(tiny_config, device=dataclasses.replace(tiny_config.device, threads=3))
    GpuExecutor(config).shutdown()
    assert applied == [1, 3]


async def test_an_executor_can_ask_for_more_batches_in_flight_and_to_skip_the_warm_up(
        tiny_config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    executor = GpuExecutor(queue_config(tiny_config, max_batch=1))
    executor.in_flight = 3  # type: ignore[attr-defined]  # what a remote executor with two request slots says
    executor.warms_up = False  # type: ignore[attr-defined]
    engine = Engine(queue_config(tiny_config, max_batch=1), executor)
    outcomes = Outcomes()
    engine.add_listener(outcomes)
    monkeypatch.setattr(engine_module, "warm_up_model", lambda *_: pytest.fail("warmed up an executor that asked not to"))
    release = threading.Event()
    original = executor_module.run_diffusion_batch

    def run(model: Any, batch: list[PreparedJob], on_step: Any) -> Any:
        assert release.wait(GUARD_S)
        return original(model, batch, on_step)

    monkeypatch.setattr(executor_module, "run_diffusion_batch", run)
    await engine.start(warm_up=True)
    try:
        for i in range(4):
            engine.submit(t2i(f"j{i}", owner=i))
        reached = await asyncio.to_thread(wait_until, lambda: executor.queued_batches() == 2)
        release.set()
        assert all([isinstance(await outcomes.get(f"j{i}"), Finished) for i in range(4)])
    finally:
        release.set()
        await engine.stop()
    assert reached


async def test_a_batch_that_breaks_the_executor_itself_fails_its_jobs_and_the_next_one_runs(
        tiny_config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    engine, outcomes = await started_engine(queue_config(tiny_config, max_batch=1))
    original = engine.executor._run_batch

    def breaking(batch: list[PreparedJob], emit: Any) -> list[Any]:
        if batch[0].job.job_id == "broken":
            raise RuntimeError("bookkeeping bug")
        return original(batch, emit)

    monkeypatch.setattr(engine.executor, "_run_batch", breaking)
    try:
        engine.submit(t2i("broken"))
        engine.submit(t2i("next", owner=2))
        broken, after = await outcomes.get("broken"), await outcomes.get("next")
    finally:
        await engine.stop()
    assert isinstance(broken, Failed) and broken.message == internal_error_message()
    assert "bookkeeping" not in broken.message
    assert isinstance(after, Finished)
    with pytest.raises(RuntimeError):
        engine.executor.run_batch([PreparedJob(t2i("too-late"))], lambda e: None)
    assert engine.executor.queued_batches() == 0
