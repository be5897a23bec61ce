"""Seconds per morph of 8 frames at 64 px on the tiny model: frames batched vs one by one.

The frames' torch work as the GPU thread runs it (``inference.morph.run_morph``, the model loaded
by the production loader): a prompt morph with its frames ``--batch`` per pipeline call against
one frame per call, alternating round by round (this machine's speed drifts), medians reported;
and a strength sweep, whose frames always run one call each (a diffusers image-to-image call takes
one strength). Random weights, no download. ``python bench/morph.py``; the last line is JSON.
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
    parser.add_argument("--batch", type=int, default=8, help="frames per call when batched (default 8)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from tests.fixtures.tiny_models import ensure_tiny_sd

    with tempfile.TemporaryDirectory() as work_dir:
        work = Path(work_dir)
        source = ensure_tiny_sd(work / "tiny-sd")
        model = load_model(ModelConfig(source=str(source), name="tiny", size=args.size, min_size=64,
                                       max_steps=50), DeviceConfig(device="cpu"))
        image = work / "source.png"
        Image.effect_mandelbrot((args.size, args.size), (-2, -1.5, 1, 1.5), 100).convert("RGB").save(image)
        prompt = MorphJob(job_id="p", owner=1, prompt="a red fox", to_prompt="a blue owl at night", width=args.size,
                          height=args.size, steps=args.steps, frames=args.frames, seed=3, model="tiny")
        sweep_steps = distinct_starts(args.steps, 0.1, 0.9, args.frames, 50)
        sweep = MorphJob(job_id="s", owner=1, prompt="a red fox", init_image=str(image), width=args.size,
                         height=args.size, steps=sweep_steps, frames=args.frames, seed=3, model="tiny")
        for batch in (1, args.batch):  # warm-up: first-call allocations at both batch sizes
            timed(model, prompt, batch)
        timed(model, sweep, 1)
        one: list[float] = []
        batched: list[float] = []
        sweeps: list[float] = []
        for round_ in range(1, args.rounds + 1):
            one.append(timed(model, prompt, 1))
            batched.append(timed(model, prompt, args.batch))
            sweeps.append(timed(model, sweep, 1))
            print(f"round {round_}: prompt morph one by one {one[-1]:.3f} s, batched by {args.batch} "
                  f"{batched[-1]:.3f} s; strength sweep ({sweep_steps} steps) {sweeps[-1]:.3f} s")
    single_s, batched_s, sweep_s = (statistics.median(x) for x in (one, batched, sweeps))
    print(f"{args.frames} frames at {args.size} px, {args.steps} steps, {args.threads} thread(s): prompt morph "
          f"{single_s:.3f} s one by one, {batched_s:.3f} s batched by {args.batch} ({single_s / batched_s:.2f}x); "
          f"strength sweep {sweep_s:.3f} s ({sweep_steps} steps, one frame per call)")
    result: dict[str, object] = {
        "frames": args.frames, "size": args.size, "steps": args.steps, "threads": args.threads, "batch": args.batch,
        "prompt_morph_one_by_one_s": round(single_s, 4), "prompt_morph_batched_s": round(batched_s, 4),
        "batching_gain": round(single_s / batched_s, 3), "strength_sweep_s": round(sweep_s, 4),
        "strength_sweep_steps": sweep_steps,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
