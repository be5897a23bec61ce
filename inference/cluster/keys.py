"""Redis key names and the connection, shared by the bot and its workers.

- ``<prefix>:jobs:<model>``: a stream of batches for one model (``<prefix>:jobs:-`` for kinds that
  need none, e.g. /anime), read by the consumer group ``workers``; a worker reads its models' streams.
- ``<prefix>:results``: one entry per finished job, read by the bot's group ``bot``.
- ``<prefix>:progress``: Started/Progress events (capped, read without a group: only the latest matter).
- ``<prefix>:worker:<name>``: a worker's capabilities, expiring unless its heartbeat renews it.
- ``<prefix>:running``: job id -> worker, while a worker runs it (a restarted bot waits for it).
- ``<prefix>:cancel:<job id>``: set by the bot when a member cancels a job that a worker holds (and
  published on the channel ``<prefix>:cancels``, so a running job stops at its next step).
"""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ResponseError

from config import ClusterConfig, read_secret

WORKERS_GROUP = "workers"
BOT_GROUP = "bot"
ANY_MODEL = "-"  # the stream of jobs that need no diffusion model
PROGRESS_MAXLEN = 2000


@dataclass(frozen=True)
class Keys:
    prefix: str

    def jobs(self, model: str) -> str:
        return f"{self.prefix}:jobs:{model or ANY_MODEL}"

    @property
    def results(self) -> str:
        return f"{self.prefix}:results"

    @property
    def progress(self) -> str:
        return f"{self.prefix}:progress"

    def worker(self, name: str) -> str:
        return f"{self.prefix}:worker:{name}"

    @property
    def workers_pattern(self) -> str:
        return f"{self.prefix}:worker:*"

    @property
    def running(self) -> str:
        return f"{self.prefix}:running"

    def cancel(self, job_id: str) -> str:
        return f"{self.prefix}:cancel:{job_id}"

    @property
    def cancels(self) -> str:
        """The pub/sub channel a cancelled job's id is published on, for the worker running it."""
        return f"{self.prefix}:cancels"


def connect(cluster: ClusterConfig) -> aioredis.Redis:
    """A client for ``cluster.redis_url``; the password (if any) comes from ``cluster.password_env``.

    Commands retry with exponential backoff across a dropped connection (a Redis restart)."""
    password = read_secret(cluster.password_env) or None
    return aioredis.Redis.from_url(
        cluster.redis_url, password=password, decode_responses=False, health_check_interval=30,
        retry=Retry(ExponentialBackoff(cap=5.0, base=0.2), 6), socket_connect_timeout=5)


async def ensure_group(client: aioredis.Redis, stream: str, group: str) -> None:
    """Create ``group`` on ``stream`` (and the stream) if missing; reading from its start."""
    try:
        await client.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise
