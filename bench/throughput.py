"""Bench: N jobs from several members through the whole bot except Discord, against raw pipeline calls.

    python bench/throughput.py [--jobs 50] [--users 5] [--size 64] [--steps 4] [--threads 1] [--rounds 15]

Each member submits their share of the jobs at once through the studio, exactly as the cogs do:
the job is committed to a temporary SQLite job log, queued fairly, run on the GPU thread, its PNG
encoded with its parameters on a helper thread, saved, and recorded as done. Discord is replaced
by a sink that "uploads" each result by sleeping ``--upload-ms`` (asynchronously, like an HTTP
call) and then marks the job delivered in the job log. Two bots, batching on and off
(``max_batch = 1``), stay up across rounds, so "batching never lowers throughput" can be checked.
The same N jobs also run as plain diffusers calls under ``torch.inference_mode()``, in batches of
``--max-batch`` right before and after the batching-on bot and one by one right before and after
the batching-off bot (the machine's speed drifts: the mean of the two is used); the faster way is
the ceiling.

Figures per round: jobs/s served (first submit -> last result stored), jobs/s posted (-> last
upload done), p50/p95 latency submit -> posted, the GPU thread's busy fraction while the backlog
lasted and its on-CPU share of that time (``GpuExecutor.busy_stats``). Every run uses
the same ``torch.set_num_threads``. On CUDA (or ``--sd15 cpu``) a random full-size SD 1.5 is also
served with SD-Turbo-like settings (512 px, 1 step, no guidance). The last line is one JSON object
(medians over rounds). See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from bench.engine import (  # noqa: E402  (sets the offline environment before diffusers loads)
    CACHE,
    PROMPTS,
    choose_sd15_device,
    ensure_sd15_random,
    raw_call,
    t2i,
    tiny_model,
    with_queue,
    write_config,
)
from bench.threads import ThreadCounters, per_job, process_cpu_s  # noqa: E402
from config import Config  # noqa: E402
from inference.engine import Engine  # noqa: E402
from inference.executor import GpuExecutor  # noqa: E402
from inference.jobs import JobKind, TextToImageJob  # noqa: E402
from studio import JobDone, JobFailed, RequestContext, Studio, StudioEvent  # noqa: E402


@dataclass(frozen=True)
class EngineRun:
    label: str
    served_s: float
    posted_s: float
    latencies: list[float]
    busy_fraction: float
    batches: int
    jobs: int
    on_cpu_fraction: float  # of the GPU thread's time inside batches (BusyStats.on_cpu_fraction)
    gpu_span_s: float  # first batch start -> last batch end (BusyStats.wall_s)
    threads: dict[str, float]  # bench/threads.py: GPU-thread sleeps and other threads' CPU, per job

    @property
    def jobs_per_s(self) -> float:
        return self.jobs / self.served_s

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def make_jobs(n: int, users: int, *, size: int, steps: int, guidance: float, model: str,
              prefix: str = "") -> list[TextToImageJob]:
    """``n`` compatible jobs, members taking turns; each has its own prompt and seed."""
    return [t2i(f"{prefix}job{i:04d}", size=size, steps=steps, guidance=guidance, seed=1000 + i, owner=100 + i % users,
                model=model, prompt=PROMPTS[i % len(PROMPTS)]) for i in range(n)]


def raw_seconds(pipe: Any, jobs: list[TextToImageJob], batch: int, cores: frozenset[int] | None = None) -> float:
    """Pure compute time of the jobs as plain pipeline calls of ``batch`` jobs each (fair order kept),
    on ``cores`` (the bots' GPU thread's, when placement gave it cores of its own) or where this thread is."""
    before = os.sched_getaffinity(0) if cores else None
    if cores:
        os.sched_setaffinity(0, cores)
    try:
        raw_call(pipe, jobs[:batch])  # one untimed call at this shape
        return sum(raw_call(pipe, jobs[i:i + batch])[0] for i in range(0, len(jobs), batch))
    finally:
        if before is not None:
            os.sched_setaffinity(0, before)


class UploadSink:
    """Stands in for the Discord poster (cogs/delivery.py): a plain listener that leaves progress
    events alone and spawns an "upload" per result, which sleeps like one and then marks the job
    delivered in the job log. :meth:`expect` starts a new backlog."""

    def __init__(self, studio: Studio, upload_s: float) -> None:
        self.studio = studio
        self.upload_s = upload_s
        self._tasks: set[asyncio.Task[None]] = set()
        self.on_posted: Callable[[str], None] | None = None  # called with each job id once it is posted
        self.expect(0)

    def expect(self, jobs: int) -> None:
        self.expected = jobs
        self.stored: dict[str, float] = {}
        self.posted: dict[str, float] = {}
        self.failures: list[str] = []
        self.all_posted = asyncio.Event()

    def __call__(self, event: StudioEvent) -> None:
        if isinstance(event, JobFailed):
            self.failures.append(f"{event.job_id}: {event.message}")
            self.all_posted.set()
        elif isinstance(event, JobDone):
            self.stored[event.job_id] = time.perf_counter()
            task = asyncio.get_running_loop().create_task(self._post(event))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _post(self, event: JobDone) -> None:
        """The job-log work of ``Delivery.deliver``, trip for trip: a result recorded claimed for
        the poster (``Studio.claim_for_posting``, as the Delivery cog asks) comes with its row and
        images; otherwise claim + read them. Then "upload", then delivered + the images' message id."""
        db = self.studio.database
        if event.row is None:
            claimed, _row, _images = await asyncio.gather(
                db.jobs.begin_delivery(event.job_id), db.jobs.get(event.job_id), db.images.for_job(event.job_id))
            if not claimed:
                self.failures.append(f"{event.job_id}: delivered twice")
        await asyncio.sleep(self.upload_s)
        message_id = len(self.posted) + 1
        await asyncio.gather(db.jobs.mark_delivered(event.job_id, channel_id=1, message_id=message_id),
                             db.images.set_message(event.job_id, message_id))
        self.posted[event.job_id] = time.perf_counter()
        if self.on_posted is not None:
            self.on_posted(event.job_id)
        if len(self.posted) >= self.expected:
            self.all_posted.set()


