"""One centre's controller side for the cluster tests: a fake AMI with five advisers in
hdc-revenues, the live source, the AMI pipeline (consumer, store, writer lease, withdrawer) and a
FastAGI server routing emulated calls, on a given Redis client under given keys."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

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
from routing.live.store import QueueStateStore
from routing.redis_keys import RedisKeys
from routing.toggle_mac import ToggleKeyring
from routing.withdrawer import Withdrawer, ami_pipeline
from tests.controller.conftest import EXAMPLE, TUESDAY_10AM

NORTH, SOUTH = RedisKeys(tag="north"), RedisKeys(tag="south")  # slots 1043 and 9379: two nodes
HOLDER = PlanHolder.load(EXAMPLE)


async def eventually(check: Callable[[], Any], timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not await check():
            await asyncio.sleep(0.02)


@dataclass
class Centre:
    fake: FakeAmi
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

    async def until(self, queue: str, check: Callable[[QueueSnapshot], bool]) -> None:
        async def seen() -> bool:
            live, _ = self.live.read_now(self.holder.current, "harborough", self.clock())
            snap = live.snapshot(queue, self.clock())
            return snap is not None and check(snap)

        await eventually(seen)


@asynccontextmanager
async def centre(
    redis: Redis, keys: RedisKeys, plan: Path, instance: str, keyring: ToggleKeyring | None = None
) -> AsyncIterator[Centre]:
    """One centre's controller side on ``redis`` under ``keys``: fake AMI with five advisers in
    hdc-revenues, live source, AMI pipeline (consumer, store, lease, withdrawer), FastAGI server."""
    ago = [0.0]
    fake = FakeAmi("callrouter", "s3cret", withdraw_delay_s=0.05, clock=lambda: time.time() - ago[0])
    await fake.start()
    for i in range(1, 6):
        fake.add_member("hdc-revenues", f"PJSIP/agent{i}", f"Agent {i}", membership="static", send=False)
    holder = PlanHolder.load(plan)
    clock = rehearsal_clock(TUESDAY_10AM, 1.0)
    live = CachedLiveSource(
        redis, lambda: holder.current, keys=keys, refresh_s=0.03, timeout_s=0.5, keyring=keyring
    )
    settings = AmiSettings(port=fake.port, username="callrouter", secret="s3cret", ping_interval_s=0.5,
                           pong_deadline_s=0.5, reconnect_initial_s=0.05, reconnect_max_s=0.2)  # fmt: skip
    pipeline = ami_pipeline(settings, redis, instance, live, clock=clock, keys=keys)
    server = FastAgiServer(ServerConfig(host="127.0.0.1", port=0, call_timeout=10))
    Controller(holder, live, clock=clock).register(server)
    await server.start()
    await pipeline.consumer.start()
    refresher = asyncio.create_task(live.run(clock))
    try:
        yield Centre(fake, keys, holder, live, pipeline.consumer, pipeline.store, pipeline.withdrawer,
                     server.port, clock, ago)  # fmt: skip
    finally:
        refresher.cancel()
        await asyncio.gather(refresher, return_exceptions=True)
        await pipeline.consumer.stop()
        await server.drain(1)
        await fake.close()
