"""Bench: what the engine costs on top of the pipeline, and what batching gains, on this machine.

    python bench/engine.py [--sizes 64,128] [--steps 4] [--runs 20] [--threads 1] [--sd15 auto]

With the tiny random-weight model (built locally, no download) it prints:

- per size: seconds per image run alone and in a batch of ``--batch`` compatible jobs, the speedup,
  and the largest pixel difference between a batched image and the same job run alone;
- ``overhead_ms_per_job``: the engine's round trip (submit -> ``Finished`` on the event loop) minus
  the raw pipeline call with the same parameters, medians of ``--runs`` interleaved pairs;
- ``shared_rss_ratio``: process RSS with text-to-image, image-to-image and inpainting pipelines
  loaded over RSS with the text-to-image pipeline alone (measured in a fresh subprocess), plus
  the same ratio for the bytes of parameter storage (1.0 means nothing was copied).

With CUDA (or ``--sd15 cpu`` for a slow check here) it also builds a full-size SD 1.5 architecture
with random weights (same FLOPs as the real model; cached under ``--cache``) and prints seconds per
image at 512 px for 50 steps with guidance 7.5 and for 1 step without guidance (SD-Turbo-like),
plain and with the fast path. The last line is one JSON object. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
for _key, _value in {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "DIFFUSERS_VERBOSITY": "error",
                     "TRANSFORMERS_VERBOSITY": "error", "HF_HUB_DISABLE_TELEMETRY": "1"}.items():
    os.environ.setdefault(_key, _value)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from config import Config, DeviceConfig, ModelConfig, load_config  # noqa: E402
from inference.call_overhead import trim_call_overhead  # noqa: E402
from inference.jobs import Cancelled, Failed, Finished, JobEvent, JobKind, TextToImageJob  # noqa: E402

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "easel-bench"
SD15_MARKER = "sd15-random-v1"
PROMPTS = ("a photo of a red fox", "a castle on a hill at night", "an owl in a forest, watercolor",
           "a ship on the sea, oil painting", "portrait of a robot, sketch")


# --------------------------------------------------------------------------- shared with throughput.py


def tiny_model(folder: Path) -> Path:
    from tests.fixtures.tiny_models import ensure_tiny_sd

    return ensure_tiny_sd(folder)


def write_config(work: Path, source: Path, *, name: str = "tiny", family: str = "sd15", size: int = 64,
                 steps: int = 4, guidance: float = 0.0, device: str = "cpu", dtype: str = "auto", threads: int = 0,
                 max_batch: int = 4, batch_wait_ms: int = 5, per_user: int = 4, total: int = 50,
                 channels_last: bool = False, compile: bool = False, pin_threads: bool = True) -> Config:
    """An easel.toml in ``work`` serving ``source`` (like tests/conftest.py's ``tiny_config``)."""
    work.mkdir(parents=True, exist_ok=True)
    toml = work / "easel.toml"
    toml.write_text(f"""
[model]
source = "{source}"
name = "{name}"
family = "{family}"
size = {size}
min_size = {min(64, size)}
max_size = {max(size, 128)}
steps = {steps}
max_steps = {max(steps, 50)}
guidance = {guidance}

[device]
device = "{device}"
dtype = "{dtype}"
threads = {threads}
channels_last = {"true" if channels_last else "false"}
compile = {"true" if compile else "false"}
pin_threads = {"true" if pin_threads else "false"}

[queue]
per_user = {per_user}
total = {max(total, per_user)}
max_batch = {max_batch}
batch_wait_ms = {batch_wait_ms}

[storage]
database = "easel.db"
outputs = "outputs"
""", encoding="utf-8")
    return load_config(toml, environ={})


def with_queue(config: Config, **changes: Any) -> Config:
    return dataclasses.replace(config, queue=dataclasses.replace(config.queue, **changes))


def t2i(job_id: str, *, size: int, steps: int, guidance: float = 0.0, seed: int = 0, owner: int = 1,
        model: str = "tiny", prompt: str = PROMPTS[0]) -> TextToImageJob:
    return TextToImageJob(job_id=job_id, owner=owner, prompt=prompt, width=size, height=size, steps=steps,
                          guidance=guidance, seed=seed, model=model)


def raw_call(pipe: Any, jobs: list[TextToImageJob]) -> tuple[float, list[Any]]:
    """The plain diffusers call for these jobs (one generator per image); returns (seconds, images).

    Under ``torch.inference_mode()``, as the engine runs it: the fastest way to call a pipeline by
    hand, so the ceiling is not lowered by autograd bookkeeping the bot itself skips."""
    first = jobs[0]
    generators = [torch.Generator(device=pipe.device).manual_seed(j.seed) for j in jobs]
    started = time.perf_counter()
    with torch.inference_mode():
        out = pipe(prompt=[j.prompt for j in jobs], num_inference_steps=first.steps, guidance_scale=first.guidance,
                   width=first.width, height=first.height, generator=generators)
    return time.perf_counter() - started, list(out.images)


def choose_sd15_device(choice: str) -> str | None:
    """The device for the full-size run, or None (printing why) when it is skipped."""
    if choice == "skip":
        return None
    if choice == "auto":
        if torch.cuda.is_available():
            return "cuda"
        print("full-size SD 1.5: skipped (no CUDA GPU here; `--sd15 cpu` runs it slowly on the CPU)")
        return None
    if choice == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--sd15 cuda: torch sees no CUDA GPU")
    return choice


def ensure_sd15_random(folder: Path) -> Path:
    """A full-size SD 1.5 pipeline with random weights saved as a diffusers folder (fp16, ~1.7 GB).

    Same architecture and FLOPs as the real model (UNet 860 M parameters, VAE, CLIP ViT-L/14 text
    encoder); no download. The tokenizer is the tiny test vocabulary: ids stay in range.
    """
    marker = folder / ".easel-bench"
    if marker.exists() and marker.read_text(encoding="utf-8") == SD15_MARKER:
        return folder
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from tests.fixtures.tiny_models import tokenizer_vocab

    print(f"building a random full-size SD 1.5 in {folder} (once) ...", flush=True)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8,
                                block_out_channels=(320, 640, 1280, 1280), layers_per_block=2)
    vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4,
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                        sample_size=512)
    vocab, merges = tokenizer_vocab()
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
        max_position_embeddings=77, hidden_act="quick_gelu", bos_token_id=len(tokenizer) - 2,
        eos_token_id=len(tokenizer) - 1, pad_token_id=len(tokenizer) - 1))
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       timestep_spacing="trailing", steps_offset=1)
    pipe = StableDiffusionPipeline(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.to(torch.float16).save_pretrained(folder)
    marker.write_text(SD15_MARKER, encoding="utf-8")
    return folder


class Outcomes:
    """An engine listener that lets the bench await each job's final event."""

    def __init__(self) -> None:
        self._futures: dict[str, asyncio.Future[JobEvent]] = {}
        self.at: dict[str, float] = {}

    def __call__(self, event: JobEvent) -> None:
        if isinstance(event, Finished | Failed | Cancelled):
            self.at[event.job_id] = time.perf_counter()
            self.future(event.job_id).set_result(event)

    def future(self, job_id: str) -> asyncio.Future[JobEvent]:
        if job_id not in self._futures:
            self._futures[job_id] = asyncio.get_running_loop().create_future()
        return self._futures[job_id]

    async def wait(self, job_id: str, timeout: float = 600) -> JobEvent:
        event = await asyncio.wait_for(self.future(job_id), timeout)
        if not isinstance(event, Finished):
            raise RuntimeError(f"job {job_id} did not finish: {event}")
        return event


# --------------------------------------------------------------------------- measurements


def batching_by_size(model: Any, sizes: list[int], steps: int, batch: int, runs: int) -> list[dict[str, Any]]:
    """Seconds per image alone vs in one batch, per size, through easel's own ``run_diffusion_batch``."""
    from inference.generate import run_diffusion_batch
    from inference.prepare import PreparedJob

    rows = []
    for size in sizes:
        jobs = [t2i(f"b{i}", size=size, steps=steps, seed=100 + i, model=model.name, prompt=PROMPTS[i % 5])
                for i in range(batch)]

        def run(group: list[TextToImageJob]) -> tuple[float, list[Any]]:
            started = time.perf_counter()
            results = run_diffusion_batch(model, [PreparedJob(j) for j in group], lambda *_: True)
            assert results is not None
            return time.perf_counter() - started, [r.images[0] for r in results]

        run(jobs[:1])
        run(jobs)  # first call at a shape pays one-off costs
        single, batched = [], []
        alone_images: list[Any] = []
        for _ in range(max(1, runs // 4)):
            alone = [run([j]) for j in jobs]
            single.append(sum(t for t, _ in alone) / batch)
            alone_images = [ims[0] for _, ims in alone]
            seconds, together = run(jobs)
            batched.append(seconds / batch)
        diff = max(int(np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16)).max())
                   for a, b in zip(alone_images, together, strict=True))
        s, b = statistics.median(single), statistics.median(batched)
        rows.append({"size": size, "single_s_per_image": round(s, 4), "batched_s_per_image": round(b, 4),
                     "speedup": round(s / b, 2), "max_pixel_diff": diff})
        print(f"  {size:>4} px, {steps} steps: alone {s * 1000:7.1f} ms/image, batch of {batch} "
              f"{b * 1000:7.1f} ms/image, speedup {s / b:4.2f}x, max pixel diff {diff}/255")
    return rows


async def engine_overhead(config: Config, size: int, steps: int, runs: int) -> dict[str, float]:
    """Median engine round trip minus median raw call, same job, interleaved pairs."""
    from inference.engine import Engine
    from inference.executor import GpuExecutor

    config = with_queue(config, max_batch=1)
    engine = Engine(config, GpuExecutor(config))
    outcomes = Outcomes()
    engine.add_listener(outcomes)
    await engine.start(warm_up=True)
    pipe = engine.executor.loaded(config.model.display_name).pipes[JobKind.IMAGINE]  # type: ignore[union-attr]
    trips, raws = [], []
    try:
        for i in range(runs + 2):
            job = t2i(f"o{i}", size=size, steps=steps, seed=i, model=config.model.display_name)
            started = time.perf_counter()
            engine.submit(job)
            await outcomes.wait(job.job_id)
            trip = time.perf_counter() - started
            raw, _ = await asyncio.wrap_future(engine.executor.submit(raw_call, pipe, [job]))
            if i >= 2:  # the first pairs warm the path up
                trips.append(trip)
                raws.append(raw)
    finally:
        await engine.stop()
    trip_ms, raw_ms = statistics.median(trips) * 1000, statistics.median(raws) * 1000
    print(f"  engine round trip {trip_ms:.2f} ms, raw pipeline call {raw_ms:.2f} ms (medians of {runs})")
    return {"engine_round_trip_ms": round(trip_ms, 3), "raw_call_ms": round(raw_ms, 3),
            "overhead_ms_per_job": round(trip_ms - raw_ms, 3)}


def rss_probe(model_dir: str) -> None:
    """(subprocess) RSS and parameter bytes with the base pipeline, then with all three."""
    from diffusers import AutoPipelineForImage2Image, AutoPipelineForInpainting, AutoPipelineForText2Image

    def rss() -> int:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def param_bytes(*pipes: Any) -> int:
        seen: dict[int, int] = {}
        for pipe in pipes:
            for component in pipe.components.values():
                if isinstance(component, torch.nn.Module):
                    for t in [*component.parameters(), *component.buffers()]:
                        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return sum(seen.values())

    base = AutoPipelineForText2Image.from_pretrained(model_dir, safety_checker=None, requires_safety_checker=False)
    base_rss, base_params = rss(), param_bytes(base)
    i2i = AutoPipelineForImage2Image.from_pipe(base)
    inpaint = AutoPipelineForInpainting.from_pipe(base)
    print(json.dumps({"base_rss": base_rss, "all_rss": rss(), "base_params": base_params,
                      "all_params": param_bytes(base, i2i, inpaint)}))


def shared_memory(model_dir: Path) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--rss-probe", str(model_dir)], capture_output=True, text=True,
                         check=True)
    probe = json.loads(out.stdout.strip().splitlines()[-1])
    rss_ratio = probe["all_rss"] / probe["base_rss"]
    param_ratio = probe["all_params"] / probe["base_params"]
    print(f"  RSS base {probe['base_rss'] / 2**20:.0f} MiB, all pipelines {probe['all_rss'] / 2**20:.0f} MiB "
          f"(ratio {rss_ratio:.3f}); parameter storage ratio {param_ratio:.3f}")
    return {"shared_rss_ratio": round(rss_ratio, 4), "shared_param_ratio": round(param_ratio, 4)}


