"""The `[device]` fast-path switches: fused QKV keeps the pixels, compile takes its mode and shape
handling from the config, and a bad value or an unsafe combination is a clear config error."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from config import Config, ConfigError, DeviceConfig, load_config
from inference import fast_path
from inference.fast_path import apply_fast_path
from inference.generate import run_diffusion_batch
from inference.loader import load_model
from inference.prepare import PreparedJob
from tests.inference.engine_helpers import t2i


def _image(config: Config, device: DeviceConfig) -> tuple[np.ndarray, set[str]]:
    model = load_model(config.model, device, config.base_dir)
    results = run_diffusion_batch(model, [PreparedJob(t2i("f", seed=5))], lambda *_: True)
    assert results is not None
    kinds = {type(p).__name__ for p in model.pipes["imagine"].unet.attn_processors.values()}  # type: ignore[index]
    return np.asarray(results[0].images[0], np.int16), kinds


def test_fused_qkv_projections_keep_the_pixels(tiny_config: Config) -> None:
    plain, plain_kinds = _image(tiny_config, tiny_config.device)
    fused, fused_kinds = _image(tiny_config, dataclasses.replace(tiny_config.device, fuse_qkv=True))
    assert plain_kinds == {"AttnProcessor2_0"}
    assert fused_kinds == {"FusedAttnProcessor2_0"}
    assert int(np.abs(plain - fused).max()) <= 2  # float rounding of one product instead of three


def test_compile_uses_the_configured_mode_and_shape_handling(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []

    def fake_compile(module: Any, **kwargs: Any) -> str:
        calls.append(kwargs)
        return f"compiled {module}"

    monkeypatch.setattr(fast_path.torch, "compile", fake_compile)
    pipe = SimpleNamespace(unet="unet")
    apply_fast_path(pipe, DeviceConfig(compile=True, compile_mode="max-autotune", compile_dynamic="static"))
    assert pipe.unet == "compiled unet"
    assert calls == [{"mode": "max-autotune", "dynamic": False, "fullgraph": False}]
    apply_fast_path(SimpleNamespace(unet="u"), DeviceConfig(compile=True))  # the defaults: CUDA graphs, torch decides
    assert calls[-1] == {"mode": "reduce-overhead", "dynamic": None, "fullgraph": False}
    untouched = SimpleNamespace(unet="u")
    apply_fast_path(untouched, DeviceConfig(compile=False, compile_mode="default"))
    assert untouched.unet == "u" and len(calls) == 2


def _config(tmp_path: Path, device: str, loras: str = "") -> Config:
    path = tmp_path / "easel.toml"
    path.write_text(f'[model]\nsource = "stabilityai/sd-turbo"\n{loras}\n[device]\n{device}\n', encoding="utf-8")
    return load_config(path, environ={})


@pytest.mark.parametrize(("line", "key"), [('compile_mode = "fastest"', "device.compile_mode"),
                                           ('compile_dynamic = "sometimes"', "device.compile_dynamic")])
def test_an_unknown_compile_setting_is_named_with_its_choices(tmp_path: Path, line: str, key: str) -> None:
    with pytest.raises(ConfigError, match=rf"{key}: .* is not one of "):
        _config(tmp_path, line)


def test_fused_qkv_refuses_a_switchable_lora_it_would_skip(tmp_path: Path) -> None:
    lora = '[[model.loras]]\nname = "ink"\nsource = "someone/ink-lora"\n'
    with pytest.raises(ConfigError, match=r"device.fuse_qkv: .*'ink'.*fuse = true"):
        _config(tmp_path, "fuse_qkv = true", lora)
    fused = _config(tmp_path, "fuse_qkv = true", lora + "fuse = true\n")  # merged into the weights: fine
    assert fused.device.fuse_qkv and fused.model.loras[0].fuse
