"""What ``/metrics`` reads from the cached live state: toggles in force and the copy's age."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import Redis

from ivr.controller import PlanHolder
from routing import metrics
from routing.core.live import Toggle
from routing.live.source import CachedLiveSource, signed_toggle_json
from routing.redis_keys import RedisKeys
from tests.controller.conftest import EXAMPLE
from tests.support.redis_server import RedisServer
from tests.support.toggle_keys import KEYRING

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


async def test_toggles_in_force_and_the_copys_age_are_read_for_the_metrics(redis: Redis) -> None:
    keys = RedisKeys(prefix=f"test-{uuid.uuid4().hex[:8]}:")
    holder = PlanHolder.load(EXAMPLE)
    cached = CachedLiveSource(redis, lambda: holder.current, keys=keys, keyring=KEYRING)
    assert metrics.age_since(cached.refreshed_monotonic) is None  # never refreshed: no figure
    for kind, tenant, toggle in (
        ("closure", "harborough", Toggle("evacuated", "sam", NOW + timedelta(minutes=30))),
        ("emergency", "charnwood", Toggle("flood", "sam", NOW + timedelta(minutes=5))),
    ):
        key = keys.toggle(kind, tenant)
        await redis.set(key, signed_toggle_json(KEYRING, key, toggle, since=NOW))
    await cached.refresh(NOW)
    assert sorted(cached.active_toggles(NOW)) == [("charnwood", "emergency"), ("harborough", "closure")]
    assert cached.active_toggles(NOW + timedelta(minutes=10)) == [("harborough", "closure")]  # one expired
    await asyncio.sleep(0.05)
    age = metrics.age_since(cached.refreshed_monotonic)
    assert age is not None
    assert 0.05 <= age < 1
    metrics.watch(toggles=lambda: cached.active_toggles(NOW), live_age_s=lambda: 0.25)
    try:
        text = metrics.render()[0].decode()
    finally:
        metrics.watch(toggles=None, live_age_s=None)
    assert 'callrouter_toggles_active{kind="closure",tenant="harborough"} 1.0' in text
    assert 'callrouter_toggles_active{kind="emergency",tenant="charnwood"} 1.0' in text
    assert "callrouter_live_state_age_seconds 0.25" in text
