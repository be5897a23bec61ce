"""[cluster] in easel.toml: read, checked, and off by default; /easel status when Redis is unreachable."""

from concurrent.futures import Future
from pathlib import Path

import pytest

from config import ConfigError, load_config
from inference.cluster.dispatch import ClusterExecutor
from inference.cluster.status import cluster_status
from inference.engine import Engine
from tests.cluster.helpers import cluster_config


def _load(tmp_path: Path, rows: str):
    toml = tmp_path / "easel.toml"
    toml.write_text(f"[cluster]\n{rows}\n", encoding="utf-8")
    return load_config(toml, environ={})


def test_cluster_mode_is_off_by_default_and_read_from_its_section(tmp_path: Path) -> None:
    assert _load(tmp_path, "").cluster.redis_url == ""
    cfg = _load(tmp_path, 'redis_url = "rediss://10.0.0.5:6380/0"\nslots = 2')
    assert cfg.cluster.redis_url == "rediss://10.0.0.5:6380/0" and cfg.cluster.slots == 2


@pytest.mark.parametrize(("rows", "message"), [
    ('redis_url = "http://x"', "must start with redis://"),
    ('password_env = "s3cret pass"', "NAME of an environment variable"),
    ('prefix = "a b"', "cluster.prefix"),
    ("slots = 0", "cluster.slots"),
    ("heartbeat_s = 5\nlease_s = 10", "at least three heartbeats"),
    ("max_attempts = 0", "cluster.max_attempts"),
    ("max_entry_mb = 0", "cluster.max_entry_mb"),
    ("in_flight = 1", "cluster.in_flight"),
    ("in_flight = 5000", "cluster.in_flight"),
])
def test_a_wrong_cluster_setting_is_refused_with_its_name(tmp_path: Path, rows: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _load(tmp_path, rows)


async def test_status_says_when_the_workers_cannot_be_asked() -> None:
    class Unreachable:
        def workers(self) -> Future:
            future: Future = Future()
            future.set_exception(ConnectionError("refused"))
            return future

    assert await cluster_status(Unreachable()) == "Workers: unknown (Redis: ConnectionError)"
    assert await cluster_status(object()) == ""


def test_the_engine_hands_the_cluster_as_many_batches_as_in_flight_says(tiny_config, valkey) -> None:
    config = cluster_config(tiny_config, valkey.connection_url, in_flight=40)
    executor = ClusterExecutor(config)
    try:
        assert executor.in_flight == 40
        assert Engine(config, executor)._slots._value == 40  # noqa: SLF001 - the engine's hand-over slots
    finally:
        executor.shutdown()
