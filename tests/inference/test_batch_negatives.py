"""A job without a negative prompt never shares a pipeline call with one that has one: SDXL draws an
absent negative as zero embeddings and an empty one ("", what a shared call gives it) as the encoding
of "", so its picture would change with its companions (and differ from its Redo)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from config import DeviceConfig, ModelConfig
from inference.generate import run_diffusion_batch
from inference.jobs import TextToImageJob
from inference.loader import load_model
from inference.prepare import prepare


def job(job_id: str, negative: str = "") -> TextToImageJob:
    return TextToImageJob(job_id=job_id, owner=1, prompt="a castle", negative_prompt=negative, width=64, height=64,
                          steps=2, guidance=5.0, seed=3, model="xl")


def test_a_job_without_a_negative_does_not_batch_with_one_that_has_one() -> None:
    assert job("a").batch_key() != job("b", negative="blurry").batch_key()
    assert job("a").batch_key() == job("b").batch_key()


def test_on_sdxl_the_shared_call_would_have_changed_the_picture(tiny_sdxl_dir: Path) -> None:
    """Why the key holds it: the same job alone and in a call with a negative-prompt job differ."""
    model = load_model(ModelConfig(source=str(tiny_sdxl_dir), name="xl"), DeviceConfig(device="cpu"))
    alone = run_diffusion_batch(model, [prepare(job("a"))], lambda *_: True)
    shared = run_diffusion_batch(model, [prepare(job("a")), prepare(job("b", negative="blurry"))], lambda *_: True)
    assert alone is not None and shared is not None
    a = np.asarray(alone[0].images[0], dtype=np.int16)
    b = np.asarray(shared[0].images[0], dtype=np.int16)
    assert np.abs(a - b).max() > 2