def full_size(args: argparse.Namespace, device: str) -> dict[str, Any]:
    """Seconds per image for a random full-size SD 1.5, plain and with the configured fast paths."""
    from inference.loader import load_model

    folder = ensure_sd15_random(Path(args.cache) / "sd15-random")
    dtype = args.sd15_dtype or ("float16" if device == "cuda" else "float32")
    # "plain" is diffusers as loaded; the others are how easel's executor runs it (call overhead trimmed).
    variants = [("plain", False, False, False), ("trimmed", False, False, True), ("channels_last", True, False, True)]
    if args.compile:
        variants.append(("channels_last+compile", True, True, True))
    size, batch = args.sd15_size, args.batch
    settings = [("sd15", args.sd15_steps, 7.5), ("turbo-like", 1, 0.0)]
    out: dict[str, Any] = {"device": device, "dtype": dtype, "size": size}
    for label, channels_last, compiled, trimmed in variants:
        opts = DeviceConfig(device=device, dtype=dtype, channels_last=channels_last, compile=compiled, previews=False)
        model = load_model(ModelConfig(source=str(folder), name="sd15-random", family="sd15"), opts, ROOT)
        if trimmed:
            trim_call_overhead(model.pipes[JobKind.IMAGINE])
        for name, steps, guidance in settings:
            for n in (1, batch):
                jobs = [t2i(f"f{i}", size=size, steps=steps, guidance=guidance, seed=i, model=model.name)
                        for i in range(n)]
                seconds = _timed_full(model, jobs, repeats=1 if device == "cpu" else 3)
                out[f"{label}/{name}/batch{n}_s_per_image"] = round(seconds / n, 4)
                print(f"  {label:>22} {name:>10} ({steps:>2} steps, {size} px) batch {n}: {seconds / n:.3f} s/image",
                      flush=True)
        del model
        if device == "cuda":
            torch.cuda.empty_cache()
    return out


