"""Peak scenarios: Asterisk's AMI stream (the fake AMI server) feeds Redis; the controller
routes emulated callers on that live state; long waiters are withdrawn for overflow."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from redis.asyncio import Redis

from callrouter.service import rehearsal_clock
from emulator.agi import CallerScript, PressAfterPrompt
from emulator.ami import FakeAmi
from emulator.dialplan import place_call
from ivr.controller import Controller, PlanHolder
from ivr.fastagi import FastAgiServer, ServerConfig
from routing.ami.consumer import AmiConsumer
from routing.ami.settings import AmiSettings
from routing.core.live import QueueSnapshot
from routing.live.source import CachedLiveSource
from routing.live.store import QueueStateStore, snapshot_json
from routing.redis_keys import RedisKeys
from routing.withdrawer import Withdrawer, ami_pipeline
from tests.controller.conftest import EXAMPLE, HARBOROUGH, TUESDAY_10AM
from tests.support.redis_server import RedisServer

CHARNWOOD = "01632960100"


@dataclass
class Rig:
    fake: FakeAmi
    redis: Redis
    keys: RedisKeys
    holder: PlanHolder
    live: CachedLiveSource
    consumer: AmiConsumer
    store: QueueStateStore
    withdrawer: Withdrawer
    port: int
    clock: Callable[[], datetime]
    ago: list[float]  # the fake Asterisk's clock runs this many seconds behind

    async def call(self, dialled: str, key: str) -> str:
        script = CallerScript(dial=dialled, steps=[PressAfterPrompt(key), PressAfterPrompt("1")])
        return (await place_call("127.0.0.1", self.port, script, deadline=10)).summary()

    def snapshot(self, queue: str, tenant: str = "harborough") -> QueueSnapshot | None:
        live, _ = self.live.read_now(self.holder.current, tenant, self.clock())
        return live.snapshot(queue, self.clock())

    async def until(
        self, queue: str, check: Callable[[QueueSnapshot], bool], tenant: str = "harborough"
    ) -> None:
        async with asyncio.timeout(5):
            while (snap := self.snapshot(queue, tenant)) is None or not check(snap):
                await asyncio.sleep(0.02)


@pytest.fixture
async def rig(redis_server: RedisServer, tmp_path: Path) -> AsyncIterator[Rig]:
    keys = RedisKeys(prefix=f"peak-{uuid.uuid4().hex[:8]}:")
    redis = Redis.from_url(redis_server.url)
    ago = [0.0]
    fake = FakeAmi("callrouter", "s3cret", withdraw_delay_s=0.05, clock=lambda: time.time() - ago[0])
    await fake.start()
    for i in range(1, 6):
        fake.add_member("hdc-revenues", f"PJSIP/agent{i}", f"Agent {i}", membership="static", send=False)
    plan = tmp_path / "plan.yaml"  # the example, with callers withdrawn from revenues after 120 s
    plan.write_text(
        EXAMPLE.read_text().replace(
            "          when_unknown: stay\n", "          when_unknown: stay\n          max_wait_s: 120\n"
        )
    )
    holder = PlanHolder.load(plan)
    clock = rehearsal_clock(TUESDAY_10AM, 1.0)
    live = CachedLiveSource(redis, lambda: holder.current, keys=keys, refresh_s=0.03, timeout_s=0.5)
    settings = AmiSettings(
        port=fake.port,
        username="callrouter",
        secret="s3cret",
        ping_interval_s=0.5,
        pong_deadline_s=0.5,
        reconnect_initial_s=0.05,
        reconnect_max_s=0.2,
    )
    pipeline = ami_pipeline(settings, redis, "centre-a", live, clock=clock, keys=keys)
    consumer, store, withdrawer = pipeline.consumer, pipeline.store, pipeline.withdrawer
    server = FastAgiServer(ServerConfig(host="127.0.0.1", port=0, call_timeout=10))
    Controller(holder, live, clock=clock).register(server)
    await server.start()
    await consumer.start()
    refresher = asyncio.create_task(live.run(clock))
    try:
        yield Rig(fake, redis, keys, holder, live, consumer, store, withdrawer, server.port, clock, ago)
    finally:
        refresher.cancel()
        await asyncio.gather(refresher, return_exceptions=True)
        await consumer.stop()
        await server.drain(1)
        await fake.close()
        await redis.aclose()


async def test_a_peak_builds_then_falls_with_hysteresis(rig: Rig) -> None:
    """Overflow starts at 6 waiting, holds at 4 and 3, and stops only below 3."""
    await rig.until("hdc-revenues", lambda s: s.logged_in == 5)
    callers = [rig.fake.caller_joins("hdc-revenues", name=f"Caller {i}").channel.uniqueid for i in range(5)]
    await rig.until("hdc-revenues", lambda s: s.waiting == 5)
    assert "queue hdc-revenues" in await rig.call(HARBOROUGH, "1")
    callers.append(rig.fake.caller_joins("hdc-revenues", name="Zoë Brontë").channel.uniqueid)
    await rig.until("hdc-revenues", lambda s: s.waiting == 6)
    assert "queue cbc-assist" in await rig.call(HARBOROUGH, "1")
    for waiting in (4, 3, 2):
        while len(callers) > waiting:
            uid = callers.pop(0)
            rig.fake.answer(uid, "PJSIP/agent1")
            rig.fake.complete(uid)
        await rig.until("hdc-revenues", lambda s, n=waiting: s.waiting == n and s.available == 5)
        expected = "queue cbc-assist" if waiting >= 3 else "queue hdc-revenues"
        assert expected in await rig.call(HARBOROUGH, "1"), waiting
    assert "queue hdc-revenues" in await rig.call(HARBOROUGH, "1")


async def publish_partner(rig: Rig, available: int, age_s: float = 0, ttl_s: float = 30) -> None:
    observed = datetime.now(UTC) - timedelta(seconds=age_s)
    snap = QueueSnapshot("hdc-team", 0, 0, max(available, 1), available, observed)
    await rig.redis.set(rig.keys.centre_snapshot("harborough"), snapshot_json(snap), px=int(ttl_s * 1000))


async def test_partner_full_or_silent_receives_no_overflow(rig: Rig) -> None:
    """Charnwood's queue has nobody logged in: overflow to Harborough's team only while that
    team publishes fresh figures with a free adviser."""
    rig.fake.caller_joins("cbc-general")
    await rig.until("cbc-general", lambda s: s.waiting == 1 and s.logged_in == 0, tenant="charnwood")
    await publish_partner(rig, available=2)
    await asyncio.sleep(0.1)
    assert "dial +441632960400" in await rig.call(CHARNWOOD, "1")
    await publish_partner(rig, available=0)
    await asyncio.sleep(0.1)
    assert "queue cbc-general" in await rig.call(CHARNWOOD, "1")
    await publish_partner(rig, available=3, age_s=120)
    await asyncio.sleep(0.1)
    assert "queue cbc-general" in await rig.call(CHARNWOOD, "1")
    await rig.redis.delete(rig.keys.centre_snapshot("harborough"))
    await asyncio.sleep(0.1)
    assert "queue cbc-general" in await rig.call(CHARNWOOD, "1")


async def test_ami_drop_mid_peak_is_reconciled(rig: Rig) -> None:
    """The AMI connection drops while callers join; after reconnecting and reconciling with
    QueueStatus the counts are right and calls route on them."""
    for _ in range(3):
        rig.fake.caller_joins("hdc-revenues")
    await rig.until("hdc-revenues", lambda s: s.waiting == 3)
    rig.fake.drop_connections()
    with rig.fake.recording():  # these events are lost with the connection
        for _ in range(4):
            rig.fake.caller_joins("hdc-revenues")
    await rig.until("hdc-revenues", lambda s: s.waiting == 7)
    assert "queue cbc-assist" in await rig.call(HARBOROUGH, "1")


async def test_long_waiters_are_withdrawn_for_overflow(rig: Rig) -> None:
    """Callers who waited past max_wait_s are withdrawn (QueueWithdrawCaller), longest first;
    the dialplan then sees WITHDRAW and the overflow route sends them on."""
    policy = rig.holder.current.plan.tenants["harborough"].queues["revenues"].overflow
    assert policy is not None
    assert policy.max_wait_s == 120
    rig.ago[0] = 600
    old = rig.fake.caller_joins("hdc-revenues").channel.uniqueid
    rig.ago[0] = 0
    rig.fake.caller_joins("hdc-revenues")
    await rig.until("hdc-revenues", lambda s: s.waiting == 2 and s.longest_wait_s >= 590)
    async with asyncio.timeout(5):
        while not rig.consumer.is_writer:
            await asyncio.sleep(0.02)
    assert await rig.withdrawer.sweep() == 1
    await rig.until("hdc-revenues", lambda s: s.waiting == 1)
    assert old not in await rig.store.waiting_callers("hdc-revenues")
    assert await rig.withdrawer.sweep() == 0