class Bot:
    """One studio (job log, engine, encoder) and its upload sink, started once and fed backlog after
    backlog, like a bot that has been up for a while."""

    def __init__(self, config: Config, upload_s: float, label: str) -> None:
        self.studio = Studio(config, engine=Engine(config, GpuExecutor(config)))
        self.studio.claim_for_posting = True  # as cogs/delivery.py does
        self.sink = UploadSink(self.studio, upload_s)
        self.studio.add_listener(self.sink)
        self.label = label

    async def start(self) -> None:
        await self.studio.start(warm_up=True)

    async def close(self) -> None:
        await self.studio.close()

    async def serve(self, jobs: list[TextToImageJob]) -> EngineRun:
        """Every member submits their share of ``jobs`` at once; returns when every result is posted."""
        studio, sink = self.studio, self.sink
        sink.expect(len(jobs))
        studio.engine.executor.reset_busy_stats()
        submitted: dict[str, float] = {}

        async def member(own: list[TextToImageJob]) -> None:
            for job in own:
                submitted[job.job_id] = time.perf_counter()
                await studio.submit(job, RequestContext(user_id=job.owner, guild_id=1, channel_id=1))
                # As the Delivery cog records the status message shown for it (cogs/delivery.py _adopt).
                await studio.database.jobs.set_status_message(job.job_id, 1)

        owners = sorted({j.owner for j in jobs})
        counters = ThreadCounters.now()
        writer_pid = studio.png_writer.pid  # started with the studio
        writer_cpu = process_cpu_s(writer_pid)
        await asyncio.gather(*(member([j for j in jobs if j.owner == o]) for o in owners))
        await asyncio.wait_for(sink.all_posted.wait(), timeout=3600)
        if sink.failures:
            raise RuntimeError("; ".join(sink.failures[:3]))
        threads = per_job(counters, ThreadCounters.now(), len(jobs), studio.engine.executor.thread_ident)
        writer_cpu_after = process_cpu_s(studio.png_writer.pid)
        if writer_cpu is not None and writer_cpu_after is not None and studio.png_writer.pid == writer_pid:
            threads["png_writer_process_cpu_ms_per_job"] = (writer_cpu_after - writer_cpu) * 1000 / len(jobs)
        stats = studio.engine.executor.busy_stats()
        start = min(submitted.values())
        run = EngineRun(self.label, max(sink.stored.values()) - start, max(sink.posted.values()) - start,
                        [sink.posted[j] - submitted[j] for j in submitted], stats.fraction, stats.batches, len(jobs),
                        stats.on_cpu_fraction, stats.wall_s, threads)
        decided = ", ".join(f"{r['shape'][2]}px batching={'on' if r['batching'] else 'off'}"
                            for r in studio.engine.policy.summary() if r["batching"] is not None)
        print(f"  engine, {self.label:<12} {run.jobs_per_s:7.2f} jobs/s served, {run.jobs / run.posted_s:7.2f} posted, "
              f"p50 {run.percentile(0.5):.3f} s, p95 {run.percentile(0.95):.3f} s, busy {run.busy_fraction:.4f} "
              f"(on CPU {run.on_cpu_fraction:.3f}), outside batches {(run.served_s - run.gpu_span_s) * 1000:.0f} ms "
              f"({run.batches} batches{'; ' + decided if decided else ''})", flush=True)
        if threads:
            print("  " + " " * 22 + ", ".join(f"{k.replace('_', ' ')} {v:.2f}" for k, v in threads.items()), flush=True)
        return run


