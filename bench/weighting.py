"""The cost of prompt weighting and long prompts per job (ms) on the tiny SD model, 64 px, 4 steps.

One /imagine job through ``run_diffusion_batch`` (the GPU thread's work) with a plain prompt (text to
diffusers, as before), a weighted one (compel embeddings, 77 tokens) and a ~120-token one (compel,
two chunks), alternating round by round (this machine's speed drifts), medians reported; also the
prompt encoding alone (``prompt_embeddings``). Random weights, no download.
``python bench/weighting.py``; the last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from config import DeviceConfig, ModelConfig  # noqa: E402
from inference.generate import ready_pipe, run_diffusion_batch  # noqa: E402
from inference.jobs import JobKind, TextToImageJob  # noqa: E402
from inference.loader import load_model  # noqa: E402
from inference.prepare import prepare  # noqa: E402
from inference.prompting import prompt_embeddings  # noqa: E402


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from tests.fixtures.tiny_models import WORDS, ensure_tiny_sd

    prompts = {"plain": "a red fox in a forest", "weighted": "a (red:1.4) fox in a [misty] forest",
               "long": " ".join(list(WORDS) * 2)}
    with tempfile.TemporaryDirectory() as work_dir:
        model = load_model(ModelConfig(source=str(ensure_tiny_sd(Path(work_dir) / "tiny-sd")), name="tiny"),
                           DeviceConfig(device="cpu"))
        jobs = {k: TextToImageJob(job_id="b", owner=1, prompt=p, width=64, height=64, steps=args.steps,
                                  guidance=5.0, seed=1, model="tiny") for k, p in prompts.items()}
        job_ms: dict[str, list[float]] = {k: [] for k in prompts}
        encode_ms: dict[str, list[float]] = {k: [] for k in prompts}
        pipe = ready_pipe(model, JobKind.IMAGINE, jobs["plain"])
        for _ in range(args.rounds + 1):  # the first round warms up and is dropped
            for key, job in jobs.items():
                started = time.perf_counter()
                assert run_diffusion_batch(model, [prepare(job)], lambda *_: True) is not None
                job_ms[key].append((time.perf_counter() - started) * 1000)
                started = time.perf_counter()
                with torch.inference_mode():
                    prompt_embeddings(pipe, [job.prompt], None, sdxl=False)
                encode_ms[key].append((time.perf_counter() - started) * 1000)
    result = {"job_ms": {k: round(statistics.median(v[1:]), 1) for k, v in job_ms.items()},
              "compel_encode_ms": {k: round(statistics.median(v[1:]), 1) for k, v in encode_ms.items()},
              "tokens_long": len(model.tokenizer(prompts["long"], add_special_tokens=False).input_ids)}
    for what in ("job_ms", "compel_encode_ms"):
        print(what, ", ".join(f"{k} {v} ms" for k, v in result[what].items()))  # type: ignore[union-attr]
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
