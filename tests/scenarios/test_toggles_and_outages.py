"""Scenarios on the emulator: a supervisor's emergency toggle, and Redis stopping mid-call."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from redis.asyncio import Redis

from emulator.agi import CallerScript, PressAfterPrompt
from emulator.dialplan import place_call
from ivr.controller import Controller, PlanHolder
from ivr.fastagi import FastAgiServer, ServerConfig
from routing.live.source import CachedLiveSource
from routing.redis_keys import RedisKeys
from routing.supervisor import ToggleRequest, apply_toggle, check_request
from tests.controller.conftest import EXAMPLE, HARBOROUGH, TUESDAY_10AM
from tests.support.redis_server import RedisServer, running_redis
from tests.support.toggle_keys import KEYRING


@dataclass
class Centre:
    port: int
    clock: list[datetime]
    live: CachedLiveSource
    holder: PlanHolder

    async def call(self, *keys: str) -> str:
        steps = [PressAfterPrompt(k) for k in keys]
        record = await place_call(
            "127.0.0.1", self.port, CallerScript(dial=HARBOROUGH, steps=steps), deadline=10
        )
        return record.summary()


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


async def start_centre(redis: Redis, keys: RedisKeys) -> tuple[Centre, FastAgiServer, asyncio.Task[None]]:
    holder = PlanHolder.load(EXAMPLE)
    clock = [TUESDAY_10AM]
    live = CachedLiveSource(
        redis, lambda: holder.current, keys=keys, refresh_s=0.05, timeout_s=0.2, keyring=KEYRING
    )
    controller = Controller(holder, live, clock=lambda: clock[0], live_timeout=0.2)
    server = FastAgiServer(ServerConfig(host="127.0.0.1", port=0, call_timeout=10))
    controller.register(server)
    await server.start()
    refresher = asyncio.create_task(live.run(lambda: clock[0]))
    return Centre(server.port, clock, live, holder), server, refresher


async def stop_centre(server: FastAgiServer, refresher: asyncio.Task[None]) -> None:
    refresher.cancel()
    await asyncio.gather(refresher, return_exceptions=True)
    await server.drain(1)


async def test_emergency_toggle_for_an_hour_then_reverts(redis: Redis) -> None:
    """Flooding: a supervisor switches emergency cover on for one hour; every Harborough call
    goes to emergency cover within a second; after the hour calls route normally again."""
    keys = RedisKeys(prefix=f"scenario-{uuid.uuid4().hex[:8]}:")
    centre, server, refresher = await start_centre(redis, keys)
    try:
        assert (await centre.call("1")).startswith("route (open) -> menu main -> queue hdc-revenues")
        request = ToggleRequest("emergency", "harborough", True, "sam", "Flooding in Market Harborough", "1h")
        toggle = check_request(centre.holder.current.plan, request, centre.clock[0])
        await apply_toggle(redis, request, toggle, centre.clock[0], keys, keyring=KEYRING)
        switched = asyncio.get_running_loop().time()
        while not (summary := await centre.call("1")).startswith("route (emergency)"):
            assert asyncio.get_running_loop().time() - switched < 1.0, summary
        assert summary.startswith("route (emergency) -> queue hdc-emergency")
        for _ in range(5):
            assert (await centre.call("2")).startswith("route (emergency) -> queue hdc-emergency")
        centre.clock[0] += timedelta(hours=1, seconds=1)
        assert (await centre.call("2")).startswith("route (open) -> menu main -> queue hdc-waste")
    finally:
        await stop_centre(server, refresher)


async def test_redis_stopping_mid_call_does_not_stop_calls() -> None:
    """Redis stops while calls are in progress: every caller is still routed, within the
    AGI deadline, on the plan's safe defaults."""
    keys = RedisKeys(prefix="outage:")
    with running_redis(max_lifetime_s=120) as server_redis:
        redis = Redis.from_url(server_redis.url, socket_connect_timeout=0.2, socket_timeout=0.2)
        centre, server, refresher = await start_centre(redis, keys)
        try:
            assert (await centre.call("1")).startswith("route (open) -> menu main -> queue hdc-revenues")
            calls = [asyncio.create_task(centre.call(str(1 + i % 2))) for i in range(20)]
            server_redis.stop()
            results = await asyncio.wait_for(asyncio.gather(*calls), 10)
            later = [await centre.call("1") for _ in range(5)]
        finally:
            await stop_centre(server, refresher)
            await redis.aclose()
    assert all(r.startswith("route (open) -> menu main -> queue hdc-") for r in results + later)
    assert centre.live.failures >= 1
