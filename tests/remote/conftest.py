"""Fixtures for the remote backend: a fake Inference API on loopback and configs pointing at it.

Every test here runs with huggingface_hub's HTTP session replaced by one that refuses any host but
127.0.0.1, so the real endpoint (or the Hub, for provider look-ups) cannot be contacted even by
mistake. HF_HUB_OFFLINE stays set for the process; only the offline check the executor does at
start-up is told otherwise, since the loopback guard now stands in for it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import huggingface_hub
import pytest
from huggingface_hub import constants as hf_constants
from huggingface_hub.utils._http import default_client_factory

from config import Config, load_config
from inference.remote import RemoteExecutor
from tests.remote.fake_api import FakeInferenceAPI

TOKEN = "hf_test_token"
ENV = {"HF_TOKEN": TOKEN}


class BlockedRequest(AssertionError):
    """A test tried to reach something other than the loopback fake."""


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    blocked: list[str] = []

    def guard(request: httpx2.Request) -> None:
        if request.url.host != "127.0.0.1":
            blocked.append(str(request.url))
            raise BlockedRequest(f"test tried to reach {request.url}")

    huggingface_hub.set_client_factory(
        lambda: httpx2.Client(event_hooks={"request": [guard]}, follow_redirects=True, timeout=None))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    try:
        yield blocked
    finally:
        huggingface_hub.set_client_factory(default_client_factory)
    assert not blocked, f"requests left loopback: {blocked}"


@pytest.fixture
def api() -> Iterator[FakeInferenceAPI]:
    server = FakeInferenceAPI(token=TOKEN).start()
    yield server
    server.stop()


def write_config(folder: Path, url: str, *, extra: str = "") -> Config:
    (folder / "easel.toml").write_text(
        f"""
backend = "remote"

[model]
source = "stabilityai/sdxl-turbo"
family = "sdxl-turbo"
size = 64
min_size = 64
max_size = 128
steps = 2
max_steps = 8

[remote]
base_url = "{url}"
timeout_s = 5
retries = 2
backoff_s = 0.01
max_wait_s = 1
concurrency = 2

[queue]
per_user = 4
total = 20
max_batch = 4
batch_wait_ms = 0

[storage]
database = "easel.db"
outputs = "outputs"
{extra}
""",
        encoding="utf-8",
    )
    return load_config(folder / "easel.toml", environ={})


@pytest.fixture
def config(tmp_path: Path, api: FakeInferenceAPI) -> Config:
    return write_config(tmp_path, api.url)


def with_remote(config: Config, **changes: Any) -> Config:
    return dataclasses.replace(config, remote=dataclasses.replace(config.remote, **changes))


@pytest.fixture
def make_executor() -> Iterator[Any]:
    """``make_executor(config, environ=..., **kw)``: a RemoteExecutor shut down after the test."""
    made: list[RemoteExecutor] = []

    def make(config: Config, environ: dict[str, str] | None = None, **kw: Any) -> RemoteExecutor:
        executor = RemoteExecutor(config, environ=ENV if environ is None else environ, **kw)
        made.append(executor)
        return executor

    yield make
    for executor in made:
        executor.shutdown()