def call_overhead(config: Any, sizes: list[int], steps: int, batch: int, runs: int) -> dict[str, Any]:
    """A plain diffusers call against the same call with easel's per-call trims
    (inference/call_overhead.py), interleaved pairs per size, batches of ``batch``."""
    from inference.loader import load_model

    plain = load_model(config.model, config.device, config.base_dir).pipes[JobKind.IMAGINE]
    trimmed = load_model(config.model, config.device, config.base_dir).pipes[JobKind.IMAGINE]
    trim_call_overhead(trimmed)
    rows = []
    for size in sizes:
        jobs = [t2i(f"c{i}", size=size, steps=steps, seed=i, prompt=PROMPTS[i % len(PROMPTS)]) for i in range(batch)]
        raw_call(plain, jobs)
        raw_call(trimmed, jobs)
        pairs = [(raw_call(plain, jobs)[0], raw_call(trimmed, jobs)[0]) for _ in range(runs)]
        p, t = statistics.median(a for a, _ in pairs), statistics.median(b for _, b in pairs)
        rows.append({"size": size, "plain_ms": round(p * 1000, 2), "trimmed_ms": round(t * 1000, 2),
                     "speedup": round(p / t, 3)})
        print(f"  {size:>4} px, batch of {batch}: diffusers call {p * 1000:7.1f} ms plain, {t * 1000:7.1f} ms with "
              f"easel's call-overhead trims ({p / t:4.2f}x)", flush=True)
    return {"call_trims": rows}


