"""Cores of its own for the GPU thread; the rest of the bot runs on the other cores (Linux).

Under a backlog the bot's other threads (the event loop, SQLite's worker, the relay, helper
threads) and the PNG writer process wake up hundreds of times a second. Left to the kernel, they
are often placed on the core the GPU thread is running on, and the GPU thread then waits in the run
queue: measured at 64 px on two cores, 0.26-0.38 ms per job (~2% of its time) on top of its waits
for the GIL. With the GPU thread alone on its core and everything else on the other that wait is
~0.014 ms, and the bot served 2.6% more jobs per second (paired backlogs, bench/README.md). On a
GPU the thread feeds the device, and a feeder waiting for a core leaves the GPU idle.

Affinity is inherited. :meth:`ThreadPlacement.move_others`, called on the event loop thread before
the job log opens and the PNG writer starts, moves that thread and every other live thread but GPU
threads, so every thread and process started afterwards (SQLite's worker, asyncio's helper
threads, the PNG writer, a restarted writer) lands on the other cores. The GPU thread moves itself
onto its cores when it starts (:meth:`ThreadPlacement.pin_gpu_thread`), before torch creates its
CPU worker threads, which then inherit its cores. Nothing moves off Linux, without a core to spare
(the GPU thread needs one core on a GPU, or ``device.threads`` if set; one per torch thread on
the CPU), or with
``device.pin_threads = false``. :meth:`ThreadPlacement.restore` puts back what it moved.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from inference.devices import cpu_threads, resolve_device

if TYPE_CHECKING:
    from config import Config

log = logging.getLogger(__name__)

GetAffinity = Callable[[int], set[int]]
SetAffinity = Callable[[int, Iterable[int]], None]


@dataclass(frozen=True)
class CorePlan:
    gpu: frozenset[int]  # the GPU thread (and its torch CPU threads)
    others: frozenset[int]  # everything else


def plan_cores(allowed: Iterable[int], gpu_cores: int) -> CorePlan | None:
    """The highest-numbered ``gpu_cores`` of the cores this process may use for the GPU thread
    (interrupts tend to land on the lowest), the rest for everything else; None if none would be left."""
    cores = sorted(set(allowed))
    if gpu_cores < 1 or len(cores) <= gpu_cores:
        return None
    return CorePlan(gpu=frozenset(cores[-gpu_cores:]), others=frozenset(cores[:-gpu_cores]))


def supported() -> bool:
    return hasattr(os, "sched_setaffinity") and hasattr(os, "sched_getaffinity")


class _ProcessState:
    """What the placements of this process changed; shared, because a bench runs two bots and the
    tests many. The threads' original cores come back when the last placement that moved them
    restores, whatever the order the bots close in."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.gpu_threads: set[int] = set()  # native ids of pinned GPU threads: never moved to "the others"
        self.saved: dict[int, set[int]] = {}  # native id -> its cores before the first move
        self.movers = 0  # placements that moved the others and have not restored yet


_state = _ProcessState()


class ThreadPlacement:
    """Applies a :class:`CorePlan` to threads by their native ids."""

    def __init__(self, plan: CorePlan, *, get: GetAffinity | None = None, set_: SetAffinity | None = None) -> None:
        self.plan = plan
        self._get: GetAffinity = get or os.sched_getaffinity
        self._set: SetAffinity = set_ or os.sched_setaffinity
        self._gpu_thread: int | None = None
        self._moved = False

    def pin_gpu_thread(self) -> None:
        """On the GPU thread, before any torch work."""
        native = threading.get_native_id()
        with _state.lock:
            _state.gpu_threads.add(native)
            self._gpu_thread = native
            self._apply(native, self.plan.gpu, save=False)  # it ends before anything is restored

    def move_others(self) -> None:
        """On the event loop thread: this thread first (what it starts inherits its cores), then
        every other live thread except GPU threads."""
        own = threading.get_native_id()
        with _state.lock:
            if not self._moved:
                self._moved = True
                _state.movers += 1
            self._apply(own, self.plan.others, save=True)
            for thread in threading.enumerate():
                native = thread.native_id
                if native is not None and native != own and native not in _state.gpu_threads:
                    self._apply(native, self.plan.others, save=True)

    def restore(self) -> None:
        """Forget this placement's GPU thread; once no placement has the others moved, give every
        thread still alive the cores it had before (threads that ended are skipped)."""
        with _state.lock:
            _state.gpu_threads.discard(self._gpu_thread)  # type: ignore[arg-type]
            if not self._moved:
                return
            self._moved = False
            _state.movers -= 1
            if _state.movers:
                return
            saved, _state.saved = _state.saved, {}
            for native, cores in saved.items():
                try:
                    self._set(native, cores)
                except OSError:  # the thread has ended
                    pass

    def _apply(self, native: int, cores: frozenset[int], *, save: bool) -> None:
        try:
            before = self._get(native)
            self._set(native, cores)
        except OSError as exc:  # the thread ended meanwhile, or a container forbids it
            log.debug("could not move thread %d to cores %s: %s", native, sorted(cores), exc)
            return
        if save:
            _state.saved.setdefault(native, before)


def thread_placement(config: Config) -> ThreadPlacement | None:
    """The placement for this config (``device.pin_threads``): the GPU thread needs one core when
    it drives a GPU (or ``device.threads``, if set), one per torch CPU thread when the model or the
    anime filter runs on the CPU.
    None without a core to spare, off Linux, or when turned off."""
    if not config.device.pin_threads or not supported():
        return None
    try:
        on_cpu = any(resolve_device(name).type == "cpu" for name in (config.device.device, config.anime.device))
    except RuntimeError:  # an unavailable device: loading the model reports it
        return None
    # On a GPU the thread needs one core, unless torch was given more CPU threads explicitly.
    needed = (cpu_threads(config) or torch.get_num_threads()) if on_cpu else max(1, config.device.threads)
    plan = plan_cores(os.sched_getaffinity(0), needed)
    if plan is None:
        log.info("device.pin_threads: no core to spare for the GPU thread alone; threads stay where the OS puts them")
        return None
    log.info("GPU thread on core(s) %s, the rest of the bot on %s", sorted(plan.gpu), sorted(plan.others))
    return ThreadPlacement(plan)
