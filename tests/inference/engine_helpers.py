"""Helpers shared by the engine pipelining and fast-path tests."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from typing import Any

from PIL import Image

from config import Config
from inference.engine import Engine
from inference.executor import GpuExecutor
from inference.jobs import Failed, Finished, JobEvent, JobResult, TextToImageJob
from inference.prepare import PreparedJob

GUARD_S = 30.0  # how long a gate waits before the test gives up (never reached when the engine is right)


def t2i(job_id: str, owner: int = 1, **kw: Any) -> TextToImageJob:
    params: dict[str, Any] = {"prompt": "a photo of a fox", "width": 64, "height": 64, "steps": 3, "guidance": 0.0,
                              "model": "tiny", "seed": 1}
    params.update(kw)
    return TextToImageJob(job_id=job_id, owner=owner, **params)


def wait_until(check: Callable[[], bool], guard: float = GUARD_S) -> bool:
    """Poll ``check`` on the calling thread; False if the guard ran out."""
    deadline = time.monotonic() + guard
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


class Outcomes:
    def __init__(self) -> None:
        self.events: dict[str, asyncio.Future[JobEvent]] = {}

    def __call__(self, event: JobEvent) -> None:
        if isinstance(event, Finished | Failed):
            self.future(event.job_id).set_result(event)

    def future(self, job_id: str) -> asyncio.Future[JobEvent]:
        return self.events.setdefault(job_id, asyncio.get_running_loop().create_future())

    async def get(self, job_id: str) -> JobEvent:
        return await asyncio.wait_for(self.future(job_id), GUARD_S * 2)


async def started_engine(config: Config) -> tuple[Engine, Outcomes]:
    engine = Engine(config, GpuExecutor(config))
    outcomes = Outcomes()
    engine.add_listener(outcomes)
    await engine.start(warm_up=False)
    return engine, outcomes


def queue_config(config: Config, **changes: Any) -> Config:
    return dataclasses.replace(config, queue=dataclasses.replace(config.queue, **changes))


def fake_runner(calls: list[int], alone_s: float, batched_s: float) -> Callable[..., list[JobResult]]:
    """Stands in for ``run_diffusion_batch`` with made-up timings (seconds per image)."""

    def run(model: Any, batch: list[PreparedJob], on_step: Any) -> list[JobResult]:
        calls.append(len(batch))
        per_image = alone_s if len(batch) == 1 else batched_s
        return [JobResult(p.job.job_id, tuple(Image.new("RGB", (8, 8)) for _ in p.job.seeds), p.job.seeds,  # type: ignore[attr-defined]
                          per_image * len(p.job.seeds)) for p in batch]  # type: ignore[attr-defined]

    return run