async def measure(config: Config, args: argparse.Namespace, work: Path, *, size: int, steps: int,
                  guidance: float, jobs_n: int) -> list[dict[str, float]]:
    """Rounds of: raw calls in batches, the bot with batching on, raw calls in batches again; raw
    calls one by one, the bot with batching off, raw one by one again. Each bot run is compared
    with the raw runs right around it (the machine's speed drifts over seconds when it is shared).
    The raw calls run on this thread while both bots sit idle."""
    from inference.loader import load_model

    pipe = load_model(config.model, config.device, config.base_dir).pipes[JobKind.IMAGINE]
    bots = {"on": Bot(_fresh(config, work / "on"), args.upload_ms / 1000, "batching on"),
            "off": Bot(with_queue(_fresh(config, work / "off"), max_batch=1), args.upload_ms / 1000, "batching off")}
    for bot in bots.values():
        await bot.start()
    placement = bots["on"].studio.engine.executor.placement
    cores = placement.plan.gpu if placement is not None else None
    results = []
    try:
        for r in range(args.rounds):
            print(f"round {r + 1}/{args.rounds}: {jobs_n} jobs from {args.users} members, {size} px, {steps} steps, "
                  f"{torch.get_num_threads()} torch thread(s)", flush=True)
            jobs = make_jobs(jobs_n, args.users, size=size, steps=steps, guidance=guidance,
                             model=config.model.display_name, prefix=f"r{r}-")
            batched = [jobs_n / raw_seconds(pipe, jobs, args.max_batch, cores)]
            on = await bots["on"].serve(jobs)
            batched.append(jobs_n / raw_seconds(pipe, jobs, args.max_batch, cores))
            single = [jobs_n / raw_seconds(pipe, jobs, 1, cores)]
            off = await bots["off"].serve(jobs)
            single.append(jobs_n / raw_seconds(pipe, jobs, 1, cores))
            raw_single, raw_batched = statistics.mean(single), statistics.mean(batched)
            print(f"  raw pipeline calls: {raw_single:7.2f} jobs/s one by one ({single[0]:.2f}, {single[1]:.2f}), "
                  f"{raw_batched:7.2f} jobs/s in batches of {args.max_batch} ({batched[0]:.2f}, {batched[1]:.2f})",
                  flush=True)
            ceiling = max(raw_single, raw_batched)
            results.append({
                "jobs_per_s": on.jobs_per_s, "posted_jobs_per_s": on.jobs / on.posted_s, "raw_jobs_per_s": ceiling,
                "raw_single_jobs_per_s": raw_single, "raw_batched_jobs_per_s": raw_batched,
                "engine_batching_off_jobs_per_s": off.jobs_per_s,
                "busy_fraction": on.busy_fraction, "busy_fraction_batching_off": off.busy_fraction,
                "gpu_thread_on_cpu_fraction": on.on_cpu_fraction,
                **on.threads,
                "throughput_ratio_vs_raw": on.jobs_per_s / ceiling,
                "throughput_ratio_batching_off_vs_raw_single": off.jobs_per_s / raw_single,
                "batching_gain": on.jobs_per_s / off.jobs_per_s,
                "p50_latency_s": on.percentile(0.5), "p95_latency_s": on.percentile(0.95),
            })
    finally:
        for bot in bots.values():
            await bot.close()
    return results


