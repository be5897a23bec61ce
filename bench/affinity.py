"""Model affinity: a mixed backlog from several members on two models, one kept loaded at a time.

The tiny SD model under two names, ``device.resident_models = 1`` (a switch loads from disk, as a
GPU too small for two models would), ``queue.max_batch = 1``; the same backlog (seeded, each member
asking for either model at random) runs through the whole engine once with ``queue.affinity_skips = 0``
(the plain fair order) and once with the configured bound. Reported: model switches, seconds for
the backlog, and how far any job started behind its place in the plain fair order (the fairness cost).
``python bench/affinity.py``; the last line is JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from config import Config, DeviceConfig, ModelConfig, QueueConfig  # noqa: E402
from inference.engine import Engine  # noqa: E402
from inference.executor import GpuExecutor  # noqa: E402
from inference.jobs import Finished, JobEvent, Started, TextToImageJob  # noqa: E402


def backlog(members: int, jobs: int, seed: int) -> list[TextToImageJob]:
    rng = random.Random(seed)
    return [TextToImageJob(job_id=f"j{i:03d}", owner=1 + i % members, prompt="a lighthouse", width=64, height=64,
                           steps=4, seed=i, model=rng.choice(("a", "b"))) for i in range(jobs)]


async def run(config: Config, jobs: list[TextToImageJob]) -> tuple[list[str], int, float]:
    """(the order jobs started, model switches, seconds from submitting to the last result)."""
    executor = GpuExecutor(config)
    engine = Engine(config, executor)
    started: list[str] = []
    done: set[str] = set()
    finished = asyncio.Event()

    def listen(event: JobEvent) -> None:
        if isinstance(event, Started):
            started.append(event.job_id)
        elif isinstance(event, Finished):
            done.add(event.job_id)
            if len(done) == len(jobs):
                finished.set()

    engine.add_listener(listen)
    await engine.start(warm_up=False)
    try:
        before = len(executor.model_switches())
        began = time.perf_counter()
        for job in jobs:
            engine.submit(job)
        await asyncio.wait_for(finished.wait(), 600)
        return started, len(executor.model_switches()) - before, time.perf_counter() - began
    finally:
        await engine.stop()


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--jobs", type=int, default=24)
    parser.add_argument("--skips", type=int, default=2, help="queue.affinity_skips of the affinity run")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from tests.fixtures.tiny_models import ensure_tiny_sd

    with tempfile.TemporaryDirectory() as work_dir:
        source = str(ensure_tiny_sd(Path(work_dir) / "tiny-sd"))
        first = ModelConfig(source=source, name="a", family="sd15")
        base = Config(model=first, models=(dataclasses.replace(first, name="b"),),
                      device=DeviceConfig(device="cpu", previews=False, pin_threads=False, resident_models=1),
                      queue=QueueConfig(max_batch=1, per_user=args.jobs, total=args.jobs * 2),
                      base_dir=Path(work_dir))
        jobs = backlog(args.members, args.jobs, args.seed)
        runs = {}
        for skips in (0, args.skips):
            config = dataclasses.replace(base, queue=dataclasses.replace(base.queue, affinity_skips=skips))
            runs[skips] = asyncio.run(run(config, jobs))
    fair_order, fair_switches, fair_s = runs[0]
    order, switches, seconds = runs[args.skips]
    behind = max(order.index(job_id) - fair_order.index(job_id) for job_id in fair_order)
    result = {"jobs": args.jobs, "members": args.members, "affinity_skips": args.skips,
              "switches_fair": fair_switches, "switches_affinity": switches,
              "seconds_fair": round(fair_s, 3), "seconds_affinity": round(seconds, 3),
              "speedup": round(fair_s / seconds, 3), "most_places_behind_fair_order": behind}
    print(f"{args.jobs} jobs, {args.members} members, two models, one loaded: {fair_switches} switches "
          f"in {fair_s:.2f} s in fair order, {switches} in {seconds:.2f} s with affinity_skips={args.skips}; "
          f"a job started at most {behind} places behind its fair place")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
