"""Session-wide fixtures: a real redis-server on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.redis_server import RedisServer, running_redis


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One real redis-server for the whole test session (127.0.0.1, free port)."""
    with running_redis() as server:
        yield server
