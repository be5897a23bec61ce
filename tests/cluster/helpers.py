"""A Valkey server, worker processes and a dispatcher for the cluster tests."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

from config import ClusterConfig, Config

ROOT = Path(__file__).resolve().parents[2]


def cluster_config(config: Config, url: str, **overrides: object) -> Config:
    fields = {"redis_url": url, "prefix": "t", "heartbeat_s": 0.2, "lease_s": 1.0, **overrides}
    return dataclasses.replace(config, cluster=ClusterConfig(**fields))  # type: ignore[arg-type]


def worker_toml(config: Config, url: str, folder: Path, **overrides: object) -> Path:
    """The tiny test config as a file, with a [cluster] section, for ``bot.py --worker``."""
    text = (config.base_dir / "easel.toml").read_text(encoding="utf-8")
    text = text.replace('database = "easel.db"', f'database = "{folder / "w.db"}"')
    text = text.replace('outputs = "outputs"', f'outputs = "{folder / "out"}"')
    rows = {"redis_url": url, "prefix": "t", "heartbeat_s": 0.2, "lease_s": 1.0, **overrides}
    text += "\n[cluster]\n" + "".join(f"{k} = {v!r}\n".replace("'", '"') for k, v in rows.items())
    path = folder / "worker.toml"
    path.write_text(text, encoding="utf-8")
    return path


def start_worker(toml: Path, name: str) -> subprocess.Popen[bytes]:
    """``bot.py --worker`` as a process; its output goes to ``worker-<name>.log`` beside ``toml``.

    A file, not a pipe: a pipe nobody reads fills up and a chatty worker would block on its logging."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "EASEL_CLUSTER__WORKER_NAME": name}
    with open(worker_log(toml, name), "wb") as log:
        return subprocess.Popen([sys.executable, str(ROOT / "bot.py"), "--worker", "--config", str(toml)],
                                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def worker_log(toml: Path, name: str) -> Path:
    return toml.parent / f"worker-{name}.log"


def log_tail(toml: Path, name: str) -> str:
    path = worker_log(toml, name)
    return path.read_text(encoding="utf-8", errors="replace")[-3000:] if path.exists() else ""


def wait_for(check: Callable[[], object], timeout: float = 45.0, what: str = "condition") -> None:
    end = time.monotonic() + timeout
    while not check():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def wait_for_worker(client: redis.Redis, name: str, process: subprocess.Popen[bytes]) -> None:
    def up() -> bool:
        if process.poll() is not None:
            toml = Path(process.args[-1])  # type: ignore[index]
            raise AssertionError(f"worker {name} exited: {log_tail(toml, name)}")
        return bool(client.exists(f"t:worker:{name}"))

    wait_for(up, what=f"worker {name}")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
    process.wait(timeout=10)


def wait_until_running(client: redis.Redis, job_id: str, name: str, process: subprocess.Popen[bytes]) -> None:
    """Until worker ``name`` holds ``job_id`` (its ``running`` entry, written as it takes the batch):
    not a progress step, which a fast machine may finish a tiny job without reporting."""
    def held() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"worker {name} exited: {log_tail(Path(process.args[-1]), name)}")  # type: ignore[index]
        return client.hget("t:running", job_id) == name.encode()

    wait_for(held, what=f"worker {name} to take job {job_id}")


@contextmanager
def worker_and_dispatcher(config: Config, url: str, client: redis.Redis,
                          folder: Path) -> Iterator[tuple[subprocess.Popen[bytes], Any]]:
    """A worker process "w1" serving ``config``'s models, up and heartbeating, and the bot's dispatcher;
    both stopped at the end of the block."""
    from inference.cluster.dispatch import ClusterExecutor

    worker = start_worker(worker_toml(config, url, folder), "w1")
    executor = ClusterExecutor(cluster_config(config, url))
    try:
        wait_for_worker(client, "w1", worker)
        yield worker, executor
    finally:
        executor.shutdown()
        stop(worker)
