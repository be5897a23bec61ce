"""Model affinity through the whole engine, with two tiny models of which only one stays loaded:
a mixed backlog from several members runs with fewer model switches, in the order the queue
showed, each job passed over at most ``queue.affinity_skips`` times, with the same pixels."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from config import Config
from inference.engine import Engine
from inference.executor import GpuExecutor
from inference.jobs import Finished, JobEvent, Started
from tests.inference.engine_helpers import GUARD_S, Outcomes, t2i
from tests.inference.test_affinity import BACKLOG, FAIR


def two_models(config: Config, *, resident: int = 1, skips: int = 2) -> Config:
    twin = dataclasses.replace(config.model, name="twin")
    return dataclasses.replace(config, models=(twin,),
                               device=dataclasses.replace(config.device, resident_models=resident),
                               queue=dataclasses.replace(config.queue, max_batch=1, affinity_skips=skips))


async def run_backlog(config: Config) -> tuple[list[str], list[str], dict[str, np.ndarray], int]:
    """Submit BACKLOG at once ("A" = the default model, by either of its names; "B" = the twin):
    (the order the queue showed, the order jobs started, each job's image, model switches)."""
    executor = GpuExecutor(config)
    engine = Engine(config, executor)
    outcomes = Outcomes()
    started: list[str] = []

    def on_event(event: JobEvent) -> None:
        if isinstance(event, Started):
            started.append(event.job_id)

    engine.add_listener(outcomes)
    engine.add_listener(on_event)
    await engine.start(warm_up=False)
    try:
        loaded = len(executor.model_switches())
        for seed, (job_id, owner, model) in enumerate(BACKLOG):
            name = "twin" if model == "B" else ("" if seed % 2 else "tiny")
            engine.submit(t2i(job_id, owner, model=name, steps=2, seed=seed))
        shown = [job.job_id for job in engine.waiting()]
        images = {}
        for job_id in FAIR:
            outcome = await outcomes.get(job_id)
            assert isinstance(outcome, Finished)
            images[job_id] = np.asarray(outcome.result.images[0])
        return shown, started, images, len(executor.model_switches()) - loaded
    finally:
        await engine.stop()


async def test_a_mixed_backlog_runs_with_fewer_model_switches_in_the_order_shown(tiny_config: Config) -> None:
    shown, started, images, switches = await run_backlog(two_models(tiny_config, skips=2))
    fair_shown, fair_started, fair_images, fair_switches = await run_backlog(two_models(tiny_config, skips=0))
    assert fair_shown == fair_started == FAIR and fair_switches == 6
    # The twin's first job is passed over twice for jobs of the loaded model, then goes; the
    # twin's jobs waiting then pass over 2A1 twice, and so on (tests/inference/test_affinity.py).
    expected = ["2A0", "3A0", "1B0", "3B1", "1B1", "2A1", "3A2", "2A2", "1B2"]
    assert shown == started == expected
    assert switches == 3
    for job_id in FAIR:
        assert np.array_equal(images[job_id], fair_images[job_id]), job_id


def loaded_executor(config: Config) -> GpuExecutor:
    executor = GpuExecutor(config)
    executor.submit(executor.model, "").result(GUARD_S)
    return executor


@pytest.mark.parametrize(("resident", "models", "preferred"), [
    (1, 2, {"tiny", ""}),  # one model loaded at a time on the CPU: a switch loads from disk
    (0, 2, set()),  # every model stays loaded on a CPU host: a switch costs nothing
    (1, 1, set()),  # nothing to switch to
])
def test_the_executor_prefers_its_model_only_when_a_switch_costs_something(
        tiny_config: Config, resident: int, models: int, preferred: set[str]) -> None:
    config = two_models(tiny_config, resident=resident) if models == 2 else dataclasses.replace(
        tiny_config, device=dataclasses.replace(tiny_config.device, resident_models=resident))
    executor = loaded_executor(config)
    try:
        assert executor.preferred_models() == preferred
    finally:
        executor.shutdown()


@pytest.mark.parametrize(("offload", "preferred"), [(False, {"tiny", ""}), (True, set())])
def test_on_a_gpu_the_model_in_use_is_preferred_unless_parked_models_stay_put_under_cpu_offload(
        tiny_config: Config, monkeypatch: pytest.MonkeyPatch, offload: bool, preferred: set[str]) -> None:
    from tests.inference.test_residency import Recorded, fake_model

    Recorded(monkeypatch)  # no GPU here: the weight copies are recorded, not made
    config = two_models(tiny_config, resident=2)
    config = dataclasses.replace(config, device=dataclasses.replace(config.device, cpu_offload=offload))
    executor = GpuExecutor(config)
    try:
        assert executor.preferred_models() == set()  # nothing loaded yet
        executor._models.use("tiny", lambda: fake_model("tiny"))  # on "cuda"; both models fit (resident 2)
        assert executor.preferred_models() == preferred
    finally:
        executor.shutdown()
