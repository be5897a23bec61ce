"""Switching between two models: back from CPU RAM (``device.resident_models = 2``) vs from disk (1).

Two models (the tiny SD model under two names) are used in turn, A B A B ...,
through the executor's own switching (inference/residency.py); each switch is timed as the executor
records it. On a CPU host "RAM" is the device, so a parked model costs nothing to switch back to;
on a GPU the same code copies it from pinned RAM. Run it on a GPU with ``--device cuda``.
``python bench/residency.py``; the last line is JSON (``model_switch_s_ram``, ``model_switch_s_disk``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from config import Config, DeviceConfig, ModelConfig  # noqa: E402
from inference.executor import GpuExecutor  # noqa: E402


def switch_seconds(config: Config, resident: int, switches: int) -> list[float]:
    """Seconds of each switch after both models were loaded once, with ``resident`` models kept."""
    config = dataclasses.replace(config, device=dataclasses.replace(config.device, resident_models=resident))
    executor = GpuExecutor(config)
    try:
        names = [m.display_name for m in config.all_models]
        for i in range(switches + 2):
            executor.submit(executor.model, names[i % 2]).result()
        return [seconds for _, _, seconds in executor.model_switches()[2:]]
    finally:
        executor.shutdown()


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--switches", type=int, default=6)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from tests.fixtures.tiny_models import ensure_tiny_sd

    with tempfile.TemporaryDirectory() as work_dir:
        source = str(ensure_tiny_sd(Path(work_dir) / "tiny-sd"))
        first = ModelConfig(source=source, name="a", family="sd15")
        config = Config(model=first, models=(dataclasses.replace(first, name="b"),),
                        device=DeviceConfig(device=args.device, previews=False, pin_threads=False))
        ram = switch_seconds(config, 2, args.switches)
        disk = switch_seconds(config, 1, args.switches)
    result = {"device": args.device, "switches": args.switches,
              "model_switch_s_ram": round(statistics.median(ram), 6),
              "model_switch_s_disk": round(statistics.median(disk), 6)}
    print(f"model switch on {args.device}: from RAM {result['model_switch_s_ram']} s, "
          f"from disk {result['model_switch_s_disk']} s (medians of {args.switches})")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
