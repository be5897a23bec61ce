"""Bench: what the rest of the bot costs the GPU thread, in this process and in another one.

    python bench/contention.py [--pairs 40] [--window-s 0.4] [--size 64] [--steps 4] [--batch 4]

Raw pipeline calls (batches of ``--batch``, under ``torch.inference_mode()``) run on the main
thread in short windows. Every other window a *load* runs beside them: the whole bot minus Discord
(studio, SQLite job log, PNG encoding and files, engine, fair queue, an upload sink like
bench/throughput.py's) serving jobs at the rate the raw calls run them, with the model replaced
by a stand-in that sleeps each job's measured time (the GIL released, as while a GPU works). The
load runs first on threads of this process, then in a separate process; the windows alternate, so
the machine's drift over seconds cancels out of each pair.

It prints raw jobs/s without and with the load, for each place, and the ratio (median of the
pairs). The difference between the two places is what sharing one interpreter lock costs: the
same work on the same two cores, once with and once without the GIL in common. The last line is
one JSON object. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from PIL import Image  # noqa: E402

from bench.engine import raw_call, t2i, tiny_model, write_config  # noqa: E402  (offline environment first)
from bench.throughput import Bot  # noqa: E402
from config import Config  # noqa: E402
from inference.jobs import JobKind, JobResult  # noqa: E402
from studio import RequestContext  # noqa: E402

MEMBERS = 5
BACKLOG = 8  # jobs the load keeps queued while it runs: the GPU thread always has a next batch


def use_stand_in_model(seconds_per_job: float, size: int) -> None:
    """Make this process's executors sleep ``seconds_per_job`` per job instead of running the model."""
    import inference.executor

    image = Image.effect_noise((size, size), 40).convert("RGB")

    def run(_model: Any, batch: Any, _on_step: Any) -> list[JobResult]:
        time.sleep(seconds_per_job * len(batch))
        return [JobResult(job_id=p.job.job_id, images=(image,) * p.job.count, seeds=p.job.seeds,
                          seconds=seconds_per_job, nsfw=(False,) * p.job.count) for p in batch]

    inference.executor.run_diffusion_batch = run  # type: ignore[assignment]


class Feeder:
    """Keeps ``BACKLOG`` jobs from ``MEMBERS`` members in a bot while switched on: a new job is
    submitted each time one is posted, so the load reacts to events like a bot does (no polling)."""

    def __init__(self, bot: Bot, size: int, steps: int, on_idle: Callable[[], None] = lambda: None) -> None:
        self.bot, self.size, self.steps, self.on_idle = bot, size, steps, on_idle
        self.active = False
        self.error: str | None = None
        self.failed = asyncio.Event()
        self.submitted = self.posted = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        bot.sink.expect(sys.maxsize)
        bot.sink.on_posted = self._posted

    def start(self) -> None:
        self.active = True
        for _ in range(BACKLOG - (self.submitted - self.posted)):
            self._submit()

    def stop(self) -> None:
        self.active = False
        if self.submitted == self.posted:
            self.on_idle()

    def _posted(self, _job_id: str) -> None:
        self.posted += 1
        if self.active:
            self._submit()
        elif self.submitted == self.posted:
            self.on_idle()

    def _submit(self) -> None:
        self.submitted += 1
        owner = 100 + self.submitted % MEMBERS
        job = t2i(f"load{self.submitted:07d}", size=self.size, steps=self.steps, seed=self.submitted, owner=owner,
                  model=self.bot.studio.config.model.display_name)
        task = asyncio.get_running_loop().create_task(
            self.bot.studio.submit(job, RequestContext(user_id=owner, guild_id=1, channel_id=1)))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.error = f"the load could not submit a job: {task.exception()!r}"
        elif self.bot.sink.failures:
            self.error = "; ".join(self.bot.sink.failures[:3])
        if self.error is not None:
            self.failed.set()


def load_config(work: Path, size: int, steps: int, batch: int) -> Config:
    return write_config(work, tiny_model(work.parent / "tiny-sd"), size=size, steps=steps, max_batch=batch,
                        per_user=BACKLOG, total=BACKLOG * MEMBERS, threads=1,
                        pin_threads=False)  # the raw calls and the load share the process's cores as they are


class ThreadLoad:
    """The load on threads of this process (its own event loop), switched on and off."""

    def __init__(self, config: Config, size: int, steps: int) -> None:
        self._idle, started = threading.Event(), threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._feeder: Feeder | None = None
        self._stop: asyncio.Event | None = None

        async def serve() -> None:
            self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
            bot = Bot(config, upload_s=0.05, label="load")
            await bot.start()
            self._feeder = Feeder(bot, size, steps, on_idle=self._idle.set)
            started.set()
            try:
                await self._stop.wait()
            finally:
                await bot.close()

        self._thread = threading.Thread(target=asyncio.run, args=(serve(),), name="load", daemon=True)
        self._thread.start()
        if not started.wait(300):
            raise RuntimeError("the load did not start")

    def on(self) -> None:
        assert self._loop is not None and self._feeder is not None
        self._idle.clear()
        self._loop.call_soon_threadsafe(self._feeder.start)
        time.sleep(0.05)  # a first batch under way

    def off(self) -> None:
        assert self._loop is not None and self._feeder is not None
        self._loop.call_soon_threadsafe(self._feeder.stop)
        if not self._idle.wait(60):  # what was queued is served and posted
            failures = self._feeder.bot.sink.failures
            raise RuntimeError("the load did not drain" + (f": {'; '.join(failures[:3])}" if failures else ""))
        if self._feeder.error is not None:
            raise RuntimeError(self._feeder.error)

    def close(self) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)


