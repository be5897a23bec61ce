"""Several models on one device: parked in RAM, switched back without a disk load (device.resident_models)."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
import torch

from config import Config, ModelConfig
from inference import residency as residency_module
from inference.executor import GpuExecutor
from inference.jobs import Finished, TextToImageJob
from inference.loader import LoadedModel
from inference.prepare import PreparedJob
from inference.residency import Residency

GUARD_S = 120


def fake_model(name: str, device: str = "cuda") -> LoadedModel:
    return LoadedModel(name=name, source=name, family="sd15", preset=None, device=torch.device(device),  # type: ignore[arg-type]
                       dtype=torch.float16, pipes={})


class Recorded:
    """Stands in for the weight copies of residency.move (there is no GPU here): records each move."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.moves: list[tuple[str, str]] = []
        monkeypatch.setattr(residency_module, "move",
                            lambda model, device: self.moves.append((model.name, torch.device(device).type)))
        monkeypatch.setattr(residency_module, "free_memory", lambda device: None)


def test_switching_back_to_a_parked_model_copies_it_from_ram_instead_of_loading_it(monkeypatch: pytest.MonkeyPatch) -> None:
    recorded = Recorded(monkeypatch)
    loads: list[str] = []
    held = Residency(2, accelerator=True, offload=False)

    def use(name: str) -> LoadedModel:
        return held.use(name, lambda: loads.append(name) or fake_model(name))

    use("a")
    use("b")
    assert recorded.moves == [("a", "cpu")]  # a parked in RAM to make room on the GPU for b
    assert held.is_parked("a") and not held.is_parked("b")
    use("a")
    assert loads == ["a", "b"]  # a came back from RAM, not from disk
    assert recorded.moves[1:] == [("b", "cpu"), ("a", "cuda")]
    assert [m.name for m in held] == ["a", "b"]  # the active one first
    assert [how for _, how, _ in held.switches] == ["disk", "disk", "ram"]


def test_a_third_model_drops_the_least_recently_used_one(monkeypatch: pytest.MonkeyPatch) -> None:
    Recorded(monkeypatch)
    held = Residency(2, accelerator=True, offload=False)
    for name in ("a", "b", "a", "c"):
        held.use(name, lambda name=name: fake_model(name))
    assert [m.name for m in held] == ["c", "a"]  # b was used longest ago
    assert held.get("b") is None


def test_on_an_accelerator_the_default_keeps_one_model(monkeypatch: pytest.MonkeyPatch) -> None:
    recorded = Recorded(monkeypatch)
    held = Residency(0, accelerator=True, offload=False)
    held.use("a", lambda: fake_model("a"))
    held.use("b", lambda: fake_model("b"))
    assert [m.name for m in held] == ["b"]
    assert recorded.moves == []  # dropped, not parked


def test_on_a_cpu_host_and_under_cpu_offload_parking_moves_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    recorded = Recorded(monkeypatch)
    cpu = Residency(0, accelerator=False, offload=False)
    offloaded = Residency(3, accelerator=True, offload=True)
    for held, device in ((cpu, "cpu"), (offloaded, "cuda")):
        for name in ("a", "b", "c", "a"):
            held.use(name, lambda name=name, device=device: fake_model(name, device))
        assert sorted(m.name for m in held) == ["a", "b", "c"]
    assert recorded.moves == []


def test_a_negative_limit_is_refused() -> None:
    with pytest.raises(ValueError):
        Residency(-1, accelerator=True, offload=False)


def test_a_negative_resident_models_setting_is_a_clear_config_error(tmp_path: Any) -> None:
    from config import ConfigError, load_config

    toml = tmp_path / "easel.toml"
    toml.write_text('[model]\nsource = "x/y"\n[device]\nresident_models = -1\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="resident_models"):
        load_config(toml, environ={})


def two_models(config: Config, resident: int) -> Config:
    twin = dataclasses.replace(config.model, name="twin")
    return dataclasses.replace(config, models=(twin,),
                               device=dataclasses.replace(config.device, resident_models=resident))


def job(job_id: str, model: str) -> TextToImageJob:
    return TextToImageJob(job_id=job_id, owner=1, prompt="a red fox", width=64, height=64, steps=2, seed=5, model=model)


@pytest.mark.parametrize("resident", [1, 2])
def test_a_model_switched_away_and_back_draws_the_same_pixels(tiny_config: Config, resident: int,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from inference import executor as executor_module

    loads: list[str] = []
    original = executor_module.load_model

    def counting(cfg: ModelConfig, *args: Any) -> LoadedModel:
        loads.append(cfg.display_name)
        return original(cfg, *args)

    monkeypatch.setattr(executor_module, "load_model", counting)
    executor = GpuExecutor(two_models(tiny_config, resident))
    try:
        images = []
        for i, model in enumerate(("", "twin", "")):
            (outcome,) = executor.run_batch([PreparedJob(job(f"j{i}", model))], lambda e: None).result(GUARD_S)
            assert isinstance(outcome, Finished)
            images.append(np.asarray(outcome.result.images[0]))
        switches = executor.model_switches()
    finally:
        executor.shutdown()
    assert np.array_equal(images[0], images[2])
    # One model at a time loads the first again from disk; two keep it in RAM.
    assert loads == (["tiny", "twin", "tiny"] if resident == 1 else ["tiny", "twin"])
    assert [how for _, how, _ in switches] == (["disk"] * 3 if resident == 1 else ["disk", "disk", "ram"])


def test_status_names_the_models_waiting_in_ram() -> None:
    from cogs.admin import loaded_models_text

    assert loaded_models_text(("xl", "sd15"), ("sd15",)) == "xl, sd15 (in RAM)"
    assert loaded_models_text((), ()) == "none yet"


def test_parking_also_moves_a_depth_estimator_and_an_ip_adapter_kept_beside_the_pipelines() -> None:
    from types import SimpleNamespace

    from inference.residency import modules_of

    estimator, projection, processor = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    model = fake_model("a")
    model.controls = {"depth": SimpleNamespace(pipe=None, estimator=SimpleNamespace(model=estimator))}
    model.style_adapter = SimpleNamespace(projection=projection, processors={"down.attn2": processor})
    assert {id(m) for m in modules_of(model)} == {id(estimator), id(projection), id(processor)}


def test_the_held_models_can_be_listed_while_the_gpu_thread_switches(monkeypatch: pytest.MonkeyPatch) -> None:
    Recorded(monkeypatch)
    held = Residency(3, accelerator=True, offload=False)
    for name in ("a", "b"):
        held.use(name, lambda name=name: fake_model(name))
    listing = iter(held)  # /easel status on the event loop...
    held.use("c", lambda: fake_model("c"))  # ...while the GPU thread loads another model
    assert [m.name for m in listing] == ["b", "a"]