def _fresh(config: Config, folder: Path) -> Config:
    """The same config with its own job log and outputs folder."""
    import dataclasses

    folder.mkdir(parents=True, exist_ok=True)
    return dataclasses.replace(config, base_dir=folder)


def rounds(config: Config, args: argparse.Namespace, work: Path, *, size: int, steps: int, guidance: float,
           jobs_n: int) -> dict[str, Any]:
    results = asyncio.run(measure(config, args, work, size=size, steps=steps, guidance=guidance, jobs_n=jobs_n))
    summary: dict[str, Any] = {k: round(statistics.median(r[k] for r in results), 4) for k in results[0]}
    summary["rounds"] = [{k: round(v, 4) for k, v in r.items()} for r in results]
    return summary


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=50, help="jobs per run (default 50)")
    parser.add_argument("--users", type=int, default=5, help="simulated members sharing the jobs (default 5)")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
    parser.add_argument("--steps", type=int, default=4, help="denoising steps (default 4)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads for every run (default 1)")
    parser.add_argument("--max-batch", type=int, default=4, help="queue.max_batch (default 4)")
    parser.add_argument("--batch-wait-ms", type=int, default=5, help="queue.batch_wait_ms (default 5)")
    parser.add_argument("--upload-ms", type=float, default=50, help="simulated upload time per result (default 50)")
    # One round's ratio moves by +-0.05 on a shared machine (its speed changes by 10-20% within
    # seconds); the median of 15 is within about +-0.02.
    parser.add_argument("--rounds", type=int, default=15, help="repeat everything; JSON has medians (default 15)")
    parser.add_argument("--sd15", choices=("auto", "skip", "cuda", "cpu"), default="auto",
                        help="also serve a random full-size SD 1.5: auto = on CUDA only (default)")
    parser.add_argument("--sd15-jobs", type=int, default=20, help="jobs for the full-size run (default 20)")
    parser.add_argument("--sd15-size", type=int, default=512)
    parser.add_argument("--cache", default=str(CACHE), help=f"where the random SD 1.5 is kept (default {CACHE})")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    per_user = max(1, math.ceil(args.jobs / args.users))
    with tempfile.TemporaryDirectory(prefix="easel-throughput-") as tmp:
        work = Path(tmp)
        config = write_config(work, tiny_model(work / "tiny-sd"), size=args.size, steps=args.steps,
                              threads=args.threads, max_batch=args.max_batch, batch_wait_ms=args.batch_wait_ms,
                              per_user=per_user, total=args.jobs)
        figures = rounds(config, args, work, size=args.size, steps=args.steps, guidance=0.0, jobs_n=args.jobs)
        figures.update(jobs=args.jobs, users=args.users, size=args.size, steps=args.steps, threads=args.threads)
        device = choose_sd15_device(args.sd15)
        if device is not None:
            folder = ensure_sd15_random(Path(args.cache) / "sd15-random")
            n = args.sd15_jobs
            sd15 = write_config(work / "sd15", folder, name="sd15-random", family="sd-turbo", size=args.sd15_size,
                                steps=1, device=device, dtype="float16" if device == "cuda" else "float32",
                                threads=args.threads, max_batch=args.max_batch, batch_wait_ms=args.batch_wait_ms,
                                per_user=max(1, math.ceil(n / args.users)), total=n)
            full = rounds(sd15, argparse.Namespace(**{**vars(args), "rounds": 1}), work / "sd15",
                          size=args.sd15_size, steps=1, guidance=0.0, jobs_n=n)
            full["s_per_image"] = round(1 / full["jobs_per_s"], 4)
            print(f"full-size SD 1.5 (random weights), {args.sd15_size} px, 1 step: "
                  f"{full['s_per_image']:.3f} s per image through the bot")
            figures["sd15_turbo_like"] = full
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
