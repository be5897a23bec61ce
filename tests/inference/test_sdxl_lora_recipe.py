"""A speed LoRA with a recipe on SDXL (the Hyper-SD shape: fused, its own steps, guidance and sampler):
the model draws what diffusers draws after ``load_lora_weights`` + ``fuse_lora`` + the same scheduler."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from config import DeviceConfig, LoraConfig, LoraRecipe, ModelConfig
from inference.generate import run_diffusion_batch
from inference.loader import load_model
from inference.prepare import PreparedJob
from inference.validation import build_imagine, describe_model

PROMPT = "a photo of a red fox"


def test_a_fused_sdxl_lora_with_its_recipe_draws_what_diffusers_draws(tiny_sdxl_dir: Path,
                                                                      tiny_sdxl_lora: Path) -> None:
    from diffusers import DDIMScheduler, StableDiffusionXLPipeline

    lora = LoraConfig(name="hyper", source=str(tiny_sdxl_lora), weight=0.8, fuse=True,
                      recipe=LoraRecipe(steps=3, guidance=0.0, scheduler="ddim"))
    cfg = ModelConfig(source=str(tiny_sdxl_dir), name="xl", size=64, min_size=64, max_size=128, loras=(lora,))
    model = load_model(cfg, DeviceConfig(device="cpu"))
    job = build_imagine("j", 1, describe_model(cfg, model.preset, model.tokenizer), prompt=PROMPT, seed=9).job
    assert (job.steps, job.guidance, job.scheduler, job.loras) == (3, 0.0, "ddim", ())
    results = run_diffusion_batch(model, [PreparedJob(job)], lambda *_: True)
    assert results is not None
    ours = np.asarray(results[0].images[0], dtype=np.int16)

    pipe = StableDiffusionXLPipeline.from_pretrained(tiny_sdxl_dir)
    plain = pipe(PROMPT, num_inference_steps=3, guidance_scale=0.0, width=64, height=64,
                 generator=torch.Generator().manual_seed(9)).images[0]
    pipe.load_lora_weights(str(tiny_sdxl_lora))
    pipe.fuse_lora(lora_scale=0.8)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe(PROMPT, num_inference_steps=3, guidance_scale=0.0, width=64, height=64,
                  generator=torch.Generator().manual_seed(9)).images[0]
    assert np.abs(ours - np.asarray(theirs, dtype=np.int16)).max() <= 1
    assert np.abs(ours - np.asarray(plain, dtype=np.int16)).mean() > 2.0  # the LoRA and sampler do draw
