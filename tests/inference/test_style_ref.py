"""Style references through an IP-Adapter (inference/style_ref.py) on the tiny model.

A model with ``[model.ip_adapter]`` must draw every job without a reference exactly as it draws
it with none configured (text-to-image, image-to-image, inpainting; before and after a style job),
and a style job must give the pixels raw diffusers gives for the same call."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from config import DeviceConfig, IpAdapterConfig, ModelConfig
from inference.generate import run_diffusion_batch
from inference.jobs import ImageToImageJob, InpaintJob, JobError, TextToImageJob
from inference.loader import LoadedModel, ModelLoadError, load_model
from inference.prepare import prepare
from tests.fixtures.tiny_ip_adapter import SUBFOLDER, WEIGHT_NAME

CPU = DeviceConfig(device="cpu")


def adapter_config(folder: Path, **changes: str) -> IpAdapterConfig:
    return IpAdapterConfig(**{"source": str(folder), "subfolder": SUBFOLDER, "weight_name": WEIGHT_NAME, **changes})


@pytest.fixture(scope="module")
def plain(tiny_model_dir: Path) -> LoadedModel:
    return load_model(ModelConfig(source=str(tiny_model_dir), name="tiny"), CPU)


@pytest.fixture(scope="module")
def styled(tiny_model_dir: Path, tiny_ip_adapter: Path) -> LoadedModel:
    return load_model(ModelConfig(source=str(tiny_model_dir), name="tiny", ip_adapter=adapter_config(tiny_ip_adapter)),
                      CPU)


@pytest.fixture(scope="module")
def pictures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Two reference pictures, an init image and a mask, as the files a job names."""
    folder = tmp_path_factory.mktemp("style-inputs")
    rng = np.random.default_rng(0)
    out = {}
    for name, array in (("red", np.tile([220, 40, 30], (48, 40, 1))), ("noise", rng.integers(0, 255, (40, 56, 3))),
                        ("init", rng.integers(0, 255, (64, 64, 3)))):
        out[name] = str(folder / f"{name}.png")
        Image.fromarray(array.astype(np.uint8), "RGB").save(out[name])
    mask = np.zeros((64, 64), np.uint8)
    mask[16:48, 16:48] = 255
    out["mask"] = str(folder / "mask.png")
    Image.fromarray(mask, "L").save(out["mask"])
    return out


def t2i(job_id: str = "j", **kw: object) -> TextToImageJob:
    fields = {"prompt": "a fox in a forest", "width": 64, "height": 64, "steps": 3, "guidance": 5.0, "seed": 7,
              "model": "tiny", **kw}
    return TextToImageJob(job_id=job_id, owner=1, **fields)  # type: ignore[arg-type]


def pixels(model: LoadedModel, *jobs: object) -> list[np.ndarray]:
    results = run_diffusion_batch(model, [prepare(j) for j in jobs], lambda *_: True)  # type: ignore[arg-type]
    assert results is not None
    return [np.asarray(im, dtype=np.int16) for r in results for im in r.images]


def plain_jobs(pictures: dict[str, str]) -> list[object]:
    return [t2i(), ImageToImageJob(job_id="v", owner=1, prompt="a fox", width=64, height=64, steps=4, guidance=5.0,
                                   seed=3, model="tiny", init_image=pictures["init"], strength=0.6),
            InpaintJob(job_id="p", owner=1, prompt="a fox", width=64, height=64, steps=3, guidance=5.0, seed=3,
                       model="tiny", init_image=pictures["init"], mask_image=pictures["mask"])]


def test_jobs_without_a_reference_draw_the_same_pixels_as_on_a_model_without_an_ip_adapter(
        plain: LoadedModel, styled: LoadedModel, pictures: dict[str, str]) -> None:
    for job in plain_jobs(pictures):
        without = pixels(plain, job)
        assert all(np.array_equal(a, b) for a, b in zip(without, pixels(styled, job), strict=True)), job
        pixels(styled, t2i("s", style_image=pictures["red"], style_strength=1.0))  # a style job in between
        assert all(np.array_equal(a, b) for a, b in zip(without, pixels(styled, job), strict=True)), job


