"""``python bot.py --check`` with ``backend = "remote"``: one small image through the API.

The local check loads the model on this machine; here that would download gigabytes a GPU-less
host cannot use. Instead the check asks the service for one image at the model's smallest size,
which proves the token, the provider, the model id and the network path in one go (and costs one
request).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

from config import Config
from inference.jobs import TextToImageJob
from inference.prepare import PreparedJob
from inference.remote.executor import RemoteExecutor

CHECK_PROMPT = "a lighthouse on a cliff at sunset"


@dataclass(frozen=True)
class RemoteCheckReport:
    where: str  # remote:<provider> or remote:<endpoint host>
    model: str
    source: str
    family: str
    image_size: tuple[int, int]
    steps: int
    generate_s: float
    token_present: bool


def run_remote_check(config: Config, environ: Mapping[str, str] | None = None) -> RemoteCheckReport:
    """Raises ModelLoadError (setup problems) or RemoteError (what the service said), one line each."""
    executor = RemoteExecutor(config, environ=environ)
    try:
        model = executor.model("")
        side = model.preset.min_size
        steps = min(model.preset.steps, 2)
        job = TextToImageJob(job_id="check", owner=0, prompt=CHECK_PROMPT, width=side, height=side, steps=steps,
                             guidance=model.preset.guidance, seed=1, model=model.name)
        started = time.perf_counter()
        image = executor.client.generate(PreparedJob(job), job.seed, None if config.remote.base_url else model.source,
                                         model.name, threading.Event())
        return RemoteCheckReport(where=model.device, model=model.name, source=config.remote.base_url or model.source,
                                 family=model.family, image_size=image.size, steps=steps,
                                 generate_s=time.perf_counter() - started, token_present=executor.client.has_token)
    finally:
        executor.shutdown()
