"""What each thread of this process spent while a bench ran: CPU time, and how often it slept.

A thread's voluntary context switches (Linux, ``/proc/self/task/<tid>/status``) count the times it
blocked; for the GPU thread inside a batch that is almost always a wait for the GIL while another
thread of the bot ran Python. Unlike jobs/s this does not drift with the machine's speed, so it
shows what a change to the bot's own work does to the GPU thread (bench/README.md). CPU time comes
from ``time.pthread_getcpuclockid`` (Unix); where either is missing the figure is left out.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class ThreadCounters:
    cpu_s: dict[int, float]  # by thread ident
    sleeps: dict[int, int]  # voluntary context switches by thread ident

    @classmethod
    def now(cls) -> ThreadCounters:
        cpu: dict[int, float] = {}
        sleeps: dict[int, int] = {}
        for thread in threading.enumerate():
            if thread.ident is None:
                continue
            try:
                cpu[thread.ident] = time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
            except (AttributeError, OSError):  # not Unix, or the thread just ended
                pass
            switches = _voluntary_switches(thread.native_id)
            if switches is not None:
                sleeps[thread.ident] = switches
        return cls(cpu, sleeps)


def per_job(before: ThreadCounters, after: ThreadCounters, jobs: int, gpu_ident: int | None) -> dict[str, float]:
    """GPU-thread sleeps and the other threads' CPU milliseconds, per job, between two snapshots."""
    out: dict[str, float] = {}
    if gpu_ident is not None and gpu_ident in after.sleeps:
        out["gpu_thread_sleeps_per_job"] = (after.sleeps[gpu_ident] - before.sleeps.get(gpu_ident, 0)) / jobs
    others = [ident for ident in after.cpu_s if ident != gpu_ident]
    if after.cpu_s:
        cpu = sum(after.cpu_s[i] - before.cpu_s.get(i, 0.0) for i in others)
        out["other_threads_cpu_ms_per_job"] = cpu * 1000 / jobs
    return out


def _voluntary_switches(native_id: int | None) -> int | None:
    if native_id is None:
        return None
    try:
        with open(f"/proc/self/task/{native_id}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("voluntary_ctxt_switches:"):
                    return int(line.split(":", 1)[1])
    except OSError:
        return None
    return None


def process_cpu_s(pid: int | None) -> float | None:
    """User + system CPU seconds of another process so far (Linux), or None."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime (fields 14, 15)
