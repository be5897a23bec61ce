"""Seamless tiles: a tile job's convolutions pad circularly, so the picture wraps around without a
seam; every layer gets its own padding back after the call, so the next job is untouched."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from config import DeviceConfig, ModelConfig
from inference.generate import run_diffusion_batch
from inference.jobs import TextToImageJob
from inference.loader import LoadedModel, load_model
from inference.prepare import prepare
from inference.seamless import circular_padding, seamless

SEEDS = (0, 1, 2, 3)


@pytest.fixture(scope="module")
def model(tiny_model_dir: Path) -> LoadedModel:
    return load_model(ModelConfig(source=str(tiny_model_dir), name="tiny"), DeviceConfig(device="cpu"))


def job(*, tile: bool, seed: int = 3) -> TextToImageJob:
    return TextToImageJob(job_id=f"j{seed}", owner=1, prompt="a castle", width=64, height=64, steps=2,
                          guidance=5.0, seed=seed, model="tiny", tile=tile)


def pixels(model: LoadedModel, the_job: TextToImageJob) -> np.ndarray:
    results = run_diffusion_batch(model, [prepare(the_job)], lambda *_: True)
    assert results is not None
    return np.asarray(results[0].images[0], dtype=np.float64)


def padding_modes(model: LoadedModel) -> list[str]:
    pipe = model.pipes[job(tile=True).kind]
    return [m.padding_mode for part in (pipe.unet, pipe.vae) for m in part.modules() if isinstance(m, nn.Conv2d)]


def test_a_tiles_opposite_edges_continue_each_other_as_neighbouring_columns_do(model: LoadedModel) -> None:
    wrap_x = wrap_y = inner_x = inner_y = 0.0
    for seed in SEEDS:
        a = pixels(model, job(tile=True, seed=seed))
        wrap_x += np.abs(a[:, 0] - a[:, -1]).mean()
        wrap_y += np.abs(a[0] - a[-1]).mean()
        inner_x += np.abs(np.diff(a, axis=1)).mean()
        inner_y += np.abs(np.diff(a, axis=0)).mean()
    assert wrap_x <= 1.05 * inner_x
    assert wrap_y <= 1.05 * inner_y


def test_a_tile_has_no_place_of_its_own_shifted_noise_gives_the_same_tile_shifted(model: LoadedModel) -> None:
    """The sharp form of "no seam": on a torus no column is an edge, so starting from the noise
    rolled by a quarter of the image gives exactly the tile rolled by a quarter. Zero padding
    makes the edges special, and the plain image changes."""
    pipe = model.pipes[job(tile=True).kind]
    pipe.set_progress_bar_config(disable=True)
    noise = torch.randn((1, 4, 8, 8), generator=torch.Generator().manual_seed(5))

    def draw(latents: torch.Tensor, tile: bool) -> np.ndarray:
        with torch.inference_mode(), seamless(pipe, tile):
            out = pipe(prompt=["a castle"], num_inference_steps=2, guidance_scale=5.0, width=64, height=64,
                       latents=latents.clone(), output_type="np")
        return np.asarray(out.images[0], dtype=np.float64) * 255

    for tile in (True, False):
        whole = draw(noise, tile)
        shifted = draw(torch.roll(noise, shifts=(2, 2), dims=(2, 3)), tile)
        gap = np.abs(np.roll(whole, shift=(16, 16), axis=(0, 1)) - shifted).max()
        if tile:
            assert gap <= 1.0
        else:
            assert gap > 10.0


def test_a_plain_job_after_a_tile_job_gets_exactly_its_pixels(model: LoadedModel) -> None:
    before_modes = padding_modes(model)
    before = pixels(model, job(tile=False))
    tiled = pixels(model, job(tile=True))
    after = pixels(model, job(tile=False))
    assert np.array_equal(before, after)
    assert not np.array_equal(before, tiled)
    assert padding_modes(model) == before_modes == ["zeros"] * len(before_modes)


def test_a_tile_job_shows_each_image_two_by_two_with_its_result(model: LoadedModel) -> None:
    plain = run_diffusion_batch(model, [prepare(job(tile=False))], lambda *_: True)
    tiled = run_diffusion_batch(model, [prepare(dataclasses.replace(job(tile=True), count=2))], lambda *_: True)
    assert plain is not None and tiled is not None
    assert plain[0].extras == ()
    assert [label for label, _ in tiled[0].extras] == ["tile", "tile"]
    for image, (_, preview) in zip(tiled[0].images, tiled[0].extras, strict=True):
        assert preview.size == (128, 128)
        assert np.array_equal(np.asarray(preview)[64:, 64:], np.asarray(image))


def test_padding_comes_back_when_the_call_fails_or_is_cancelled() -> None:
    net = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), nn.Conv2d(3, 3, 3, padding=1, padding_mode="reflect"))
    with pytest.raises(RuntimeError), circular_padding([net]) as switched:
        assert switched == 2
        assert [m.padding_mode for m in net] == ["circular", "circular"]
        raise RuntimeError("cancelled mid-call")
    assert [m.padding_mode for m in net] == ["zeros", "reflect"]


def test_lora_wrapped_convolutions_pad_circularly_too() -> None:
    """peft wraps a LoRA's Conv2d in a layer holding ``base_layer``: the walk reaches it, and the
    LoRA's own convolution, and the wrapped model then wraps around like the plain one."""
    from peft import LoraConfig, inject_adapter_in_model

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.SiLU(), nn.Conv2d(4, 3, 3, padding=1))
    net = inject_adapter_in_model(LoraConfig(r=2, target_modules=["0", "2"], init_lora_weights=False), net)
    assert hasattr(net[0], "base_layer")
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad(), circular_padding([net]):
        whole = net(x)
        shifted = net(torch.roll(x, shifts=3, dims=3))
    assert torch.allclose(torch.roll(whole, shifts=3, dims=3), shifted, atol=1e-5)
    assert all(m.padding_mode == "zeros" for m in net.modules() if isinstance(m, nn.Conv2d))


def test_not_enabled_switches_nothing() -> None:
    net = nn.Conv2d(3, 3, 3, padding=1)
    with circular_padding([net], enabled=False) as switched:
        assert switched == 0
        assert net.padding_mode == "zeros"


def test_a_compiled_model_follows_the_switch_and_its_restoration() -> None:
    """torch.compile guards on ``padding_mode``: the tile call recompiles rather than reusing the
    zero-padded graph, and the next plain call gets the plain graph again."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), nn.Conv2d(3, 3, 3, padding=1))
    compiled = torch.compile(net, backend="eager")
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        plain = compiled(x)
        with circular_padding([compiled]):
            tiled = compiled(x)
            eager = net(x)
        again = compiled(x)
    assert torch.equal(tiled, eager) and not torch.allclose(plain, tiled)
    assert torch.equal(plain, again)


def test_a_tile_job_that_reaches_a_kandinsky_model_fails_with_the_refusal() -> None:
    """Validation refuses it; a Redo after the admins moved the model name to Kandinsky gets here."""
    from types import SimpleNamespace

    from inference.jobs import JobError
    from inference.presets import KANDINSKY

    with pytest.raises(JobError, match=r"Seamless tiles \(`tile`\) work with Stable Diffusion models only"):
        run_diffusion_batch(SimpleNamespace(family=KANDINSKY), [prepare(job(tile=True))], lambda *_: True)
