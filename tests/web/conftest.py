"""Fixtures for the web service's tests: a clean Redis database, the identity store, the real
app behind aiohttp's TestServer (helpers in ``tests/support/web.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from tests.support.redis_server import RedisServer
from tests.support.web import store_for, web_test_app
from tests.web import probe_feature
from web.identity import IdentityStore

WEB_DB = 11  # a database of the session's redis-server for these tests alone, emptied per test


@pytest.fixture
async def web_redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    redis = Redis(host=redis_server.host, port=redis_server.port, db=WEB_DB)
    await redis.flushdb()
    yield redis
    await redis.aclose()


@pytest.fixture
def web_store(web_redis: Redis) -> IdentityStore:
    return store_for(web_redis)


@pytest.fixture
async def web_client(web_redis: Redis) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    app = web_test_app(web_redis, extra_features=(probe_feature,))
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield client