class ProcessLoad:
    """The same load in a child process (``--serve-load``), frozen with SIGSTOP between windows."""

    def __init__(self, work: Path, args: argparse.Namespace, seconds_per_job: float) -> None:
        self._child = subprocess.Popen(
            [sys.executable, __file__, "--serve-load", str(work), "--job-s", repr(seconds_per_job),
             "--size", str(args.size), "--steps", str(args.steps), "--batch", str(args.batch)],
            stdout=subprocess.PIPE, text=True)
        assert self._child.stdout is not None
        for line in self._child.stdout:
            if line.strip() == "READY":
                break
        else:
            raise RuntimeError("the load process did not start")
        time.sleep(0.5)
        self.off()

    def on(self) -> None:
        if self._child.poll() is not None:
            raise RuntimeError(f"the load process stopped (exit code {self._child.returncode})")
        os.kill(self._child.pid, signal.SIGCONT)
        time.sleep(0.05)

    def off(self) -> None:
        os.kill(self._child.pid, signal.SIGSTOP)

    def close(self) -> None:
        self._child.kill()
        self._child.wait()


def raw_rate(pipe: Any, jobs: list[Any], window_s: float) -> float:
    """Jobs/s of back-to-back raw batches for about ``window_s``."""
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < window_s:
        raw_call(pipe, jobs)
        done += len(jobs)
    return done / (time.perf_counter() - started)


def pairs(pipe: Any, jobs: list[Any], load: ThreadLoad | ProcessLoad, n: int, window_s: float) -> dict[str, float]:
    quiet, loaded = [], []
    for _ in range(n):
        load.off()
        quiet.append(raw_rate(pipe, jobs, window_s))
        load.on()
        loaded.append(raw_rate(pipe, jobs, window_s))
    load.off()
    return {"raw_jobs_per_s": statistics.median(quiet), "raw_jobs_per_s_with_load": statistics.median(loaded),
            "ratio": statistics.median(b / a for a, b in zip(quiet, loaded, strict=True))}


def serve_load_process(work: Path, args: argparse.Namespace) -> None:
    """``--serve-load``: run the load until killed (the parent freezes and thaws this process)."""
    torch.set_num_threads(1)
    use_stand_in_model(args.job_s, args.size)
    config = load_config(work / "process-load", args.size, args.steps, args.batch)

    async def serve() -> None:
        bot = Bot(config, upload_s=0.05, label="load")
        await bot.start()
        feeder = Feeder(bot, args.size, args.steps)
        feeder.start()
        print("READY", flush=True)
        await feeder.failed.wait()
        raise SystemExit(feeder.error)

    asyncio.run(serve())


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=40, help="quiet/loaded window pairs per place (default 40)")
    parser.add_argument("--window-s", type=float, default=0.4, help="seconds per window (default 0.4)")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch", type=int, default=4, help="jobs per raw call and the load's max_batch (default 4)")
    parser.add_argument("--places", default="same,other", help="where the load runs: same, other or both (default)")
    parser.add_argument("--serve-load", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--job-s", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_load:
        serve_load_process(args.serve_load, args)
        return {}

    wanted = {f"{place.strip()}_process" for place in args.places.split(",")}
    if not wanted <= {"same_process", "other_process"}:
        parser.error("--places takes same, other or same,other")

    from inference.loader import load_model

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="easel-contention-") as tmp:
        work = Path(tmp)
        config = load_config(work / "thread-load", args.size, args.steps, args.batch)
        pipe = load_model(config.model, config.device, config.base_dir).pipes[JobKind.IMAGINE]
        jobs = [t2i(f"raw{i}", size=args.size, steps=args.steps, seed=i) for i in range(args.batch)]
        raw_call(pipe, jobs)
        seconds_per_job = 1 / raw_rate(pipe, jobs, 2.0)
        print(f"raw calls: {1 / seconds_per_job:.1f} jobs/s ({args.size} px, {args.steps} steps, batches of "
              f"{args.batch}); the load serves jobs that take {seconds_per_job * 1000:.1f} ms each", flush=True)
        use_stand_in_model(seconds_per_job, args.size)
        figures: dict[str, Any] = {"size": args.size, "steps": args.steps, "batch": args.batch,
                                   "load_seconds_per_job": round(seconds_per_job, 5), "pairs": args.pairs}
        places = {"same_process": lambda: ThreadLoad(config, args.size, args.steps),
                  "other_process": lambda: ProcessLoad(work, args, seconds_per_job)}
        for place, make in ((p, m) for p, m in places.items() if p in wanted):
            load = make()
            try:
                result = pairs(pipe, jobs, load, args.pairs, args.window_s)
            finally:
                load.close()
            print(f"load in the {place.replace('_', ' ')}: raw {result['raw_jobs_per_s']:.1f} jobs/s alone, "
                  f"{result['raw_jobs_per_s_with_load']:.1f} beside the load, ratio {result['ratio']:.3f}", flush=True)
            figures[f"{place}_ratio"] = round(result["ratio"], 4)
            figures[place] = {k: round(v, 3) for k, v in result.items()}
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