def _timed_full(model: Any, jobs: list[TextToImageJob], repeats: int) -> float:
    from inference.generate import run_diffusion_batch
    from inference.prepare import PreparedJob

    prepared = [PreparedJob(j) for j in jobs]
    run_diffusion_batch(model, prepared, lambda *_: True)  # warm-up (and compilation) at this shape
    times = []
    for _ in range(repeats):
        if model.device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        run_diffusion_batch(model, prepared, lambda *_: True)
        if model.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="64,128", help="square sizes for single vs batched (default 64,128)")
    parser.add_argument("--steps", type=int, default=4, help="denoising steps of the tiny-model jobs (default 4)")
    parser.add_argument("--batch", type=int, default=4, help="jobs per batch (default 4)")
    parser.add_argument("--runs", type=int, default=20, help="timed runs per figure (default 20)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads, the same for every run (default 1)")
    parser.add_argument("--sd15", choices=("auto", "skip", "cuda", "cpu"), default="auto",
                        help="full-size SD 1.5 run: auto = on CUDA only (default)")
    parser.add_argument("--sd15-size", type=int, default=512)
    parser.add_argument("--sd15-steps", type=int, default=50)
    parser.add_argument("--sd15-dtype", choices=("float32", "float16", "bfloat16"), default="")
    parser.add_argument("--compile", action="store_true", help="also time channels_last + torch.compile")
    parser.add_argument("--cache", default=str(CACHE), help=f"where the random SD 1.5 is kept (default {CACHE})")
    parser.add_argument("--rss-probe", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rss_probe:
        rss_probe(args.rss_probe)
        return {}

    torch.set_num_threads(args.threads)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    figures: dict[str, Any] = {"threads": args.threads, "steps": args.steps}
    with tempfile.TemporaryDirectory(prefix="easel-bench-") as tmp:
        work = Path(tmp)
        model_dir = tiny_model(work / "tiny-sd")
        config = write_config(work, model_dir, size=sizes[0], steps=args.steps, threads=args.threads,
                              max_batch=args.batch)
        from inference.loader import load_model

        print(f"tiny model, {args.threads} torch thread(s), {args.steps} steps")
        model = load_model(config.model, config.device, config.base_dir)
        rows = batching_by_size(model, sizes, args.steps, args.batch, args.runs)
        del model
        figures["by_size"] = rows
        figures["batch4_speedup"] = rows[0]["speedup"]
        figures["batch_max_pixel_diff"] = max(r["max_pixel_diff"] for r in rows)
        figures.update(call_overhead(config, sizes, args.steps, args.batch, args.runs))
        figures.update(asyncio.run(engine_overhead(config, sizes[0], args.steps, args.runs)))
        figures.update(shared_memory(model_dir))
    device = choose_sd15_device(args.sd15)
    if device is not None:
        figures["sd15"] = full_size(args, device)
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
