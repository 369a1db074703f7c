"""Fixtures for the live feed: the session's real redis-server under a fresh key prefix, the
example plan, a fake AMI with one adviser in Charnwood's general queue, and AMI consumers."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from emulator.ami import FakeAmi
from routing.ami.consumer import AmiConsumer
from routing.ami.settings import AmiSettings
from routing.core.decide import CompiledPlan
from routing.live.lease import WriterLease
from routing.live.store import QueueStateStore
from routing.plan_file import load_plan
from routing.redis_keys import RedisKeys
from tests.support.live_web import fast_ami_settings
from tests.support.redis_server import RedisServer

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "plan.yaml"
SECRET = "live-feed-test-secret"
GENERAL = "cbc-general"  # Charnwood's general queue in the example plan
AGENT = "PJSIP/agent1"


@pytest.fixture(scope="session")
def plan() -> CompiledPlan:
    result = load_plan(EXAMPLE)
    assert result.plan is not None, result.problems
    return CompiledPlan.compile(result.plan)


@pytest.fixture
def keys() -> RedisKeys:
    return RedisKeys(prefix=f"test-{uuid.uuid4().hex[:12]}:")


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_server.url, decode_responses=True)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def fake() -> AsyncIterator[FakeAmi]:
    async with FakeAmi("callrouter", SECRET) as server:
        server.add_member(GENERAL, AGENT, "Agent One", membership="static", send=False)
        yield server


def fast_settings(fake: FakeAmi) -> AmiSettings:
    return fast_ami_settings(fake.port, SECRET)


@pytest.fixture
async def consumer(redis: Redis, keys: RedisKeys, fake: FakeAmi) -> AsyncIterator[AmiConsumer]:
    settings = fast_settings(fake)
    lease = WriterLease(redis, "ctl-a", settings.lease_ttl_s, keys)
    made = AmiConsumer(settings, QueueStateStore(redis, "ctl-a", keys), lease)
    yield made
    await made.stop()
