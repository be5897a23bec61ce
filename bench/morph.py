"""Seconds per morph of 8 frames at 64 px on the tiny model: frames batched vs one by one.

The frames' torch work as the GPU thread runs it (``inference.morph.run_morph``, the model loaded
by the production loader), for a prompt morph (4 steps) and a strength sweep 0.1-0.9 (steps raised
so every frame differs: 10 for 8 frames), each with one frame per pipeline call and with
``--batches`` frames per call, alternating round by round (this machine's speed drifts), medians
reported. A batched sweep also computes placeholder rows until its frames of lower strength join
(inference/morph.py). Random weights, no download. ``python bench/morph.py``; the last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from PIL import Image  # noqa: E402

from config import DeviceConfig, ModelConfig  # noqa: E402
from inference.jobs import MorphJob  # noqa: E402
from inference.loader import load_model  # noqa: E402
from inference.morph import run_morph  # noqa: E402
from inference.morph_plan import distinct_starts  # noqa: E402
from inference.prepare import prepare  # noqa: E402


def timed(model: object, job: MorphJob, batch: int) -> float:
    started = time.perf_counter()
    result = run_morph(model, prepare(job), lambda: True, lambda *_: None, batch=batch)  # type: ignore[arg-type]
    assert result is not None and len(result.images) == job.frames
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=4, help="steps of the prompt morph (default 4)")
    parser.add_argument("--batches", default="4,8", help="frames per call when batched (default 4,8)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    batches = [1, *(int(b) for b in args.batches.split(","))]

    from tests.fixtures.tiny_models import ensure_tiny_sd

    with tempfile.TemporaryDirectory() as work_dir:
        work = Path(work_dir)
        source = ensure_tiny_sd(work / "tiny-sd")
        model = load_model(ModelConfig(source=str(source), name="tiny", size=args.size, min_size=64,
                                       max_steps=50), DeviceConfig(device="cpu"))
        image = work / "source.png"
        Image.effect_mandelbrot((args.size, args.size), (-2, -1.5, 1, 1.5), 100).convert("RGB").save(image)
        sweep_steps = distinct_starts(args.steps, 0.1, 0.9, args.frames, 50)
        jobs = {
            "prompt_morph": MorphJob(job_id="p", owner=1, prompt="a red fox", to_prompt="a blue owl at night",
                                     width=args.size, height=args.size, steps=args.steps, frames=args.frames, seed=3,
                                     model="tiny"),
            "strength_sweep": MorphJob(job_id="s", owner=1, prompt="a red fox", init_image=str(image), width=args.size,
                                       height=args.size, steps=sweep_steps, frames=args.frames, seed=3, model="tiny"),
        }
        for job in jobs.values():  # warm-up: first-call allocations at every batch size
            for batch in batches:
                timed(model, job, batch)
        times: dict[tuple[str, int], list[float]] = {(k, b): [] for k in jobs for b in batches}
        for round_ in range(1, args.rounds + 1):
            for (kind, batch), found in times.items():  # alternating, round by round
                found.append(timed(model, jobs[kind], batch))
            print(f"round {round_}: " + ", ".join(f"{k} by {b} {t[-1]:.3f} s" for (k, b), t in times.items()))
    result: dict[str, object] = {"frames": args.frames, "size": args.size, "threads": args.threads,
                                 "prompt_morph_steps": args.steps, "strength_sweep_steps": sweep_steps}
    for kind in jobs:
        one = statistics.median(times[(kind, 1)])
        result[f"{kind}_one_by_one_s"] = round(one, 4)
        line = [f"{kind}: {one:.3f} s one by one"]
        for batch in batches[1:]:
            together = statistics.median(times[(kind, batch)])
            result[f"{kind}_batched_{batch}_s"] = round(together, 4)
            line.append(f"{together:.3f} s batched by {batch} ({one / together:.2f}x)")
        print(f"{args.frames} frames at {args.size} px, {args.threads} thread(s), " + ", ".join(line))
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