def test_after_a_style_job_the_unet_is_as_it_was(styled: LoadedModel, pictures: dict[str, str]) -> None:
    unet = styled.pipes[t2i().kind].unet
    before = {name: type(proc) for name, proc in unet.attn_processors.items()}
    pixels(styled, t2i(style_image=pictures["red"]))
    assert {name: type(proc) for name, proc in unet.attn_processors.items()} == before
    assert unet.encoder_hid_proj is None and unet.config.encoder_hid_dim_type is None
    assert not any("IPAdapter" in cls.__name__ for cls in before.values())


def test_a_cancelled_style_job_leaves_the_unet_as_it_was(styled: LoadedModel, pictures: dict[str, str]) -> None:
    unet = styled.pipes[t2i().kind].unet
    before = dict(unet.attn_processors)
    assert run_diffusion_batch(styled, [prepare(t2i(style_image=pictures["red"]))], lambda *_: False) is None
    assert dict(unet.attn_processors) == before and unet.encoder_hid_proj is None
    assert "prepare_ip_adapter_image_embeds" not in vars(styled.pipes[t2i().kind])  # the pipeline's own again


def test_a_style_job_gives_the_pixels_raw_diffusers_gives(tiny_model_dir: Path, tiny_ip_adapter: Path,
                                                          styled: LoadedModel, pictures: dict[str, str]) -> None:
    import torch
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(tiny_model_dir, safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    pipe.load_ip_adapter(str(tiny_ip_adapter), subfolder=SUBFOLDER, weight_name=WEIGHT_NAME, local_files_only=True)
    pipe.set_ip_adapter_scale(0.8)
    reference = Image.open(pictures["noise"]).convert("RGB")
    raw = pipe("a fox in a forest", ip_adapter_image=reference, num_inference_steps=3, guidance_scale=5.0, width=64,
               height=64, generator=torch.Generator().manual_seed(7)).images[0]
    (ours,) = pixels(styled, t2i(style_image=pictures["noise"], style_strength=0.8))
    assert np.array_equal(ours, np.asarray(raw, dtype=np.int16))


def test_the_reference_and_its_strength_change_the_picture(styled: LoadedModel, pictures: dict[str, str]) -> None:
    (plain_job,) = pixels(styled, t2i())
    (red,) = pixels(styled, t2i(style_image=pictures["red"], style_strength=1.0))
    (noise,) = pixels(styled, t2i(style_image=pictures["noise"], style_strength=1.0))
    (weak,) = pixels(styled, t2i(style_image=pictures["red"], style_strength=0.2))
    for a, b in ((plain_job, red), (red, noise), (red, weak)):
        assert np.abs(a - b).max() > 8


def test_style_jobs_batched_draw_what_they_draw_alone(styled: LoadedModel, pictures: dict[str, str]) -> None:
    jobs = [t2i("a", style_image=pictures["red"], count=2), t2i("b", style_image=pictures["noise"], seed=11)]
    batched = pixels(styled, *jobs)
    alone = [im for job in jobs for im in pixels(styled, job)]
    assert len(batched) == len(alone) == 3
    assert max(int(np.abs(a - b).max()) for a, b in zip(batched, alone, strict=True)) <= 1
    assert jobs[0].batch_key() == jobs[1].batch_key()


def test_without_guidance_the_reference_still_counts(styled: LoadedModel, pictures: dict[str, str]) -> None:
    """Turbo models run unguided: the embeddings then carry no negative half."""
    (plain_job,) = pixels(styled, t2i(guidance=0.0))
    (red,) = pixels(styled, t2i(guidance=0.0, style_image=pictures["red"], style_strength=1.0))
    assert np.abs(plain_job - red).max() > 8


def test_a_style_job_on_a_model_without_an_adapter_is_refused(plain: LoadedModel, pictures: dict[str, str]) -> None:
    with pytest.raises(JobError, match="no style reference configured"):
        pixels(plain, t2i(style_image=pictures["red"]))


def test_one_file_with_its_encoder_named_loads_the_same_adapter(tiny_model_dir: Path, tiny_ip_adapter: Path,
                                                                styled: LoadedModel, pictures: dict[str, str]) -> None:
    models = tiny_ip_adapter / SUBFOLDER
    single = load_model(ModelConfig(source=str(tiny_model_dir), name="tiny", ip_adapter=IpAdapterConfig(
        source=str(models / WEIGHT_NAME), image_encoder=str(models / "image_encoder"))), CPU)
    job = t2i(style_image=pictures["noise"])
    assert np.array_equal(pixels(single, job)[0], pixels(styled, job)[0])


def test_a_missing_weight_file_is_one_clear_line(tiny_model_dir: Path, tiny_ip_adapter: Path) -> None:
    cfg = ModelConfig(source=str(tiny_model_dir), name="tiny",
                      ip_adapter=adapter_config(tiny_ip_adapter, weight_name="ip-adapter_plus.safetensors"))
    with pytest.raises(ModelLoadError, match=r"model 'tiny': ip_adapter .* could not be loaded") as err:
        load_model(cfg, CPU)
    assert "\n" not in str(err.value)


def test_an_adapter_made_for_another_model_is_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from tests.fixtures.tiny_ip_adapter import build_image_encoder, ip_adapter_tensors

    tensors = ip_adapter_tensors(tiny_model_dir)
    tensors = {k: (v[:, :16].contiguous() if k.endswith("_ip.weight") else v) for k, v in tensors.items()}  # another width
    (tmp_path / "models").mkdir()
    save_file(tensors, str(tmp_path / "models" / WEIGHT_NAME))
    build_image_encoder(tmp_path / "models" / "image_encoder")
    cfg = ModelConfig(source=str(tiny_model_dir), name="tiny", ip_adapter=adapter_config(tmp_path))
    with pytest.raises(ModelLoadError, match="does not fit this model"):
        load_model(cfg, CPU)


def test_on_sdxl_a_style_job_gives_the_pixels_raw_diffusers_gives(tiny_sdxl_dir: Path, pictures: dict[str, str]) -> None:
    import torch
    from diffusers import StableDiffusionXLPipeline

    from tests.fixtures.tiny_ip_adapter import ensure_tiny_ip_adapter

    folder = ensure_tiny_ip_adapter(tiny_sdxl_dir, tiny_sdxl_dir.parent / "tiny-sdxl-ip-adapter")
    model = load_model(ModelConfig(source=str(tiny_sdxl_dir), name="xl", ip_adapter=adapter_config(folder)), CPU)
    job = t2i(model="xl", style_image=pictures["noise"], style_strength=0.9)
    (ours,) = pixels(model, job)
    (plain_job,) = pixels(model, t2i(model="xl"))
    assert np.abs(ours - plain_job).max() > 8
    pipe = StableDiffusionXLPipeline.from_pretrained(tiny_sdxl_dir)
    pipe.set_progress_bar_config(disable=True)
    (without,) = [np.asarray(pipe("a fox in a forest", num_inference_steps=3, guidance_scale=5.0, width=64, height=64,
                                  generator=torch.Generator().manual_seed(7)).images[0], dtype=np.int16)]
    assert np.array_equal(without, plain_job)
    pipe.load_ip_adapter(str(folder), subfolder=SUBFOLDER, weight_name=WEIGHT_NAME, local_files_only=True)
    pipe.set_ip_adapter_scale(0.9)
    raw = pipe("a fox in a forest", ip_adapter_image=Image.open(pictures["noise"]).convert("RGB"), num_inference_steps=3,
               guidance_scale=5.0, width=64, height=64, generator=torch.Generator().manual_seed(7)).images[0]
    assert np.array_equal(ours, np.asarray(raw, dtype=np.int16))


def test_a_kandinsky_model_refuses_an_ip_adapter_in_one_line(tiny_kandinsky_dir: Path, tiny_ip_adapter: Path) -> None:
    cfg = ModelConfig(source=str(tiny_kandinsky_dir / "decoder"), prior_source=str(tiny_kandinsky_dir / "prior"),
                      name="k", ip_adapter=adapter_config(tiny_ip_adapter))
    with pytest.raises(ModelLoadError, match="Kandinsky 2.2 models take no ip_adapter; remove it"):
        load_model(cfg, CPU)
