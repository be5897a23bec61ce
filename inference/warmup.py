"""The start-up warm-up, on the GPU thread: the first member pays for no lazy start, and the
batching policy starts with measured figures for the default shape."""

from __future__ import annotations

import logging
import time
from typing import Any

from inference.jobs import Job, TextToImageJob
from inference.prepare import PreparedJob

log = logging.getLogger(__name__)

Measurement = tuple[Job, int, float]  # (job, jobs in the call, seconds per image)

# Measuring batching at start-up costs one single and one batched run of the default shape; skip
# it (the policy then measures on real jobs) when that would delay start-up by more than this.
CALIBRATION_BUDGET_S = 15.0
RETIME_BELOW_S = 2.0  # a first run slower than the budget allows is timed again only if it was this cheap


def warm_up_model(executor: Any, max_batch: int, compiled: bool) -> list[Measurement]:
    """On the GPU thread: one 1-step generation per warm-up size, so the first member pays for
    neither lazy initialisation nor (with ``device.compile``) a compilation; then, when cheap
    enough, one single and one batched run of the default shape for the batching policy."""
    from inference.generate import warm_up_sizes

    model = executor.model("")
    preset = model.preset
    size, steps, n = preset.size, preset.steps, max_batch
    timings = [timed_run(model, [probe_job(model, width, height, 1)])
               for width, height in warm_up_sizes(preset, compiled=compiled)]
    if n <= 1:
        return []
    one_step = timings[0]  # the default size comes first; this run included the lazy start
    if one_step * steps * (1 + n) > CALIBRATION_BUDGET_S and one_step < RETIME_BELOW_S:
        one_step = timed_run(model, [probe_job(model, size, size, 1)])
    if one_step * steps * (1 + n) > CALIBRATION_BUDGET_S:
        log.info("batching for %s will be measured on the first jobs (measuring now would take ~%.0f s)",
                 model.name, one_step * steps * (1 + n))
        return []
    batch = [probe_job(model, size, size, steps, seed) for seed in range(n)]
    if compiled:
        timed_run(model, batch)  # a new batch shape compiles first
    single = timed_run(model, batch[:1])
    batched = timed_run(model, batch) / n
    log.info("batching %s at %d px: %.3f s per image alone, %.3f s in a batch of %d", model.name, size,
             single, batched, n)
    return [(batch[0], 1, single), (batch[0], n, batched)]


def probe_job(model: Any, width: int, height: int, steps: int, seed: int = 0) -> TextToImageJob:
    return TextToImageJob(job_id=f"warmup{seed}", owner=0, prompt="a photo of a house", width=width,
                          height=height, steps=steps, guidance=model.preset.guidance, model=model.name, seed=seed)


def timed_run(model: Any, jobs: list[TextToImageJob]) -> float:
    from inference.generate import run_diffusion_batch

    started = time.perf_counter()
    run_diffusion_batch(model, [PreparedJob(job) for job in jobs], lambda *_: True)
    return time.perf_counter() - started
