"""The GPU thread's own cores: planning, moving threads and putting them back."""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest

from config import Config
from inference import placement as placement_module
from inference.executor import GpuExecutor
from inference.placement import CorePlan, ThreadPlacement, plan_cores, thread_placement

linux_affinity = pytest.mark.skipif(
    not placement_module.supported() or len(os.sched_getaffinity(0)) < 2,
    reason="needs Linux thread affinity and at least two cores")


def with_device(config: Config, **changes: object) -> Config:
    return dataclasses.replace(config, device=dataclasses.replace(config.device, **changes))


# ----------------------------------------------------------------------------- planning


def test_the_gpu_thread_gets_the_highest_cores_and_the_rest_get_the_others() -> None:
    assert plan_cores({0, 1}, 1) == CorePlan(gpu=frozenset({1}), others=frozenset({0}))
    assert plan_cores([2, 3, 5, 7], 2) == CorePlan(gpu=frozenset({5, 7}), others=frozenset({2, 3}))


@pytest.mark.parametrize(("allowed", "needed"), [({0}, 1), ({0, 1}, 2), ({0, 1, 2}, 5), ({0, 1}, 0)])
def test_no_plan_without_a_core_to_spare(allowed: set[int], needed: int) -> None:
    assert plan_cores(allowed, needed) is None


