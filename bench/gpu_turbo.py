"""bench/gpu.py section 3: SD-Turbo and SDXL-Turbo, 1 step, through the whole bot minus Discord
(bench/throughput.py's two bots and upload sink) against raw pipeline calls, at each max batch."""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from typing import Any

from bench.gpu_common import Budget, Plan, free, model_config
from bench.gpu_models import Models
from bench.throughput import measure

USERS = 5
UPLOAD_MS = 50.0


def turbo(plan: Plan, models: Models, work: Path, budget: Budget, out: dict[str, Any]) -> None:
    """Images/s served by the bot and by raw calls per model and max batch; ``throughput_ratio_vs_raw``
    is the lowest bot/raw ratio of SD-Turbo's runs (the shortest jobs, where the bot's own cost shows most)."""
    one_run_s = 0.0  # the last run's seconds: the estimate for the next
    for family in ("sd-turbo", "sdxl-turbo"):
        folder = models.folder(family)
        for batch in plan.turbo_batches:
            label = f"{family}/batch{batch}"
            if not budget.allows(label, one_run_s):
                continue
            config = model_config(plan, work / family / f"b{batch}", folder, family=family, size=plan.turbo_size,
                                  steps=1, guidance=0.0, max_batch=batch, jobs=plan.turbo_jobs)
            args = argparse.Namespace(rounds=1, max_batch=batch, upload_ms=UPLOAD_MS, users=USERS)
            t0 = time.perf_counter()
            row = asyncio.run(measure(config, args, work / family / f"b{batch}", size=plan.turbo_size, steps=1,
                                      guidance=0.0, jobs_n=plan.turbo_jobs))[0]
            one_run_s = time.perf_counter() - t0
            free(plan.device)  # the three copies of the model (two bots, raw calls) this run loaded
            out[f"{label}/bot_images_per_s"] = round(row["jobs_per_s"], 3)
            out[f"{label}/raw_images_per_s"] = round(row["raw_jobs_per_s"], 3)
            out[f"{label}/throughput_ratio_vs_raw"] = round(row["throughput_ratio_vs_raw"], 4)
            out[f"{label}/busy_fraction"] = round(row["busy_fraction"], 4)
            out[f"{label}/p95_latency_s"] = round(row["p95_latency_s"], 3)
    ratios = [v for k, v in out.items() if k.startswith("sd-turbo/") and k.endswith("throughput_ratio_vs_raw")]
    if ratios:
        out["throughput_ratio_vs_raw"] = min(ratios)
    best = [v for k, v in out.items() if k.startswith("sd-turbo/") and k.endswith("bot_images_per_s")]
    if best:
        out["sd_turbo_images_per_s"] = max(best)
