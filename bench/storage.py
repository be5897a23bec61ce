"""Bench: the job log's write path for 10,000 jobs.

Each job is inserted (committed, status ``queued``) and then walked through every status it takes
on the way to a member: running → done → delivering (begin_delivery) → delivered (mark_delivered).
That is five committed writes per job, one at a time as the bot does them, through the single
aiosqlite connection, in a temporary database (WAL, synchronous=NORMAL).

    python bench/storage.py [--jobs N]

The last line printed is a JSON object: {"jobs": N, "seconds": ..., "jobs_per_s": ..., "writes_per_s": ...}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from storage import Database  # noqa: E402

WRITES_PER_JOB = 5


async def run(jobs: int, folder: Path) -> float:
    db = await Database.open(folder / "bench.db")
    try:
        params = {"prompt": "a lighthouse on a cliff at dusk, oil painting", "negative_prompt": "", "width": 512,
                  "height": 512, "steps": 4, "guidance": 0.0, "seed": 0, "count": 1, "model": "sd-turbo"}
        started = time.perf_counter()
        for n in range(jobs):
            job_id = f"bench{n:06d}"
            await db.jobs.add(job_id=job_id, kind="imagine", user_id=1000 + n % 50, guild_id=1, channel_id=2,
                              params={**params, "seed": n})
            await db.jobs.set_status(job_id, "running")
            await db.jobs.set_status(job_id, "done")
            if not await db.jobs.begin_delivery(job_id):
                raise RuntimeError(f"{job_id} could not begin delivery")
            await db.jobs.mark_delivered(job_id, channel_id=2, message_id=10_000 + n)
        seconds = time.perf_counter() - started
        counts = await db.jobs.counts()
        if counts["delivered"] != jobs:
            raise RuntimeError(f"expected {jobs} delivered jobs, found {counts}")
        return seconds
    finally:
        await db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="easel-bench-") as tmp:
        seconds = asyncio.run(run(args.jobs, Path(tmp)))
    print(f"{args.jobs} jobs, {args.jobs * WRITES_PER_JOB} committed writes: {seconds:.2f} s, "
          f"{args.jobs / seconds:,.0f} jobs/s")
    print(json.dumps({"jobs": args.jobs, "seconds": round(seconds, 3), "jobs_per_s": round(args.jobs / seconds, 1),
                      "writes_per_s": round(args.jobs * WRITES_PER_JOB / seconds, 1)}))


if __name__ == "__main__":
    main()
