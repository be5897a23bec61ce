"""Kandinsky 2.2 through the production loader and batch runner, against diffusers called directly."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw

from config import DeviceConfig, ModelConfig
from inference.families import detect_family
from inference.generate import keep_unmasked, run_diffusion_batch
from inference.jobs import ImageToImageJob, InpaintJob, JobError, JobKind, TextToImageJob
from inference.kandinsky import INPAINT_STRENGTH, NO_INPAINT, run_size
from inference.loader import LoadedModel, ModelLoadError, load_model
from inference.prepare import PreparedJob

STEPS, SIZE = 3, 32


@pytest.fixture(scope="module")
def kandinsky(tiny_kandinsky_dir: Path) -> LoadedModel:
    """Loaded by the production loader, the family detected from the decoder folder."""
    cfg = ModelConfig(source=str(tiny_kandinsky_dir / "decoder"), prior_source=str(tiny_kandinsky_dir / "prior"),
                      inpaint_source=str(tiny_kandinsky_dir / "decoder-inpaint"), name="kandy")
    return load_model(cfg, DeviceConfig(device="cpu"))


@pytest.fixture(scope="module")
def direct(tiny_kandinsky_dir: Path) -> dict[JobKind, Any]:
    """The same folders loaded straight from diffusers into its combined pipelines."""
    from diffusers import (
        KandinskyV22CombinedPipeline,
        KandinskyV22Img2ImgCombinedPipeline,
        KandinskyV22InpaintCombinedPipeline,
        KandinskyV22InpaintPipeline,
        KandinskyV22Pipeline,
        KandinskyV22PriorPipeline,
    )

    prior = KandinskyV22PriorPipeline.from_pretrained(tiny_kandinsky_dir / "prior")
    decoder = KandinskyV22Pipeline.from_pretrained(tiny_kandinsky_dir / "decoder")
    inpaint = KandinskyV22InpaintPipeline.from_pretrained(tiny_kandinsky_dir / "decoder-inpaint")
    parts = {f"prior_{k}": v for k, v in prior.components.items()}
    pipes = {JobKind.IMAGINE: KandinskyV22CombinedPipeline(**decoder.components, **parts),
             JobKind.VARY: KandinskyV22Img2ImgCombinedPipeline(**decoder.components, **parts),
             JobKind.PAINT: KandinskyV22InpaintCombinedPipeline(**inpaint.components, **parts)}
    for pipe in pipes.values():
        pipe.set_progress_bar_config(disable=True)
    return pipes


def call_direct(pipe: Any, seed: int, **kwargs: Any) -> Image.Image:
    import torch

    with torch.inference_mode():
        return pipe(generator=torch.Generator("cpu").manual_seed(seed), num_inference_steps=STEPS,
                    guidance_scale=4.0, **kwargs).images[0]


def max_difference(a: Image.Image, b: Image.Image) -> int:
    assert a.size == b.size, (a.size, b.size)
    return int(np.abs(np.asarray(a.convert("RGB"), np.int16) - np.asarray(b.convert("RGB"), np.int16)).max())


def run(model: LoadedModel, *prepared: PreparedJob, on_step: Any = None) -> Any:
    return run_diffusion_batch(model, list(prepared), on_step or (lambda *_: True))


def source_image() -> Image.Image:
    image = Image.new("RGB", (SIZE, 48), "navy")
    ImageDraw.Draw(image).ellipse((4, 8, 28, 40), fill="orange")
    return image


def test_the_folders_load_as_one_model_whose_pipelines_share_modules(kandinsky: LoadedModel) -> None:
    assert kandinsky.family == "kandinsky22" and kandinsky.preset.guidance == 4.0
    base, vary, paint = (kandinsky.pipes[k] for k in (JobKind.IMAGINE, JobKind.VARY, JobKind.PAINT))
    assert type(vary).__name__ == "KandinskyV22Img2ImgCombinedPipeline" and vary.unet is base.unet
    assert vary.decoder_pipe.unet is base.decoder_pipe.unet is base.unet  # what the runner calls
    assert paint.prior_prior is base.prior_prior and paint.unet is not base.unet  # the inpainting decoder
    assert kandinsky.tokenizer is base.prior_tokenizer and kandinsky.tokenizer.model_max_length == 77
    assert type(kandinsky.default_scheduler).__name__ == "DDPMScheduler"


def test_text_to_image_equals_the_combined_pipeline_for_each_seed(kandinsky: LoadedModel, direct: dict) -> None:
    job = TextToImageJob(job_id="k1", owner=1, prompt="a red fox", negative_prompt="dark", width=SIZE, height=48,
                         steps=STEPS, guidance=4.0, seed=7, count=2, model="kandy")
    other = dataclasses.replace(job, job_id="k2", prompt="a blue owl", negative_prompt="", seed=30, count=1)
    results = run(kandinsky, PreparedJob(job), PreparedJob(other))  # two jobs, three images, one decoder call
    assert [r.job_id for r in results] == ["k1", "k2"] and results[0].seeds == (7, 8)
    for result, options in ((results[0], {"prompt": "a red fox", "negative_prompt": "dark"}),
                            (results[1], {"prompt": "a blue owl"})):
        for image, seed in zip(result.images, result.seeds, strict=True):
            expected = call_direct(direct[JobKind.IMAGINE], seed, width=SIZE, height=48, **options)
            assert max_difference(image, expected) <= 1
    assert results[0].nsfw == (False, False)


def test_image_to_image_equals_the_combined_pipeline(kandinsky: LoadedModel, direct: dict) -> None:
    init = source_image()
    job = ImageToImageJob(job_id="v1", owner=1, prompt="a photo of a cat", width=SIZE, height=48, steps=STEPS,
                          guidance=4.0, seed=3, strength=0.7, model="kandy", init_image="unused.png")
    [result] = run(kandinsky, PreparedJob(job, init_image=init))
    # diffusers 0.42 swaps width and height in this pipeline (a 32x48 request comes out 48x32): the
    # reference is asked for the swapped size so that it is the portrait the member asked for.
    expected = call_direct(direct[JobKind.VARY], 3, prompt="a photo of a cat", image=init, strength=0.7,
                           width=48, height=SIZE)
    assert result.images[0].size == (SIZE, 48) and max_difference(result.images[0], expected) <= 1


def test_inpainting_equals_the_combined_pipeline_with_the_unmasked_part_kept(kandinsky: LoadedModel,
                                                                             direct: dict) -> None:
    init = source_image()
    mask = Image.new("L", init.size, 0)
    ImageDraw.Draw(mask).rectangle((0, 0, 15, 47), fill=255)
    job = InpaintJob(job_id="p1", owner=1, prompt="a tree", width=SIZE, height=48, steps=STEPS, guidance=4.0,
                     seed=5, model="kandy", init_image="unused.png", mask_image="unused.png")
    prepared = PreparedJob(job, init_image=init, mask_image=mask)
    [result] = run(kandinsky, prepared)
    raw = call_direct(direct[JobKind.PAINT], 5, prompt="a tree", image=init, mask_image=mask, width=SIZE, height=48)
    [expected] = keep_unmasked(prepared, [raw])
    assert max_difference(result.images[0], expected) <= 1
    kept = np.asarray(result.images[0])[:, 20:]
    assert np.array_equal(kept, np.asarray(init)[:, 20:])


def test_a_cancel_during_the_prior_or_the_decoder_stops_the_batch(kandinsky: LoadedModel) -> None:
    job = TextToImageJob(job_id="c", owner=1, prompt="a cat", width=SIZE, height=SIZE, steps=STEPS, guidance=4.0,
                         model="kandy")
    steps: list[int] = []
    assert run(kandinsky, PreparedJob(job), on_step=lambda step, *_: steps.append(step) or False) is None
    assert steps == [0]  # stopped at the prior's first step
    steps.clear()
    assert run(kandinsky, PreparedJob(job), on_step=lambda step, *_: steps.append(step) or step < 2) is None
    assert steps[-1] == 2 and steps.count(1) == 1  # the decoder stopped after its second step


def test_progress_counts_the_decoder_steps_without_previews(kandinsky: LoadedModel) -> None:
    job = TextToImageJob(job_id="s", owner=1, prompt="a cat", width=SIZE, height=SIZE, steps=STEPS, guidance=4.0,
                         model="kandy")
    seen: list[tuple[int, int, Any]] = []
    run(kandinsky, PreparedJob(job), on_step=lambda *args: seen.append(args) or True)
    assert [s for s in seen if s[0]] == [(1, STEPS, None), (2, STEPS, None), (3, STEPS, None)]


def test_paint_without_an_inpainting_decoder_is_refused_clearly(tiny_kandinsky_dir: Path) -> None:
    cfg = ModelConfig(source=str(tiny_kandinsky_dir / "decoder"), prior_source=str(tiny_kandinsky_dir / "prior"))
    model = load_model(cfg, DeviceConfig(device="cpu"))
    job = InpaintJob(job_id="p", owner=1, prompt="x", width=SIZE, height=SIZE, steps=1, init_image="a", mask_image="b")
    with pytest.raises(JobError, match="inpainting decoder"):
        run(model, PreparedJob(job, init_image=source_image(), mask_image=Image.new("L", (SIZE, 48))))
    assert "/imagine and /vary still work" in NO_INPAINT


def test_paint_with_a_strength_below_one_is_refused(kandinsky: LoadedModel) -> None:
    job = InpaintJob(job_id="p", owner=1, prompt="x", width=SIZE, height=SIZE, steps=4, strength=0.5,
                     init_image="a", mask_image="b")
    with pytest.raises(JobError) as info:
        run(kandinsky, PreparedJob(job, init_image=source_image(), mask_image=Image.new("L", (SIZE, 48))))
    assert str(info.value) == INPAINT_STRENGTH


def test_a_missing_prior_folder_is_one_clear_line(tiny_kandinsky_dir: Path, tmp_path: Path) -> None:
    cfg = ModelConfig(source=str(tiny_kandinsky_dir / "decoder"), prior_source=str(tmp_path / "prior"), name="k")
    with pytest.raises(ModelLoadError) as info:
        load_model(cfg, DeviceConfig(device="cpu"))
    assert str(info.value) == f"model 'k': prior_source: no such folder: {tmp_path / 'prior'}"


def test_a_local_decoder_without_a_prior_says_to_set_prior_source(tiny_kandinsky_dir: Path) -> None:
    with pytest.raises(ModelLoadError, match="prior_source is not set") as info:
        load_model(ModelConfig(source=str(tiny_kandinsky_dir / "decoder")), DeviceConfig(device="cpu"))
    assert "\n" not in str(info.value)


def test_the_prior_given_as_source_is_named_as_such(tiny_kandinsky_dir: Path, tmp_path: Path) -> None:
    decoder = tmp_path / "decoder"
    shutil.copytree(tiny_kandinsky_dir / "prior", decoder)  # an admin swapped the two folders
    cfg = ModelConfig(source=str(decoder), prior_source=str(tiny_kandinsky_dir / "prior"), family="kandinsky22")
    with pytest.raises(ModelLoadError, match="that is the prior: set source to the decoder folder"):
        load_model(cfg, DeviceConfig(device="cpu"))


def test_a_hub_prior_that_cannot_be_downloaded_is_one_line(tiny_kandinsky_dir: Path) -> None:
    cfg = ModelConfig(source=str(tiny_kandinsky_dir / "decoder"), prior_source="kandinsky-community/kandinsky-2-2-prior")
    with pytest.raises(ModelLoadError) as info:
        load_model(cfg, DeviceConfig(device="cpu"))
    assert "kandinsky-2-2-prior" in str(info.value) and "\n" not in str(info.value)


def test_loras_are_refused_for_kandinsky(tiny_kandinsky_dir: Path) -> None:
    from config import LoraConfig

    cfg = ModelConfig(source=str(tiny_kandinsky_dir / "decoder"), prior_source=str(tiny_kandinsky_dir / "prior"),
                      loras=(LoraConfig(name="x", source="x.safetensors"),))
    with pytest.raises(ModelLoadError, match="LoRAs are not supported for Kandinsky 2.2"):
        load_model(cfg, DeviceConfig(device="cpu"))


def test_the_family_is_detected_from_the_pipeline_class_or_the_hub_name(tiny_kandinsky_dir: Path) -> None:
    index = json.loads((tiny_kandinsky_dir / "decoder" / "model_index.json").read_text())
    assert detect_family("models/my-model", index["_class_name"]) == "kandinsky22"
    assert detect_family("kandinsky-community/kandinsky-2-2-decoder") == "kandinsky22"
    assert detect_family("stabilityai/sd-turbo") == "sd-turbo"
    assert detect_family("models/kandinsky-style-sd15", "StableDiffusionPipeline") == "sd15"  # the class decides


class _Movq:
    class config:  # noqa: N801 - shaped like a diffusers config
        block_out_channels = (128, 256, 256, 512)


def test_sizes_round_up_to_what_the_real_decoder_makes() -> None:
    pipe = type("Pipe", (), {"movq": _Movq()})()
    assert run_size(pipe, 512, 512) == (512, 512)
    assert run_size(pipe, 416, 624) == (448, 640)


def test_samplers_that_need_input_scaling_are_refused_before_queueing(kandinsky: LoadedModel) -> None:
    from inference.validation import ModelInfo, build_imagine

    info = ModelInfo("kandy", dataclasses.replace(kandinsky.preset, min_size=SIZE), kandinsky.tokenizer)
    with pytest.raises(JobError, match="The Euler a sampler does not work with Kandinsky 2.2 models.*ddim"):
        build_imagine("j", 1, info, prompt="a cat", scheduler="euler_a")
    job = build_imagine("j", 1, info, prompt="a cat", scheduler="ddim", steps=2, width=SIZE, height=SIZE).job
    [result] = run(kandinsky, PreparedJob(job))
    assert result.images[0].size == (SIZE, SIZE)
    assert type(kandinsky.pipes[JobKind.IMAGINE].decoder_pipe.scheduler).__name__ == "DDIMScheduler"


def test_text_crops_and_images_stretch_back_to_the_asked_size() -> None:
    from inference.kandinsky import _fit

    made = Image.new("RGB", (448, 640))
    ImageDraw.Draw(made).rectangle((16, 8, 431, 631), fill="white")  # the centre 416x624 (crop box) is white
    cropped = _fit(made, (416, 624), JobKind.IMAGINE)
    assert cropped.size == (416, 624) and cropped.getextrema() == ((255, 255),) * 3
    assert _fit(made, (416, 624), JobKind.VARY).size == (416, 624)


def test_the_start_up_check_makes_an_image_with_kandinsky(tiny_kandinsky_dir: Path, tmp_path: Path) -> None:
    from config import load_config
    from inference.check import run_check

    toml = tmp_path / "easel.toml"
    toml.write_text(f'[model]\nsource = "{tiny_kandinsky_dir / "decoder"}"\nprior_source = "{tiny_kandinsky_dir / "prior"}"\n'
                    'size = 64\nmin_size = 64\nmax_size = 64\n[device]\ndevice = "cpu"\n', encoding="utf-8")
    report = run_check(load_config(toml, environ={}))
    assert report.family == "kandinsky22" and report.image_size == (64, 64) and report.steps == 2


def test_image_to_image_jobs_batched_together_equal_each_alone(kandinsky: LoadedModel) -> None:
    red, blue = Image.new("RGB", (SIZE, SIZE), "red"), source_image().resize((SIZE, SIZE))
    jobs = [ImageToImageJob(job_id=f"b{i}", owner=i, prompt=prompt, negative_prompt=negative, width=SIZE, height=SIZE,
                            steps=STEPS, guidance=4.0, seed=seed, strength=0.8, model="kandy", init_image="x")
            for i, (prompt, negative, seed) in enumerate((("a fox", "dark", 1), ("a sea", "", 2)))]
    prepared = [PreparedJob(job, init_image=image) for job, image in zip(jobs, (red, blue), strict=True)]
    together = run(kandinsky, *prepared)
    for alone, batched in zip((run(kandinsky, p)[0] for p in prepared), together, strict=True):
        assert max_difference(alone.images[0], batched.images[0]) <= 1


def test_paint_requests_kandinsky_cannot_serve_are_refused_before_the_queue() -> None:
    """No inpainting decoder, or a strength below 1: refused by validation (privately), not by the GPU
    thread after the member waited in the queue."""
    from inference.presets import KANDINSKY, PRESETS
    from inference.validation import ModelInfo, build_paint

    def paint(info: ModelInfo, **kw: object) -> object:
        return build_paint("p", 1, info, init_image="a.png", mask_image="m.png", source_size=(64, 64), prompt="a sun",
                           **kw)  # type: ignore[arg-type]

    without = ModelInfo("kandy", PRESETS[KANDINSKY])
    with pytest.raises(JobError, match=NO_INPAINT[:40]):
        paint(without)
    able = ModelInfo("kandy", PRESETS[KANDINSKY], inpaint_model=True)
    with pytest.raises(JobError, match=INPAINT_STRENGTH[:40]):
        paint(able, strength=0.5)
    assert paint(able).job.strength == 1.0


def test_model_scheduler_sets_the_decoders_sampler_or_is_refused_when_kandinsky_cannot_use_it(
        tiny_kandinsky_dir: Path) -> None:
    parts = {"source": str(tiny_kandinsky_dir / "decoder"), "prior_source": str(tiny_kandinsky_dir / "prior"),
             "name": "kandy"}
    ddim = load_model(ModelConfig(**parts, scheduler="ddim"), DeviceConfig(device="cpu"))
    assert type(ddim.default_scheduler).__name__ == "DDIMScheduler"
    with pytest.raises(ModelLoadError, match="'euler'.*does not work with Kandinsky 2.2"):
        load_model(ModelConfig(**parts, scheduler="euler"), DeviceConfig(device="cpu"))
