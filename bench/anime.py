"""Seconds per 512x512 image for the AnimeGAN2 generator on this machine's CPU.

Random weights (no download: the speed does not depend on the values). Run as
``python bench/anime.py``; the last line is JSON for scripts, e.g. ``{"anime_512_s": 1.4, ...}``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from inference.anime import Generator  # noqa: E402


def main(argv: list[str] | None = None) -> dict[str, float | int]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512, help="square image side in pixels (default 512)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs after one warm-up (default 5)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = Generator().eval()
    params = sum(p.numel() for p in model.parameters())
    image = torch.rand(1, 3, args.size, args.size) * 2 - 1
    times: list[float] = []
    with torch.inference_mode():
        model(image)  # warm-up: first-call allocations and kernel selection
        for run in range(1, args.runs + 1):
            started = time.perf_counter()
            model(image)
            times.append(time.perf_counter() - started)
            print(f"run {run}: {times[-1]:.3f} s")
    mean = statistics.fmean(times)
    print(f"AnimeGAN2 generator, {params:,} parameters, {args.size}x{args.size}, {args.threads} threads: "
          f"{mean:.3f} s per image (min {min(times):.3f} s)")
    result: dict[str, float | int] = {f"anime_{args.size}_s": round(mean, 3), "min_s": round(min(times), 3),
                                      "params": params, "threads": args.threads}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
