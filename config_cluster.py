"""Checks of ``[cluster]`` (workers through Redis Streams, inference/cluster/)."""

from __future__ import annotations

import re

from config import ClusterConfig, ConfigError

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PREFIX = re.compile(r"[A-Za-z0-9_.-]{1,40}")
# A worker's pixel limit: below 64x64 it could make nothing; the top is far above any job (4096x4096).
MIN_WORKER_PIXELS, MAX_WORKER_PIXELS = 64 * 64, 2**31 - 1


def check_cluster(c: ClusterConfig) -> None:
    """Checked whether or not ``redis_url`` is set, so a mistake shows before the day it is."""

    def need(cond: bool, message: str) -> None:
        if not cond:
            raise ConfigError(message)

    need(not c.redis_url or c.redis_url.startswith(("redis://", "rediss://", "unix://")),
         f"cluster.redis_url: {c.redis_url!r} must start with redis://, rediss:// (TLS) or unix:// (or be empty)")
    need(_ENV_NAME.fullmatch(c.password_env) is not None,
         "cluster.password_env: must be the NAME of an environment variable, not the password itself")
    need(_PREFIX.fullmatch(c.prefix) is not None,
         f"cluster.prefix: {c.prefix!r} must be 1-40 letters, digits, '.', '_' or '-'")
    need(1 <= c.slots <= 16, f"cluster.slots: {c.slots} must be between 1 and 16")
    need(0.1 <= c.heartbeat_s <= 60, f"cluster.heartbeat_s: {c.heartbeat_s:g} must be between 0.1 and 60")
    need(c.lease_s >= 3 * c.heartbeat_s,
         f"cluster.lease_s: {c.lease_s:g} must be at least three heartbeats ({3 * c.heartbeat_s:g})")
    need(2 <= c.in_flight <= 1024, f"cluster.in_flight: {c.in_flight} must be between 2 and 1024")
    need(1 <= c.max_attempts <= 10, f"cluster.max_attempts: {c.max_attempts} must be between 1 and 10")
    need(c.no_worker_timeout_s > 0, "cluster.no_worker_timeout_s: must be above 0")
    need(bool(c.redis_url) or not c.local_worker,
         "cluster.local_worker: needs cluster.redis_url (the local worker serves the cluster's job streams)")
    need(0 < c.max_entry_mb <= 512, f"cluster.max_entry_mb: {c.max_entry_mb:g} must be above 0 and at most 512")
    need(c.max_pixels == 0 or MIN_WORKER_PIXELS <= c.max_pixels <= MAX_WORKER_PIXELS,
         f"cluster.max_pixels: {c.max_pixels} must be 0 (no limit) or between {MIN_WORKER_PIXELS} (64x64) "
         f"and {MAX_WORKER_PIXELS}")
