"""Fixtures for live queue state tests: a Redis client on the session's real
redis-server and a fresh key prefix per test (no test sees another's keys)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from routing.live.lease import WriterLease
from routing.live.store import QueueStateStore
from routing.redis_keys import RedisKeys
from tests.support.redis_server import RedisServer


@pytest.fixture
def keys() -> RedisKeys:
    """A key schema under a prefix no other test uses."""
    return RedisKeys(prefix=f"test-{uuid.uuid4().hex[:12]}:")


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_server.url, decode_responses=True)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def store(redis: Redis, keys: RedisKeys) -> QueueStateStore:
    """A store whose writer holds the lease (60 s, longer than any test)."""
    lease = WriterLease(redis, "writer-a", ttl_s=60, keys=keys)
    assert await lease.acquire()
    return QueueStateStore(redis, "writer-a", keys)
