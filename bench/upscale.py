"""Seconds and peak memory of a tiled 4x upscale on a tiny random-weight ESRGAN (spandrel), CPU.

``python bench/upscale.py``: a 4x of a 512 px image (seconds, median of 3), then, each in a fresh
child process, the peak memory at 256, 512 and 1024 px inputs. Memory is the process's peak RSS
(``ru_maxrss``) above its RSS just before the upscale (the model loaded), in MiB, next to the size
of the output buffers the tiler must hold (float32 RGB sum + weight, and the uint8 result: they grow
with the output by design); what stays flat with tiling is the rest (``working_mib``), the model's
working memory per tile.
Prints JSON last.
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TILE = 256


def rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20


def setup(folder: Path):  # noqa: ANN201
    import torch

    from config import UpscalerConfig
    from inference.upscale import UpscalerWeights
    from inference.upscale.loading import UpscalerModels
    from tests.fixtures.tiny_upscalers import tiny_esrgan

    torch.set_num_threads(1)
    path = tiny_esrgan(folder / "tiny-x4.pth", scale=4)
    store = UpscalerWeights(folder / "cache", (UpscalerConfig("tiny", str(path), scale=4),))
    return UpscalerModels(store, torch.device("cpu")).get("tiny")


def picture(side: int):  # noqa: ANN201
    import numpy as np
    from PIL import Image

    return Image.fromarray((np.random.RandomState(0).rand(side, side, 3) * 255).astype("uint8"))


def one(side: int) -> dict[str, float]:
    from inference.upscale.tiling import upscale_tiled

    with tempfile.TemporaryDirectory() as folder:
        model = setup(Path(folder))
        image = picture(side)
        before = rss_mib()
        started = time.perf_counter()
        out = upscale_tiled(model.descriptor, image, 4, tile=TILE)
        seconds = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        assert out is not None and out.size == (side * 4, side * 4)
        buffers = (side * 4) ** 2 * (4 * 4 + 3) / 2**20  # float32 RGB sum + weight, and the uint8 result
        return {"side": side, "seconds": round(seconds, 2), "peak_rss_above_start_mib": round(peak - before, 1),
                "output_buffers_mib": round(buffers, 1), "working_mib": round(peak - before - buffers, 1)}


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--one":
        print(json.dumps(one(int(sys.argv[2]))))
        return
    runs = [json.loads(subprocess.run([sys.executable, __file__, "--one", str(side)], check=True,
                                      capture_output=True, text=True).stdout.strip().splitlines()[-1])
            for side in (256, 512, 1024, 512, 512)]
    at_512 = [r["seconds"] for r in runs if r["side"] == 512]
    summary = {
        "model": "tiny ESRGAN 4x (8 filters, 1 RRDB block), random weights, CPU, 1 torch thread",
        "tile": TILE, "overlap": 16,
        "seconds_4x_512px_median": statistics.median(at_512),
        "memory": "peak RSS (ru_maxrss) above RSS before the upscale, per fresh process, MiB",
        "by_side": {str(r["side"]): r for r in runs[:3]},
    }
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