def test_the_config_decides_how_many_cores_the_gpu_thread_needs(tiny_config: Config,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(placement_module, "supported", lambda: True)
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    one = thread_placement(with_device(tiny_config, threads=1))
    assert one is not None and one.plan == CorePlan(gpu=frozenset({3}), others=frozenset({0, 1, 2}))
    two = thread_placement(with_device(tiny_config, threads=2))
    assert two is not None and two.plan.gpu == frozenset({2, 3})
    # threads = 0 on a CPU host: all cores but one for torch, so the rest of the bot keeps that one
    default = thread_placement(tiny_config)
    assert default is not None and default.plan.others == frozenset({0})
    assert thread_placement(with_device(tiny_config, threads=4)) is None  # nothing left over
    assert thread_placement(with_device(tiny_config, threads=1, pin_threads=False)) is None
    monkeypatch.setattr(placement_module, "supported", lambda: False)
    assert thread_placement(with_device(tiny_config, threads=1)) is None  # not Linux


def test_on_a_gpu_the_thread_needs_one_core_unless_torch_has_more_threads(
        tiny_config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(placement_module, "supported", lambda: True)
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    on_gpu = with_device(tiny_config, device="cuda")
    on_gpu = dataclasses.replace(on_gpu, anime=dataclasses.replace(on_gpu.anime, device="cuda"))
    one = thread_placement(on_gpu)
    assert one is not None and one.plan.gpu == frozenset({3})
    three = thread_placement(with_device(on_gpu, threads=3))
    assert three is not None and three.plan == CorePlan(gpu=frozenset({1, 2, 3}), others=frozenset({0}))
    # the anime filter on the CPU: its torch threads need cores too
    cpu_anime = dataclasses.replace(on_gpu, anime=dataclasses.replace(on_gpu.anime, device="cpu"))
    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)
    assert thread_placement(cpu_anime) is None


def test_an_unavailable_device_places_nothing(tiny_config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(placement_module, "supported", lambda: True)
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert thread_placement(with_device(tiny_config, device="cuda", threads=1)) is None


def test_config_reads_pin_threads(tmp_path: Path) -> None:
    from config import ConfigError, load_config

    toml = tmp_path / "easel.toml"
    toml.write_text('[model]\nsource = "org/model"\n[device]\npin_threads = false\n', encoding="utf-8")
    assert load_config(toml, environ={}).device.pin_threads is False
    toml.write_text('[model]\nsource = "org/model"\n', encoding="utf-8")
    assert load_config(toml, environ={}).device.pin_threads is True  # the default
    toml.write_text('[model]\nsource = "org/model"\n[device]\npin_threads = "sometimes"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="device.pin_threads: expected true or false"):
        load_config(toml, environ={})


# ----------------------------------------------------------------------------- moving threads (fakes)


class FakeCores:
    """sched_{get,set}affinity over a dict of native thread ids; ids in ``gone`` have ended."""

    def __init__(self, threads: Iterable[int], cores: set[int]) -> None:
        self.cores = {native: set(cores) for native in threads}
        self.gone: set[int] = set()

    def get(self, native: int) -> set[int]:
        if native in self.gone or native not in self.cores:
            raise ProcessLookupError(native)
        return set(self.cores[native])

    def set(self, native: int, cores: Iterable[int]) -> None:
        if native in self.gone or native not in self.cores:
            raise ProcessLookupError(native)
        self.cores[native] = set(cores)


@pytest.fixture()
def fake() -> Iterator[FakeCores]:
    natives = [t.native_id for t in threading.enumerate() if t.native_id is not None]
    yield FakeCores(natives, {0, 1, 2, 3})
    assert placement_module._state.movers == 0 and not placement_module._state.saved  # every test restored


def placed(fake: FakeCores) -> ThreadPlacement:
    plan = CorePlan(gpu=frozenset({3}), others=frozenset({0, 1, 2}))
    return ThreadPlacement(plan, get=fake.get, set_=fake.set)


_helpers_done: list[threading.Event] = []


def live_thread(fake: FakeCores, then: Callable[[], None] | None = None) -> int:
    """A thread known to ``fake`` (all four cores) that stays alive for the test, after running
    ``then`` on it; returns its native id."""
    ready, done = threading.Event(), threading.Event()
    native: list[int] = []

    def body() -> None:
        native.append(threading.get_native_id())
        fake.cores[native[0]] = {0, 1, 2, 3}
        if then is not None:
            then()
        ready.set()
        done.wait(10)

    threading.Thread(target=body, daemon=True).start()
    assert ready.wait(10)
    _helpers_done.append(done)
    return native[0]


@pytest.fixture(autouse=True)
def _end_helper_threads() -> Iterator[None]:
    yield
    while _helpers_done:
        _helpers_done.pop().set()


def test_the_others_move_and_the_gpu_thread_stays_on_its_cores(fake: FakeCores) -> None:
    placement = placed(fake)
    gpu = live_thread(fake, placement.pin_gpu_thread)
    other = live_thread(fake)
    try:
        placement.move_others()
        assert fake.cores[threading.get_native_id()] == {0, 1, 2}  # the event loop's thread
        assert fake.cores[other] == {0, 1, 2}
        assert fake.cores[gpu] == {3}
    finally:
        placement.restore()
    assert fake.cores[threading.get_native_id()] == {0, 1, 2, 3}
    assert fake.cores[other] == {0, 1, 2, 3}


def test_the_last_placement_to_close_restores_whatever_the_order(fake: FakeCores) -> None:
    first, second = placed(fake), placed(fake)
    first.move_others()
    second.move_others()
    first.restore()  # the second bot is still up: its threads stay moved
    assert fake.cores[threading.get_native_id()] == {0, 1, 2}
    second.restore()
    assert fake.cores[threading.get_native_id()] == {0, 1, 2, 3}
    second.restore()  # twice is harmless


def test_threads_that_end_are_skipped(fake: FakeCores) -> None:
    placement = placed(fake)
    other = live_thread(fake)
    placement.move_others()
    fake.gone.add(other)  # ended before the bot closed
    placement.restore()
    assert fake.cores[threading.get_native_id()] == {0, 1, 2, 3}


def test_a_thread_that_cannot_be_moved_is_left_alone(fake: FakeCores) -> None:
    placement = placed(fake)
    other = live_thread(fake)
    fake.gone.add(other)  # e.g. a container forbids it, or it just ended
    try:
        placement.move_others()
        assert fake.cores[threading.get_native_id()] == {0, 1, 2}
    finally:
        placement.restore()
    assert other not in placement_module._state.saved


# ----------------------------------------------------------------------------- for real (Linux)


@linux_affinity
def test_the_executor_pins_its_thread_and_moves_the_rest_until_it_shuts_down(tiny_config: Config) -> None:
    config = with_device(tiny_config, threads=1)
    before = os.sched_getaffinity(0)
    executor = GpuExecutor(config)
    plan = executor.placement.plan  # type: ignore[union-attr]
    try:
        assert executor.submit(os.sched_getaffinity, 0).result(timeout=30) == plan.gpu
        executor.place_threads()
        assert os.sched_getaffinity(0) == plan.others
        inherited: list[set[int]] = []
        later = threading.Thread(target=lambda: inherited.append(os.sched_getaffinity(0)))
        later.start()
        later.join()
        assert inherited == [plan.others]  # started after the move: inherits it
        assert executor.submit(os.sched_getaffinity, 0).result(timeout=30) == plan.gpu
    finally:
        executor.shutdown()
    assert os.sched_getaffinity(0) == before


@linux_affinity
def test_pin_threads_off_moves_nothing(tiny_config: Config) -> None:
    before = os.sched_getaffinity(0)
    executor = GpuExecutor(with_device(tiny_config, threads=1, pin_threads=False))
    try:
        assert executor.placement is None
        executor.place_threads()
        assert os.sched_getaffinity(0) == before
        assert executor.submit(os.sched_getaffinity, 0).result(timeout=30) == before
    finally:
        executor.shutdown()


@linux_affinity
async def test_the_studio_starts_the_job_log_and_the_png_writer_off_the_gpu_cores(tiny_config: Config) -> None:
    from studio import Studio

    before = os.sched_getaffinity(0)
    studio = Studio(with_device(tiny_config, threads=1))
    await studio.start(warm_up=False)
    try:
        plan = studio.engine.executor.placement.plan  # type: ignore[attr-defined]
        assert os.sched_getaffinity(0) == plan.others
        assert studio.png_writer.pid is not None and os.sched_getaffinity(studio.png_writer.pid) == plan.others
        worker = next(t for t in threading.enumerate() if "_connection_worker_thread" in t.name)
        assert os.sched_getaffinity(worker.native_id) == plan.others  # type: ignore[arg-type]
    finally:
        await studio.close()
    assert os.sched_getaffinity(0) == before
