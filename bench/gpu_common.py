"""What bench/gpu.py's sections share: the plan (full or dry run), the time budget, a config per
model, and a runner that sends jobs through easel's own GPU executor."""

from __future__ import annotations

import dataclasses
import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.engine import PROMPTS, t2i, write_config
from config import Config
from inference.executor import GpuExecutor
from inference.jobs import Finished, JobEvent, TextToImageJob
from inference.prepare import PreparedJob


@dataclass(frozen=True)
class Plan:
    """Sizes, steps and batches of one run: the real measurement on a GPU, or the dry run's tiny one."""

    dry: bool
    device: str
    dtype: str
    sd15_size: int = 512
    sd15_steps: int = 50
    sd15_batches: tuple[int, ...] = (1, 4, 8)
    repeats: int = 2  # timed calls per figure, after one untimed call at that shape
    correctness_steps: int = 8
    cancel_steps: int = 50
    oom_batch: int = 16
    oom_headroom_mib: int = 1536  # CUDA: the allocator is capped this far above what the model holds
    turbo_size: int = 512
    turbo_batches: tuple[int, ...] = (1, 4, 16)
    turbo_jobs: int = 64
    sdxl_size: int = 1024
    sdxl_steps: int = 30
    threads: int = 0
    out: str = ""  # where files beside the JSON go (the profile); "" = nowhere
    budget_s: float = 470.0  # the whole run; the GPU machine gives a command 10 minutes
    # Per section: its share of the budget (the rest of the run's budget caps it too).
    sections: dict[str, float] = dataclasses.field(default_factory=lambda: {
        "correctness": 50.0, "sd15": 110.0, "compile": 160.0, "turbo": 110.0, "sdxl": 45.0, "switch": 15.0,
        "drafts": 50.0})

    @property
    def torch_dtype(self) -> torch.dtype:
        return getattr(torch, self.dtype)


FULL = Plan(dry=False, device="cuda", dtype="float16")
DRY = Plan(dry=True, device="cpu", dtype="float32", sd15_size=64, sd15_steps=4, sd15_batches=(1, 2, 4), repeats=1,
           correctness_steps=3, budget_s=280.0, cancel_steps=50, oom_batch=4, turbo_size=64, turbo_batches=(1, 4, 16), turbo_jobs=16,
           sdxl_size=64, sdxl_steps=3, threads=1,
           sections={"correctness": 40.0, "sd15": 40.0, "compile": 200.0, "turbo": 60.0, "sdxl": 15.0, "switch": 15.0,
                     "drafts": 30.0})


class Budget:
    """Seconds left for a section: a step that would not fit is skipped and named in ``skipped``."""

    def __init__(self, seconds: float) -> None:
        self.end = time.perf_counter() + seconds
        self.skipped: list[str] = []

    def left(self) -> float:
        return self.end - time.perf_counter()

    def allows(self, what: str, estimate_s: float) -> bool:
        if self.left() > estimate_s:
            return True
        self.skipped.append(f"{what} (needs ~{estimate_s:.0f} s, {max(0.0, self.left()):.0f} s left)")
        print(f"  skipped {what}: out of time", flush=True)
        return False


def model_config(plan: Plan, work: Path, folder: Path, *, family: str, size: int, steps: int, guidance: float,
                 max_batch: int = 8, jobs: int = 64, **device: Any) -> Config:
    """An easel config serving ``folder`` as ``family`` on the plan's device, with ``device`` options changed."""
    config = write_config(work, folder, name=family, family=family, size=size, steps=steps, guidance=guidance,
                          device=plan.device, dtype=plan.dtype, threads=plan.threads, max_batch=max_batch,
                          per_user=jobs, total=jobs)
    return dataclasses.replace(config, device=dataclasses.replace(config.device, previews=False, **device))


def jobs_for(config: Config, n: int, *, seed: int = 0, steps: int | None = None,
             prefix: str = "j") -> list[TextToImageJob]:
    m = config.model
    return [t2i(f"{prefix}{seed + i}", size=m.size, steps=steps or m.steps, guidance=m.guidance, seed=seed + i,
                model=m.display_name, prompt=PROMPTS[i % len(PROMPTS)]) for i in range(n)]


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def free(device: str) -> None:
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


class Runner:
    """One :class:`GpuExecutor` serving one config: jobs go in through ``run_batch``, as the engine sends them."""

    def __init__(self, config: Config, *, progress_interval_s: float | None = None) -> None:
        kwargs = {} if progress_interval_s is None else {"progress_interval_s": progress_interval_s}
        self.config = config
        self.executor = GpuExecutor(config, **kwargs)

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.executor.shutdown()
        del self.executor  # its models go with it, so the next section starts with the GPU's memory free
        free(self.config.device.device)

    def load(self) -> float:
        """Seconds to load the model from disk onto the device, on the GPU thread."""
        started = time.perf_counter()
        self.executor.submit(self.model).result()
        return time.perf_counter() - started

    def model(self) -> Any:
        model = self.executor.model("")
        sync(self.config.device.device)
        return model

    def run(self, jobs: list[TextToImageJob], emit: Callable[[JobEvent], None] | None = None) -> tuple[float, list[Any]]:
        """(seconds, outcomes) of one batch, from hand-over to its outcomes (images decoded to PIL)."""
        started = time.perf_counter()
        outcomes = self.executor.run_batch([PreparedJob(j) for j in jobs], emit or (lambda _e: None)).result(timeout=900)
        return time.perf_counter() - started, outcomes

    def s_per_image(self, jobs: list[TextToImageJob], repeats: int) -> float:
        """Median seconds per image of ``repeats`` batch calls, after one untimed call at this shape.
        Raises when a job did not finish (the executor's log says why)."""
        images_of(self.run(jobs)[1])
        times = []
        for _ in range(repeats):
            seconds, outcomes = self.run(jobs)
            images_of(outcomes)
            times.append(seconds)
        return statistics.median(times) / len(jobs)


def images_of(outcomes: list[Any]) -> list[np.ndarray]:
    bad = [o for o in outcomes if not isinstance(o, Finished)]
    if bad:
        raise RuntimeError(f"a job did not finish (the log above has the executor's reason): {bad[0]}")
    return [np.asarray(o.result.images[0], np.int16) for o in outcomes]


def max_diff(a: list[np.ndarray], b: list[np.ndarray]) -> int:
    return max(int(np.abs(x - y).max()) for x, y in zip(a, b, strict=True))
