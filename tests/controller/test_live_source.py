"""Live state for decisions from a real redis-server: per-call reads and the cached copy."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import Redis

from ivr.controller import PlanHolder
from routing.core.decide import Call, decide, describe
from routing.core.live import LiveState, QueueSnapshot, Toggle, Toggles
from routing.live.source import CachedLiveSource, RedisLiveSource, signed_toggle_json, verified_toggle
from routing.live.store import snapshot_json
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


@pytest.fixture
def keys() -> RedisKeys:
    return RedisKeys(prefix=f"test-{uuid.uuid4().hex[:8]}:")


def test_toggle_round_trips_through_json() -> None:
    """What the supervisor tools store (signed) is what decisions read."""
    toggle = Toggle("flooding", "sam", NOW + timedelta(hours=1), service="waste")
    key = "callrouter:toggle:emergency:harborough"
    assert verified_toggle(KEYRING, key, signed_toggle_json(KEYRING, key, toggle, NOW)) == toggle


async def test_redis_source_reads_partner_latch_and_toggles(redis: Redis, keys: RedisKeys) -> None:
    """One read brings a partner centre's snapshot, the latches and the tenant's toggles."""
    plan = PlanHolder.load(EXAMPLE).current
    partner = QueueSnapshot("harborough", 0, 0, 2, 2, NOW)
    await redis.set(keys.centre_snapshot("harborough"), snapshot_json(partner))
    await redis.set(keys.overflow_latch("charnwood", "general"), "1")
    key = keys.toggle("emergency", "charnwood")
    flood = Toggle("flood", "sam", NOW + timedelta(hours=1))
    await redis.set(key, signed_toggle_json(KEYRING, key, flood, NOW))
    live, toggles = await RedisLiveSource(redis, keys=keys, keyring=KEYRING).read(plan, "charnwood", NOW)
    assert live.partners == {"harborough": partner}
    assert live.overflowing == frozenset({"charnwood/general"})
    assert toggles.emergency["charnwood"].reason == "flood"
    decision = decide(Call("01632960100"), plan, live, toggles, NOW)
    assert decision.state == "emergency"


async def test_cached_source_serves_from_memory_and_shares_latches(redis: Redis, keys: RedisKeys) -> None:
    """A latch set by one instance reaches Redis and another instance's copy."""
    holder = PlanHolder.load(EXAMPLE)
    first = CachedLiveSource(redis, lambda: holder.current, keys=keys, refresh_s=0.05)
    second = CachedLiveSource(redis, lambda: holder.current, keys=keys, refresh_s=0.05)
    runners = [asyncio.create_task(s.run(lambda: NOW)) for s in (first, second)]
    try:
        await first.remember((("harborough/revenues", True),))
        live, _ = await first.read(holder.current, "harborough", NOW)
        assert "harborough/revenues" in live.overflowing  # at once, from memory
        for _ in range(100):
            live, _ = await second.read(holder.current, "harborough", NOW)
            if "harborough/revenues" in live.overflowing:
                break
            await asyncio.sleep(0.02)
        assert "harborough/revenues" in live.overflowing
        assert await redis.get(keys.overflow_latch("harborough", "revenues")) == b"1"
    finally:
        for task in runners:
            task.cancel()
        await asyncio.gather(*runners, return_exceptions=True)


async def test_cached_source_applies_a_toggle_within_one_second(redis: Redis, keys: RedisKeys) -> None:
    """A supervisor's toggle written to Redis is in force on this instance within a second."""
    holder = PlanHolder.load(EXAMPLE)
    cached = CachedLiveSource(redis, lambda: holder.current, keys=keys, keyring=KEYRING)
    runner = asyncio.create_task(cached.run(lambda: NOW))
    try:
        await asyncio.sleep(0.1)
        toggle = Toggle("building evacuated", "sam", NOW + timedelta(minutes=30))
        key = keys.toggle("closure", "harborough")
        await redis.set(key, signed_toggle_json(KEYRING, key, toggle, NOW))
        written = asyncio.get_running_loop().time()
        while True:
            live, toggles = await cached.read(holder.current, "harborough", NOW)
            if "harborough" in toggles.closure:
                break
            assert asyncio.get_running_loop().time() - written < 1.0
            await asyncio.sleep(0.01)
        decision = decide(Call("01632960001"), holder.current, live, toggles, NOW)
        assert describe(decision.destination).startswith("external 01632 960999")
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)


async def test_cached_source_survives_redis_going_away(keys: RedisKeys) -> None:
    """Nothing listening: refreshes fail quietly, reads answer at once with unknown state."""
    holder = PlanHolder.load(EXAMPLE)
    dead = Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.1)
    cached = CachedLiveSource(dead, lambda: holder.current, keys=keys, refresh_s=0.02, timeout_s=0.05)
    runner = asyncio.create_task(cached.run(lambda: NOW))
    try:
        await asyncio.sleep(0.3)
        live, toggles = await asyncio.wait_for(cached.read(holder.current, "harborough", NOW), 0.05)
        assert live.queues == {}
        assert toggles.emergency == {}
        assert cached.failures >= 2
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await dead.aclose()


async def test_controller_reads_a_cached_copy_without_a_coroutine(redis: Redis, keys: RedisKeys) -> None:
    """``read_now`` gives what ``read`` gives; the controller uses it, and a failure in it still
    falls back to unknown live state (fail static)."""
    from ivr.controller import Controller
    from routing.core.live import UNKNOWN_LIVE_STATE

    holder = PlanHolder.load(EXAMPLE)
    cached = CachedLiveSource(redis, lambda: holder.current, keys=keys)
    await redis.set(keys.overflow_latch("harborough", "revenues"), "1")
    await cached.refresh(NOW)
    await cached.remember((("harborough/general", True),))
    assert cached.read_now(holder.current, "harborough", NOW) == await cached.read(
        holder.current, "harborough", NOW
    )
    controller = Controller(holder, cached, clock=lambda: NOW)
    live, _ = await controller._live(holder.current, "harborough", NOW)
    assert live.overflowing == frozenset({"harborough/revenues", "harborough/general"})

    class Broken(CachedLiveSource):
        def read_now(self, *_args: object) -> tuple[LiveState, Toggles]:
            raise RuntimeError("bad copy")

    broken = Controller(holder, Broken(redis, lambda: holder.current, keys=keys), clock=lambda: NOW)
    assert (await broken._live(holder.current, "harborough", NOW))[0] is UNKNOWN_LIVE_STATE
