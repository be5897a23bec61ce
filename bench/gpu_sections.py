"""bench/gpu.py's measurements, one function per section. Each takes (plan, models, work, budget) and
returns its figures; a step that does not fit the section's time is skipped and named."""

from __future__ import annotations

import logging
import re
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from bench.engine import raw_call
from bench.gpu_common import Budget, Plan, Runner, free, images_of, jobs_for, max_diff, model_config, sync
from bench.gpu_models import Models
from inference.jobs import Cancelled, Finished, JobEvent, JobKind, Progress

# --------------------------------------------------------------------------- 1. correctness


def correctness(plan: Plan, models: Models, work: Path, budget: Budget, out: dict[str, Any]) -> None:
    """Batched vs single images, a cancel mid-step, a forced out-of-memory and the job after it."""
    config = model_config(plan, work / "correct", models.folder("sd15"), family="sd15", size=plan.sd15_size,
                          steps=plan.correctness_steps, guidance=7.5, max_batch=16)
    with Runner(config, progress_interval_s=0.0) as runner:
        runner.load()
        jobs = jobs_for(config, 4, seed=10)
        together = images_of(runner.run(jobs)[1])
        alone = [images_of(runner.run([j])[1])[0] for j in jobs]
        diff = max_diff(together, alone)
        # Flat images would match trivially: random fp16 weights overflowing to NaN decode to black.
        spread = min(float(im.std()) for im in together + alone)
        out.update(batched_vs_single_max_diff_255=diff, image_pixel_std_min=round(spread, 2),
                   batched_vs_single_ok=diff <= 2 and spread > 1.0)
        print(f"  batch of 4 vs one by one: max pixel difference {diff}/255 (pixel spread at least {spread:.1f})",
              flush=True)
        if budget.allows("cancel", 5):
            out.update(_cancel(runner, config, plan))
        if budget.allows("forced out-of-memory", 10):
            out.update(_forced_oom(runner, config, plan))


def _cancel(runner: Runner, config: Any, plan: Plan) -> dict[str, Any]:
    job = jobs_for(config, 1, seed=50, steps=plan.cancel_steps, prefix="cancel")[0]
    steps: list[int] = []

    def emit(event: JobEvent) -> None:
        if isinstance(event, Progress) and event.job_id == job.job_id:
            steps.append(event.step)
            if event.step >= 2:
                runner.executor.cancel(job.job_id)

    seconds, outcomes = runner.run([job], emit)
    last = max(steps, default=0)
    ok = isinstance(outcomes[0], Cancelled) and last < plan.cancel_steps
    print(f"  cancel at step 2 of {plan.cancel_steps}: {type(outcomes[0]).__name__} after step {last} "
          f"({seconds:.2f} s)", flush=True)
    after = runner.run(jobs_for(config, 1, seed=51))[1][0]
    return {"cancel_outcome": type(outcomes[0]).__name__, "cancel_last_step": last,
            "cancel_total_steps": plan.cancel_steps, "cancel_ok": ok and isinstance(after, Finished)}


