"""The cost of a ControlNet job relative to a plain one (ms) on the tiny SD model, 64 px, 4 steps.

One /imagine job through ``run_diffusion_batch`` (the GPU thread's work) without control, and with a
canny ControlNet (``ControlNetModel.from_unet`` of the tiny UNet: the same shape as a real one is to
its model) whose map OpenCV makes from a 64 px picture in the same call; the two alternate round by
round (this machine's speed drifts), medians reported, and the preprocessing alone. Random weights,
no download. ``python bench/control.py``; the last line is JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from config import ControlNetConfig, DeviceConfig, ModelConfig  # noqa: E402
from inference.control.preprocess import canny  # noqa: E402
from inference.generate import run_diffusion_batch  # noqa: E402
from inference.jobs import TextToImageJob  # noqa: E402
from inference.loader import load_model  # noqa: E402
from inference.prepare import PreparedJob  # noqa: E402


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from tests.fixtures.tiny_controlnet import ensure_tiny_controlnet
    from tests.fixtures.tiny_models import ensure_tiny_sd

    picture = Image.new("RGB", (64, 64), "black")
    ImageDraw.Draw(picture).rectangle((16, 16, 44, 44), fill="white")
    with tempfile.TemporaryDirectory() as work_dir:
        sd = ensure_tiny_sd(Path(work_dir) / "tiny-sd")
        net = ensure_tiny_controlnet(sd, Path(work_dir) / "tiny-controlnet")
        model = load_model(ModelConfig(source=str(sd), name="tiny", controlnets=(
            ControlNetConfig(source=str(net), mode="canny"),)), DeviceConfig(device="cpu"))
        plain = TextToImageJob(job_id="p", owner=1, prompt="a red fox", width=64, height=64, steps=args.steps,
                               guidance=5.0, seed=1, model="tiny")
        jobs = {"plain": PreparedJob(plain),
                "control": PreparedJob(dataclasses.replace(plain, job_id="c", control_image="x.png", control_mode="canny"),
                                       control_image=picture)}
        job_ms: dict[str, list[float]] = {k: [] for k in jobs}
        map_ms: list[float] = []
        for _ in range(args.rounds + 1):  # the first round warms up and is dropped
            for key, prepared in jobs.items():
                started = time.perf_counter()
                assert run_diffusion_batch(model, [prepared], lambda *_: True) is not None
                job_ms[key].append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            canny(picture, (64, 64))
            map_ms.append((time.perf_counter() - started) * 1000)
    medians = {k: round(statistics.median(v[1:]), 1) for k, v in job_ms.items()}
    result = {"job_ms": medians, "canny_map_ms": round(statistics.median(map_ms[1:]), 2),
              "control_vs_plain": round(medians["control"] / medians["plain"], 2)}
    print("job_ms", ", ".join(f"{k} {v} ms" for k, v in medians.items()), f"(canny map {result['canny_map_ms']} ms)")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
