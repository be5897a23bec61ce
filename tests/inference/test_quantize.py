"""``device.quantize``: torchao quantises the UNet's linear layers at load (int8 weights, or int8
weights and activations); the picture stays close, each result says it is quantised; fp8 off an
Ada/Hopper GPU is a clear load failure; the config refuses what quantised layers cannot do."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from config import Config, ConfigError, load_config
from inference.generate import run_diffusion_batch
from inference.loader import LoadedModel, ModelLoadError, load_model
from inference.prepare import PreparedJob
from tests.inference.engine_helpers import t2i


def _load(config: Config, quantize: str) -> LoadedModel:
    return load_model(config.model, dataclasses.replace(config.device, quantize=quantize), config.base_dir)


def _image(model: LoadedModel) -> tuple[np.ndarray, str]:
    results = run_diffusion_batch(model, [PreparedJob(t2i("q", seed=5, steps=4))], lambda *_: True)
    assert results is not None
    return np.asarray(results[0].images[0], np.int16), results[0].fast_path


@pytest.mark.parametrize("mode", ["int8", "int8-dynamic"])
def test_a_quantised_unet_draws_the_same_picture_and_says_so(tiny_config: Config, mode: str) -> None:
    plain, plain_label = _image(_load(tiny_config, "none"))
    model = _load(tiny_config, mode)
    quantised, quantised_label = _image(model)
    unet = model.pipes["imagine"].unet  # type: ignore[index]
    linear = unet.mid_block.attentions[0].transformer_blocks[0].attn1.to_q
    assert type(linear.weight).__module__.startswith("torchao")  # the weights really are torchao's now
    assert (plain_label, quantised_label, model.quantized) == ("", mode, mode)
    diff = np.abs(plain - quantised)
    assert diff.max() > 0 and diff.mean() < 8  # rounding of the weights, not another picture


def test_fp8_on_the_cpu_is_a_load_failure_that_says_what_it_needs(tiny_config: Config) -> None:
    with pytest.raises(ModelLoadError, match=r"fp8.*compute capability 8.9.*Ada, Hopper.*this runs on the CPU"):
        _load(tiny_config, "fp8")


def _config(tmp_path: Path, device: str, loras: str = "") -> Config:
    path = tmp_path / "easel.toml"
    path.write_text(f'[model]\nsource = "stabilityai/sd-turbo"\n{loras}\n[device]\n{device}\n', encoding="utf-8")
    return load_config(path, environ={})


def test_an_unknown_quantisation_is_named_with_its_choices(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"device.quantize: 'int4' is not one of none, int8, int8-dynamic, fp8"):
        _config(tmp_path, 'quantize = "int4"')
    assert _config(tmp_path, 'quantize = "fp8"').device.quantize == "fp8"  # checked against the GPU at load


def test_quantising_refuses_a_switchable_lora_and_cpu_offload(tmp_path: Path) -> None:
    lora = '[[model.loras]]\nname = "ink"\nsource = "someone/ink-lora"\n'
    with pytest.raises(ConfigError, match=r"device.quantize: .*'ink'.*fuse = true"):
        _config(tmp_path, 'quantize = "int8"', lora)
    assert _config(tmp_path, 'quantize = "int8"', lora + "fuse = true\n").device.quantize == "int8"
    with pytest.raises(ConfigError, match=r"device.quantize: .*cpu_offload = false"):
        _config(tmp_path, 'quantize = "int8"\ncpu_offload = true')


def test_quantising_without_torchao_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torchao" else real(name, *a))
    with pytest.raises(ConfigError, match=r"device.quantize = 'int8' needs torchao: pip install 'easel\[quantize\]'"):
        _config(tmp_path, 'quantize = "int8"')


def test_a_quantised_weight_is_parked_without_page_locking(monkeypatch: pytest.MonkeyPatch) -> None:
    """Parking a model in RAM next to a GPU page-locks its plain tensors. torchao's quantised weights are
    a tensor type of its own, which need not support page-locking: they are left as they are."""
    import torch
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    from inference.residency import _pin

    pinned: list[tuple[int, ...]] = []
    monkeypatch.setattr(torch.Tensor, "is_pinned", lambda self: False)
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self: pinned.append(tuple(self.shape)) or self)
    quantised, plain = torch.nn.Linear(32, 16), torch.nn.Linear(8, 4)
    quantize_(quantised, Int8WeightOnlyConfig())
    _pin(torch.nn.Sequential(quantised, plain))
    assert sorted(pinned) == [(4,), (4, 8), (16,)]  # the plain layer's weight and both biases; not (16, 32)