class _Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _forced_oom(runner: Runner, config: Any, plan: Plan) -> dict[str, Any]:
    """An oversized batch under a memory cap (CUDA: the allocator capped ``oom_headroom_mib`` above what
    the model holds; CPU dry run: the UNet raises torch's out-of-memory error past two rows), then a
    normal job with the cap lifted."""
    model = runner.executor.submit(runner.model).result()
    unet = model.pipes[JobKind.IMAGINE].unet
    undo: Any
    if plan.device == "cuda":
        free("cuda")
        total = torch.cuda.get_device_properties(0).total_memory
        cap = torch.cuda.memory_reserved() + plan.oom_headroom_mib * 2**20
        torch.cuda.set_per_process_memory_fraction(min(1.0, cap / total))

        def undo() -> None:
            torch.cuda.set_per_process_memory_fraction(1.0)
    else:
        def too_big(_module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            sample = args[0] if args else kwargs["sample"]
            if sample.shape[0] > 2:
                raise torch.OutOfMemoryError("CPU dry run: out of memory (simulated for a batch over one job)")

        undo = unet.register_forward_pre_hook(too_big, with_kwargs=True).remove
    warnings = _Warnings()
    logging.getLogger("inference.executor").addHandler(warnings)
    try:
        seconds, outcomes = runner.run(jobs_for(config, plan.oom_batch, seed=70, steps=2, prefix="oom"))
    finally:
        logging.getLogger("inference.executor").removeHandler(warnings)
        undo()
    kinds = [type(o).__name__ for o in outcomes]
    next_job = runner.run(jobs_for(config, 1, seed=99, steps=2, prefix="after"))[1][0]
    seen = any("ran out of GPU memory" in line for line in warnings.lines)
    print(f"  batch of {plan.oom_batch} under a memory cap: out of memory {'seen' if seen else 'NOT seen'}, "
          f"then {kinds.count('Finished')} finished one by one, {kinds.count('Failed')} failed ({seconds:.1f} s); "
          f"next job: {type(next_job).__name__}", flush=True)
    return {"oom_seen": seen, "oom_batch_finished": kinds.count("Finished"), "oom_batch_failed": kinds.count("Failed"),
            "next_job_after_oom": type(next_job).__name__,
            "oom_ok": seen and isinstance(next_job, Finished)}


# --------------------------------------------------------------------------- 2. SD 1.5 512 px 50 steps


def plain_pipeline(folder: Path, plan: Plan, xl: bool = False) -> Any:
    """The model as diffusers alone loads it: no easel code."""
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    from inference.loader import quiet_loading

    quiet_loading()
    cls = StableDiffusionXLPipeline if xl else StableDiffusionPipeline
    extra = {} if xl else {"safety_checker": None, "requires_safety_checker": False}
    pipe = cls.from_pretrained(folder, dtype=plan.torch_dtype, local_files_only=True, **extra).to(plan.device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _raw_s_per_image(pipe: Any, jobs: list[Any], repeats: int) -> float:
    raw_call(pipe, jobs)
    return statistics.median(raw_call(pipe, jobs)[0] for _ in range(repeats)) / len(jobs)


def _row(label: str, batch: int, s: float) -> dict[str, float]:
    print(f"  {label:<34} batch {batch:>2}: {s:.4f} s/image, {1 / s:7.2f} images/s", flush=True)
    return {f"{label}/batch{batch}_s_per_image": round(s, 4), f"{label}/batch{batch}_images_per_s": round(1 / s, 3)}


# (label, device options) at batch 1, each against the one before: what each switch buys. Compiling
# is a section of its own (it takes the longest, and its time is the least predictable).
FAST_PATH = [
    ("executor+channels_last", {"channels_last": True}),
    ("executor+channels_last+fuse_qkv", {"channels_last": True, "fuse_qkv": True}),
]
COMPILED = ("executor+channels_last+fuse_qkv+compile", {"channels_last": True, "fuse_qkv": True, "compile": True,
                                                         "compile_mode": "reduce-overhead",
                                                         "compile_dynamic": "static"})


def sd15(plan: Plan, models: Models, work: Path, budget: Budget, out: dict[str, Any]) -> None:
    """Plain diffusers vs easel's executor at each batch size, then the fast path switches at batch 1."""
    folder = models.folder("sd15")
    config = model_config(plan, work / "sd15", folder, family="sd15", size=plan.sd15_size, steps=plan.sd15_steps,
                          guidance=7.5)
    per_image = 0.0  # the last batch-1 time: the estimate of what each further step costs
    pipe = plain_pipeline(folder, plan)
    for batch in plan.sd15_batches:
        if budget.allows(f"plain diffusers batch {batch}", per_image * batch * (plan.repeats + 1)):
            s = _raw_s_per_image(pipe, jobs_for(config, batch), plan.repeats)
            per_image = per_image or s
            out.update(_row("plain", batch, s))
    del pipe
    free(plan.device)
    started = time.perf_counter()
    with Runner(config) as runner:
        load = runner.load()
        first_call = runner.run(jobs_for(config, 1, seed=500))[0]
        out.update(load_s=round(load, 3), first_call_s=round(first_call, 4),
                   first_image_after_start_s=round(time.perf_counter() - started, 3))
        print(f"  executor: model loaded in {load:.2f} s, first image {first_call:.3f} s "
              f"({out['first_image_after_start_s']:.2f} s after start)", flush=True)
        for batch in plan.sd15_batches:
            if budget.allows(f"executor batch {batch}", per_image * batch * (plan.repeats + 1)):
                out.update(_row("executor", batch, runner.s_per_image(jobs_for(config, batch), plan.repeats)))
    for label, options in FAST_PATH:
        if budget.allows(label, per_image * (plan.repeats + 2) + 10):
            _fast_path_row(plan, folder, work, label, options, budget, per_image, out)


def _fast_path_row(plan: Plan, folder: Path, work: Path, label: str, options: dict[str, Any], budget: Budget,
                   per_image: float, out: dict[str, Any]) -> None:
    """Batch-1 seconds per image with ``options``, and its first call (with a compile: the compilation)."""
    config = model_config(plan, work / label, folder, family="sd15", size=plan.sd15_size, steps=plan.sd15_steps,
                          guidance=7.5, **options)
    with Runner(config) as runner:
        runner.load()
        first = runner.run(jobs_for(config, 1, seed=600))[0]
        out[f"{label}/first_call_s"] = round(first, 3)
        out.update(_row(label, 1, runner.s_per_image(jobs_for(config, 1), plan.repeats)))
        if label.endswith("fuse_qkv") and budget.allows("attention backends", per_image * 4 * (plan.repeats + 1)):
            out.update(_attention_backends(runner, config, plan))
        if label.endswith(("fuse_qkv", "compile")) and budget.allows("profile", per_image * 3 + 5):
            try:  # a diagnosis: its failure must not cost the figures after it
                model = runner.executor.submit(runner.model).result()
                out.update(runner.executor.submit(_profile, model, jobs_for(config, 1), plan, label).result())
            except Exception as exc:
                out[f"{label}/profile_error"] = f"{type(exc).__name__}: {str(exc)[:200]}"


def _profile(model: Any, jobs: list[Any], plan: Plan, label: str) -> dict[str, Any]:
    """On the GPU thread: one warm pipeline call, as the executor makes it, under torch's profiler.
    ``gpu_busy_fraction`` is the kernels' time over the call's: the rest the GPU waited on the host.
    The table of the costliest operations goes to ``$OUT/profile-<label>.txt``."""
    from torch.profiler import ProfilerActivity, profile

    from inference.generate import run_diffusion_batch
    from inference.prepare import PreparedJob

    cuda = plan.device == "cuda"
    batch = [PreparedJob(j) for j in jobs]
    run_diffusion_batch(model, batch, lambda *_: True)
    with profile(activities=[ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if cuda else [])]) as prof:
        started = time.perf_counter()
        run_diffusion_batch(model, batch, lambda *_: True)
        sync(plan.device)
        wall = time.perf_counter() - started
    events = prof.key_averages()
    kernels_s = sum(getattr(e, "self_device_time_total", 0) for e in events) / 1e6
    sort = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    if plan.out:
        table = events.table(sort_by=sort, row_limit=25)
        (Path(plan.out) / f"profile-{re.sub(r'[^A-Za-z0-9_.-]+', '-', label)}.txt").write_text(
            f"{label}, batch {len(jobs)}: {wall:.4f} s under the profiler\n{table}\n", encoding="utf-8")
    busy = kernels_s / wall if cuda else None
    print(f"  profile of one call: {wall:.3f} s, GPU kernels {kernels_s:.3f} s"
          + (f" (busy {busy:.2f})" if busy is not None else " (no GPU)"), flush=True)
    return {f"{label}/profile_call_s": round(wall, 4), f"{label}/profile_gpu_kernels_s": round(kernels_s, 4),
            f"{label}/gpu_busy_fraction": None if busy is None else round(busy, 3)}


def compiled(plan: Plan, models: Models, work: Path, budget: Budget, out: dict[str, Any]) -> None:
    """SD 1.5 with every switch on and the UNet compiled (CUDA graphs, one graph per shape): the first
    call compiles, which is what the start-up warm-up (inference/warmup.py) spends for each size."""
    label, options = COMPILED
    if budget.allows(label, 20 if plan.dry else 100):
        _fast_path_row(plan, models.folder("sd15"), work, label, options, budget, 0.0, out)


def best_batch1(*sections: dict[str, Any]) -> dict[str, Any]:
    """The fastest batch-1 configuration of SD 1.5 among the sections' rows."""
    batch1 = {k.rsplit("/", 1)[0]: v for sec in sections for k, v in sec.items()
              if k.endswith("/batch1_s_per_image") and not k.startswith("sdpa/")}  # forced backends: no easel switch
    if not batch1:
        return {}
    best = min(batch1, key=batch1.__getitem__)
    return {"sd15_best_configuration": best, "sd15_512_50steps_s_per_image": batch1[best]}


def _attention_backends(runner: Runner, config: Any, plan: Plan) -> dict[str, Any]:
    """Batch-1 seconds per image with each scaled-dot-product-attention backend torch offers forced."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    rows: dict[str, Any] = {}
    for backend in (SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION):
        name = backend.name.lower()
        try:
            with sdpa_kernel(backend):  # process-wide flags: the GPU thread sees them too
                s = runner.s_per_image(jobs_for(config, 1), plan.repeats)
        except Exception as exc:  # a backend this device or dtype lacks
            rows[f"sdpa/{name}_error"] = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            print(f"  sdpa {name}: not available here", flush=True)
            continue
        rows.update(_row(f"sdpa/{name}", 1, s))
    return rows


# --------------------------------------------------------------------------- 4. SDXL 1024 px 30 steps


def sdxl(plan: Plan, models: Models, work: Path, budget: Budget, out: dict[str, Any]) -> None:
    folder = models.folder("sdxl")
    config = model_config(plan, work / "sdxl", folder, family="sdxl", size=plan.sdxl_size, steps=plan.sdxl_steps,
                          guidance=5.0)
    with Runner(config) as runner:
        out["load_s"] = round(runner.load(), 3)
        started = time.perf_counter()
        runner.run(jobs_for(config, 1))
        first = time.perf_counter() - started
        if budget.allows("sdxl executor", first * (plan.repeats + 1)):
            out.update(_row("executor", 1, runner.s_per_image(jobs_for(config, 1), plan.repeats)))
    if budget.allows("sdxl plain diffusers", first * (plan.repeats + 2) + 10):
        pipe = plain_pipeline(folder, plan, xl=True)
        out.update(_row("plain", 1, _raw_s_per_image(pipe, jobs_for(config, 1), plan.repeats)))
        del pipe
        free(plan.device)


# --------------------------------------------------------------------------- 5. model switch


def switch(plan: Plan, models: Models, work: Path, budget: Budget, out: dict[str, Any]) -> None:
    """A model switch through the executor's own residency (inference/residency.py), SD 1.5 under two
    names used in turn: from disk (``resident_models = 1``: the other is dropped, this one loaded; the
    files are in the page cache, having just been written) vs back from pinned CPU RAM
    (``resident_models = 2``: the other parked in RAM, this one copied onto the device). Medians of
    the switches after both were loaded once."""
    import dataclasses
    import statistics

    from inference.executor import GpuExecutor

    config = model_config(plan, work / "switch", models.folder("sd15"), family="sd15", size=plan.sd15_size,
                          steps=1, guidance=0.0)
    twin = dataclasses.replace(config.model, name="twin")
    for resident, key in ((1, "disk_to_device_s"), (2, "ram_to_device_s")):
        executor = GpuExecutor(dataclasses.replace(config, models=(twin,), device=dataclasses.replace(
            config.device, resident_models=resident)))
        try:
            for name in ("", "twin", "", "twin"):
                executor.submit(executor.model, config.model.display_name if not name else name).result()
            seconds = [s for _, _, s in executor.model_switches()[2:]]
        finally:
            executor.shutdown()
            free(plan.device)
        out[key] = round(statistics.median(seconds), 3)
    out["model_switch_s_disk"], out["model_switch_s_ram"] = out["disk_to_device_s"], out["ram_to_device_s"]
    print(f"  model switch: from disk {out['disk_to_device_s']:.2f} s, from RAM {out['ram_to_device_s']:.2f} s",
          flush=True)
