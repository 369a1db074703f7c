"""A real three-primary Redis Cluster for the tests of this folder (``tests/support/redis_cluster.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio import Redis

from callrouter.redis_client import RedisTarget, connect
from tests.support.redis_cluster import RedisClusterSet, running_cluster


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisClusterSet]:
    with running_cluster(max_lifetime_s=600) as found:
        yield found


def cluster_client(cluster: RedisClusterSet) -> Redis:
    """A client of ``cluster`` made by the project's one factory, as ``redis.cluster = true`` does."""
    return connect(RedisTarget(cluster.url, cluster=True), connect_timeout=1.0, timeout=2.0)


@pytest.fixture
async def cluster_redis(cluster: RedisClusterSet) -> AsyncIterator[Redis]:
    redis = cluster_client(cluster)
    try:
        yield redis
    finally:
        await redis.aclose()
