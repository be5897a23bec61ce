"""``python bot.py --check``: load the configured model on its device and make one small image;
fetch missing AnimeGAN2 weights and say which styles are ready."""

from __future__ import annotations

import time
from dataclasses import dataclass

from config import Config
from inference.anime.weights import WeightStore
from inference.generate import run_diffusion_batch
from inference.jobs import TextToImageJob
from inference.loader import load_model
from inference.prepare import PreparedJob


@dataclass(frozen=True)
class CheckReport:
    device: str
    dtype: str
    model: str
    family: str
    source: str
    load_s: float
    image_size: tuple[int, int]
    steps: int
    generate_s: float


def run_check(config: Config) -> CheckReport:
    """Raises ModelLoadError (one clear line) when the model cannot be loaded."""
    started = time.perf_counter()
    model = load_model(config.model, config.device, config.base_dir)
    loaded = time.perf_counter()
    side = model.preset.min_size
    steps = min(model.preset.steps, 2)
    job = TextToImageJob(job_id="check", owner=0, prompt="a lighthouse on a cliff at sunset", width=side,
                         height=side, steps=steps, guidance=model.preset.guidance, seed=1, model=model.name)
    results = run_diffusion_batch(model, [PreparedJob(job)], lambda *_: True)
    assert results is not None and results[0].images[0].size == (side, side)
    done = time.perf_counter()
    return CheckReport(device=str(model.device), dtype=str(model.dtype).removeprefix("torch."), model=model.name,
                       family=model.family, source=model.source, load_s=loaded - started, image_size=(side, side),
                       steps=steps, generate_s=done - loaded)


@dataclass(frozen=True)
class AnimeReport:
    ready: tuple[str, ...]
    problems: tuple[str, ...]  # for the admin, one per style that is not ready: where its file goes, the fix


def check_anime(config: Config, store: WeightStore | None = None) -> AnimeReport:
    """Fetch the styles whose weights are missing (unless ``anime.download`` is off; this blocks, which
    is what ``--check`` is for) and report which are ready."""
    outcome = (store or WeightStore.from_config(config)).fetch_missing()
    return AnimeReport(ready=tuple(style for style, problem in outcome.items() if problem is None),
                       problems=tuple(problem for problem in outcome.values() if problem is not None))
