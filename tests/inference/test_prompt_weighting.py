"""Weighted, BREAK-split and long prompts go through compel on SD and SDXL (PNG parity with diffusers
called with compel's embeddings); a plain prompt that fits 77 tokens goes as text, exactly as before."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from compel import CompelForSD, CompelForSDXL

from config import DeviceConfig, ModelConfig
from inference.generate import ready_pipe, run_diffusion_batch
from inference.jobs import JobKind, TextToImageJob
from inference.loader import LoadedModel, load_model
from inference.prepare import prepare
from inference.presets import PRESETS
from inference.prompting import prompt_embeddings
from inference.validation import build_imagine, describe_model
from tests.fixtures.tiny_models import WORDS

LONG = " ".join(list(WORDS) * 3)  # about 120 tokens


def job(prompt: str, negative: str = "", model: str = "tiny") -> TextToImageJob:
    return TextToImageJob(job_id="j", owner=1, prompt=prompt, negative_prompt=negative, width=64, height=64,
                          steps=2, guidance=5.0, seed=3, model=model)


def load(path: Path, name: str = "tiny") -> LoadedModel:
    return load_model(ModelConfig(source=str(path), name=name), DeviceConfig(device="cpu"))


def ours(model: LoadedModel, the_job: TextToImageJob) -> np.ndarray:
    out = run_diffusion_batch(model, [prepare(the_job)], lambda *_: True)
    assert out is not None
    return np.asarray(out[0].images[0], dtype=np.int16)


def direct(model: LoadedModel, the_job: TextToImageJob, **prompt_kwargs: Any) -> np.ndarray:
    pipe = ready_pipe(model, JobKind.IMAGINE, the_job)
    with torch.inference_mode():
        image = pipe(num_inference_steps=the_job.steps, guidance_scale=the_job.guidance, width=64, height=64,
                     generator=[torch.Generator("cpu").manual_seed(the_job.seed)], **prompt_kwargs).images[0]
    return np.asarray(image, dtype=np.int16)


def test_a_plain_prompt_gives_exactly_the_pixels_of_diffusers_called_with_the_text(tiny_model_dir: Path,
                                                                                   monkeypatch: Any) -> None:
    import inference.prompting

    def no_compel(*_: Any, **__: Any) -> Any:
        raise AssertionError("a plain prompt must not go through compel")

    monkeypatch.setattr(inference.prompting, "prompt_embeddings", no_compel)
    model = load(tiny_model_dir)
    plain = job("a red fox in a forest")
    assert np.array_equal(ours(model, plain), direct(model, plain, prompt=["a red fox in a forest"]))


def test_a_weighted_prompt_on_sd_equals_diffusers_with_compels_embeddings(tiny_model_dir: Path) -> None:
    model = load(tiny_model_dir)
    weighted = job("a (red:1.5) fox")
    pipe = ready_pipe(model, JobKind.IMAGINE, weighted)
    cond = CompelForSD(pipe)("a (red)1.5 fox", negative_prompt="")  # compel's own syntax for the same weights
    reference = direct(model, weighted, prompt_embeds=cond.embeds, negative_prompt_embeds=cond.negative_embeds)
    assert np.abs(ours(model, weighted) - reference).max() <= 1
    with torch.inference_mode():  # the weight did something (the tiny UNet hardly shows it in pixels)
        heavy, plain = (prompt_embeddings(pipe, [p], None, sdxl=False)["prompt_embeds"]
                        for p in ("a (red:1.5) fox", "a red fox"))
    assert not torch.allclose(heavy, plain)


def test_a_weighted_prompt_on_sdxl_equals_diffusers_with_compels_embeddings(tiny_sdxl_dir: Path) -> None:
    model = load(tiny_sdxl_dir, "xl")
    weighted = job("a (red:1.5) fox", negative="(blurry)", model="xl")
    pipe = ready_pipe(model, JobKind.IMAGINE, weighted)
    compel = CompelForSDXL(pipe)
    cond = compel("a (red)1.5 fox", negative_prompt="(blurry)1.1")
    # The pooled embedding is made of the words without the syntax (compel's wrapper would pool the syntax).
    pooled = compel.compel_2.conditioning_provider.get_pooled_embeddings(["a red fox", "blurry"])
    reference = direct(model, weighted, prompt_embeds=cond.embeds, negative_prompt_embeds=cond.negative_embeds,
                       pooled_prompt_embeds=pooled[:1], negative_pooled_prompt_embeds=pooled[1:])
    assert np.abs(ours(model, weighted) - reference).max() <= 1


def test_a_long_prompt_is_used_in_full_and_no_note_says_it_was_cut(tiny_model_dir: Path) -> None:
    model = load(tiny_model_dir)
    assert len(model.tokenizer(LONG, add_special_tokens=False).input_ids) > 100
    pipe = ready_pipe(model, JobKind.IMAGINE, job(LONG))
    with torch.inference_mode():
        embeds = prompt_embeddings(pipe, [LONG], None, sdxl=False)
    assert embeds["prompt_embeds"].shape[1] in (154, 231) and embeds["negative_prompt_embeds"].shape == embeds["prompt_embeds"].shape
    info = describe_model(ModelConfig(source=str(tiny_model_dir), name="tiny"), PRESETS["sd15"], model.tokenizer)
    assert build_imagine("j", 1, info, prompt=LONG).notes == ()
    truncated = direct(model, job(LONG), prompt=[LONG])  # diffusers alone reads the first 77 tokens
    assert np.abs(ours(model, job(LONG)) - truncated).max() > 2


def test_a_long_prompt_on_sdxl_is_used_in_full(tiny_sdxl_dir: Path) -> None:
    model = load(tiny_sdxl_dir, "xl")
    pipe = ready_pipe(model, JobKind.IMAGINE, job(LONG, model="xl"))
    with torch.inference_mode():
        embeds = prompt_embeddings(pipe, [LONG], None, sdxl=True)
    assert embeds["prompt_embeds"].shape[1] in (154, 231)
    assert embeds["pooled_prompt_embeds"].shape[0] == 1


def test_break_starts_a_new_chunk_as_compels_and(tiny_model_dir: Path) -> None:
    model = load(tiny_model_dir)
    split = job("a fox BREAK a red hat")
    pipe = ready_pipe(model, JobKind.IMAGINE, split)
    with torch.inference_mode():
        assert prompt_embeddings(pipe, [split.prompt], None, sdxl=False)["prompt_embeds"].shape[1] == 154
    cond = CompelForSD(pipe)('("a fox", "a red hat").and()', negative_prompt="")
    reference = direct(model, split, prompt_embeds=cond.embeds, negative_prompt_embeds=cond.negative_embeds)
    assert np.abs(ours(model, split) - reference).max() <= 1


def test_a_weighted_job_never_batches_with_a_plain_one() -> None:
    assert job("a (red:1.5) fox").batch_key() != job("a red fox").batch_key()
    assert job("a (red:1.5) fox").batch_key() == job("a [blue] owl").batch_key()
    assert job("a fox", negative="ugly BREAK dark").batch_key() != job("a fox", negative="ugly").batch_key()


def test_an_old_job_with_unbalanced_brackets_fails_with_the_private_message(tiny_model_dir: Path) -> None:
    from inference.jobs import JobError

    with pytest.raises(JobError, match="never closed"):
        run_diffusion_batch(load(tiny_model_dir), [prepare(job("a (red fox"))], lambda *_: True)


@pytest.mark.parametrize("family", ["sd", "sdxl"])
def test_vary_and_paint_take_weighted_long_prompts(family: str, tiny_model_dir: Path, tiny_sdxl_dir: Path) -> None:
    from PIL import Image

    from inference.jobs import ImageToImageJob, InpaintJob
    from inference.prepare import PreparedJob

    model = load(tiny_sdxl_dir, "xl") if family == "sdxl" else load(tiny_model_dir)
    source = Image.new("RGB", (64, 64), (10, 120, 200))
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (32, 0, 64, 64))
    common = {"owner": 1, "prompt": "a (red:1.3) fox BREAK " + LONG, "negative_prompt": "[blurry]", "width": 64,
              "height": 64, "steps": 3, "guidance": 5.0, "seed": 2, "model": model.name, "strength": 0.8}
    vary = PreparedJob(ImageToImageJob(job_id="v", init_image="unused.png", **common), init_image=source,
                       mask_image=None)
    paint = PreparedJob(InpaintJob(job_id="p", init_image="unused.png", mask_image="unused.png", **common),
                        init_image=source, mask_image=mask)
    for prepared in (vary, paint):
        out = run_diffusion_batch(model, [prepared], lambda *_: True)
        assert out is not None and out[0].images[0].size == (64, 64)
