"""Bench: every GPU measurement of easel in one run of at most 8 minutes, for a machine with no network.

    python bench/gpu.py                  # on a CUDA GPU: full-size random-weight models, fp16
    python bench/gpu.py --dry-run        # the same code on the CPU with the tiny test models (< 5 min)
    python bench/gpu.py --only sd15,sdxl # some sections only
    bench/gpu/run.sh [ARGS]              # on the GPU machine: installs the carried wheels, then this

Sections (bench/README.md has the figures):

1. ``correctness``: a batch vs the same jobs one by one (within 2/255 in fp16), a cancel mid-step,
   a forced out-of-memory (an oversized batch under a memory cap) after which the next job runs.
2. ``sd15``: SD 1.5, 512 px, 50 steps: plain diffusers vs easel's executor at batch 1, 4, 8, then the
   fast path switches one by one at batch 1 (channels_last, fuse_qkv) and each SDPA
   attention backend, and a profile of one call (what the GPU waits on); the first image after
   start vs a warm one.
3. ``compile``: SD 1.5 with every switch on and the UNet compiled: the first call vs warm ones.
4. ``turbo``: SD-Turbo and SDXL-Turbo, 512 px, 1 step, batch 1, 4, 16, through the whole bot minus
   Discord (bench/throughput.py) against raw pipeline calls.
5. ``sdxl``: SDXL, 1024 px, 30 steps, seconds per image, executor and plain diffusers.
6. ``switch``: a model onto the device from disk vs from CPU RAM.
7. ``drafts``: the opt-in speed-ups that change pixels (DeepCache ``fast_draft``, torchao int8 and
   fp8 ``quantize``), each against the executor without it: s/image, speed-up, pixel difference.

Models are built from the published configs with random weights (bench/gpu_models.py), saved to a
temporary folder and loaded back through easel's own loader. Each section runs under a time budget
and its own ``try``: a failure is recorded in the JSON and the next section still runs. The last line
printed is one JSON object, also written to ``$OUT/<date>-<device>.json`` when ``$OUT`` is set.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import re
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
for _key, _value in {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "DIFFUSERS_VERBOSITY": "error",
                     "TRANSFORMERS_VERBOSITY": "error", "HF_HUB_DISABLE_TELEMETRY": "1"}.items():
    os.environ.setdefault(_key, _value)

import torch  # noqa: E402

from bench.gpu_common import DRY, FULL, Budget, Plan, free  # noqa: E402
from bench.gpu_drafts import drafts  # noqa: E402
from bench.gpu_models import Models  # noqa: E402
from bench.gpu_sections import best_batch1, compiled, correctness, sd15, sdxl, switch  # noqa: E402
from bench.gpu_turbo import turbo  # noqa: E402

# A section fills the figures dict as it goes: what it measured before a failure is kept.
Section = Callable[[Plan, Models, Path, Budget, dict[str, Any]], None]
# In this order: the compile comes right after SD 1.5 (the best batch-1 figure needs it) and before the
# sections that would only lose a little to a late start; the drafts (pixels changed, opt-in) last.
SECTIONS: dict[str, Section] = {"correctness": correctness, "sd15": sd15, "compile": compiled, "turbo": turbo,
                                "sdxl": sdxl, "switch": switch, "drafts": drafts}
# The figures the issue asks for by name, read from the sections (None when a section did not give them).
HEADLINES = {
    "sd15_plain_diffusers_s_per_image": ("sd15", "plain/batch1_s_per_image"),
    "throughput_ratio_vs_raw": ("turbo", "throughput_ratio_vs_raw"),
    "sd_turbo_images_per_s": ("turbo", "sd_turbo_images_per_s"),
    "sdxl_1024_30steps_s_per_image": ("sdxl", "executor/batch1_s_per_image"),
    "switch_disk_to_device_s": ("switch", "disk_to_device_s"),
    "switch_ram_to_device_s": ("switch", "ram_to_device_s"),
    "fast_draft3_speedup": ("drafts", "fast_draft3/speedup"),
    "int8_dynamic_speedup": ("drafts", "int8-dynamic/speedup"),
    "fp8_speedup": ("drafts", "fp8/speedup"),
}
# The goals on an H100 (checked only on a GPU): (figure, best allowed, at most?).
GOALS = {"sd15_512_50steps_s_per_image": (0.55, True), "sd_turbo_images_per_s": (40.0, False),
         "throughput_ratio_vs_raw": (0.95, False)}


def environment(plan: Plan) -> dict[str, Any]:
    import diffusers
    import transformers

    name = torch.cuda.get_device_name(0) if plan.device == "cuda" else f"cpu ({os.cpu_count()} cores)"
    return {"device_name": name, "torch": torch.__version__, "cuda": torch.version.cuda,
            "diffusers": diffusers.__version__, "transformers": transformers.__version__,
            "python": platform.python_version(), "dry_run": plan.dry, "dtype": plan.dtype,
            "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}


def run_section(name: str, plan: Plan, models: Models, work: Path, left: float) -> dict[str, Any]:
    """One section under ``min(its budget, left)`` seconds; an exception becomes its ``error``."""
    budget = Budget(min(plan.sections[name], left))
    print(f"== {name} (budget {min(plan.sections[name], left):.0f} s)", flush=True)
    started = time.perf_counter()
    figures: dict[str, Any] = {}
    try:
        SECTIONS[name](plan, models, work / name, budget, figures)
    except Exception as exc:  # the JSON still comes out, with what went wrong
        traceback.print_exc()
        figures["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
    finally:
        free(plan.device)
    figures["seconds"] = round(time.perf_counter() - started, 1)
    if budget.skipped:
        figures["skipped"] = budget.skipped
    return figures


def summary(plan: Plan, sections: dict[str, dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"sd15_512_50steps_s_per_image": None, "sd15_best_configuration": None,
                           **best_batch1(sections.get("sd15", {}), sections.get("compile", {}))}
    out.update({key: sections.get(sec, {}).get(fig) for key, (sec, fig) in HEADLINES.items()})
    if not plan.dry:
        out["goals"] = {key: (None if out[key] is None else (out[key] <= limit if at_most else out[key] >= limit))
                        for key, (limit, at_most) in GOALS.items()}
    return out


def result_path(folder: str, env: dict[str, Any]) -> Path:
    slug = re.sub(r"[^a-z0-9]+", "-", env["device_name"].lower()).strip("-")[:40]
    return Path(folder) / f"{env['date'][:10]}-{slug}{'-dry-run' if env['dry_run'] else ''}.json"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny models, tiny sizes (checks the script)")
    parser.add_argument("--only", default="", help=f"comma-separated sections of: {', '.join(SECTIONS)}")
    parser.add_argument("--budget-s", type=float, default=0.0, help="seconds for the whole run (default: 470, dry 280)")
    parser.add_argument("--out", default=os.environ.get("OUT", ""), help="folder for the JSON file (default $OUT)")
    args = parser.parse_args(argv)
    plan = DRY if args.dry_run else FULL
    if args.budget_s:
        plan = dataclasses.replace(plan, budget_s=args.budget_s)
    plan = dataclasses.replace(plan, out=args.out)
    asked = {n.strip() for n in args.only.split(",") if n.strip()}
    names = [n for n in SECTIONS if n in asked] or list(SECTIONS)
    unknown = sorted(asked - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section {unknown[0]!r}; choose from {', '.join(SECTIONS)}")
    if plan.device == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA GPU here: run with --dry-run to check the script on the CPU")
    if plan.threads:
        torch.set_num_threads(plan.threads)
    deadline = time.perf_counter() + plan.budget_s
    env = environment(plan)
    print(f"easel GPU bench on {env['device_name']} (torch {env['torch']}, diffusers {env['diffusers']}), "
          f"budget {plan.budget_s:.0f} s", flush=True)
    sections: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="easel-gpu-") as tmp:
        models = Models(Path(tmp) / "models", tiny=plan.dry, device=plan.device, dtype=plan.torch_dtype)
        for name in names:
            sections[name] = run_section(name, plan, models, Path(tmp), deadline - time.perf_counter())
        env["model_build_s"] = models.build_s
    result = {**env, **summary(plan, sections), "sections": sections}
    if args.out:
        path = result_path(args.out, env)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
        print(f"written to {path}", flush=True)
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main()
