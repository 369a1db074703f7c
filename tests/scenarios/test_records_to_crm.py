"""Calls on the emulated Asterisk to the council's CRM: every call's record once per version.

One or two controllers (real FastAGI servers, each with its record pump appending to the
centre's records stream in a real Redis, each with its own AMI consumer on the one fake AMI
server, as two ``serve`` processes behind one Asterisk run), the delivery worker on that stream,
and the fake CRM (a real aiohttp server verifying signatures and counting repeats). Calls go
to either controller, and one goes down the fail-static path (no controller answers: the
classic fallback script routes it). Each call reaches the CRM exactly once per version, with
its IVR part, emitted by the controller that served it (by the AMI lease holder for the
fail-static call); a disposition sent after the call makes version 2.
"""

from __future__ import annotations

import asyncio
import io
import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from callrouter.logs import configure_logging
from emulator.agi import CallerScript, PressAfterPrompt
from emulator.ami import FakeAmi
from emulator.centre import CallCentre, QueuePlay
from emulator.crm import FakeCrm
from emulator.dialplan import FAILSTATIC, Asterisk, place_call
from emulator.pbx import Channel
from ivr.controller import Controller, NoLiveState, PlanHolder
from ivr.fastagi import FastAgiServer, ServerConfig
from records.appender import Ownership, StreamSink
from records.builder import RecordBuilder
from records.delivery import DeliveryWorker
from records.model import ContactRecord
from records.outbox import RecordPump
from records.sinks import WebhookSink
from records.stream import RecordStream
from routing.ami.consumer import AmiConsumer
from routing.ami.settings import AmiSettings
from routing.live.lease import WriterLease
from routing.live.store import QueueStateStore
from routing.redis_keys import RedisKeys
from tests.ami.helpers import wait_until
from tests.controller.conftest import EXAMPLE, HARBOROUGH, TUESDAY_10AM
from tests.controller.test_fallback import SCRIPT as FALLBACK
from tests.controller.test_fallback import always_open_plan
from tests.records.conftest import FAST, SECRET, webhook_config
from tests.records.support import checked
from tests.scenarios.test_contact_records import SECRET as AMI_SECRET
from tests.scenarios.test_contact_records import desktop_disposition
from tests.support.redis_server import RedisServer, free_port

CENTRE = "charnwood"
GRACE_S = 0.5  # as serve runs it
PUMP_S = 0.1


@dataclass
class Ctl:
    name: str
    server: FastAgiServer
    pump: RecordPump
    consumer: AmiConsumer


@dataclass
class Site:
    redis: Redis
    keys: RedisKeys
    fake: FakeAmi
    crm: FakeCrm
    controllers: list[Ctl]
    plays: dict[str, QueuePlay] = field(default_factory=dict)

    def asterisk(self) -> Asterisk:
        return Asterisk(centre=CallCentre(self.fake, self._play))

    def _play(self, queue: str, caller: Channel) -> QueuePlay:
        return self.plays.get(caller.caller_num, QueuePlay())

    async def call(self, port: int, caller: str, steps: list[Any], play: QueuePlay, **kw: Any) -> str:
        self.plays[caller] = play
        uniqueid = f"1795980000.{int(caller[-3:])}"
        script = CallerScript(dial=HARBOROUGH, caller=caller, steps=steps, uniqueid=uniqueid)
        record = await place_call("127.0.0.1", port, script, asterisk=self.asterisk(), deadline=30, **kw)
        assert record.summary().startswith(FAILSTATIC) == ("fallback" in kw), record.summary()
        return uniqueid

    async def owner(self, call: str) -> str | None:
        value = await self.redis.get(self.keys.record_owner(CENTRE, call))
        return value.decode() if value else None


async def _controller(
    name: str, holder: PlanHolder, redis: Redis, keys: RedisKeys, fake: FakeAmi
) -> tuple[Ctl, asyncio.Task[None]]:
    consumers: list[AmiConsumer] = []
    is_writer: Callable[[], bool] = lambda: bool(consumers) and consumers[0].is_writer  # noqa: E731
    owner = Ownership(redis, CENTRE, name, lease_holder=is_writer, keys=keys)
    sink = StreamSink(RecordStream(redis, CENTRE, keys=keys), holder.current.tenant_for)
    builder = RecordBuilder(CENTRE, b"scenario caller hash key, 32 b..", grace_s=GRACE_S)
    pump = RecordPump(builder, sink, interval_s=PUMP_S, owner=owner)
    controller = Controller(holder, NoLiveState(), clock=lambda: TUESDAY_10AM, facts=pump.fact)
    server = FastAgiServer(ServerConfig(host="127.0.0.1", port=0, call_timeout=20))
    controller.register(server)
    await server.start()
    settings = AmiSettings(port=fake.port, secret=AMI_SECRET, lease_ttl_s=5)
    lease = WriterLease(redis, name, settings.lease_ttl_s, keys)
    consumer = AmiConsumer(settings, QueueStateStore(redis, name, keys), lease, on_message=pump.ami)
    consumers.append(consumer)
    await consumer.start()
    return Ctl(name, server, pump, consumer), asyncio.create_task(pump.run())


@pytest.fixture(params=[1, 2], ids=["one-controller", "two-controllers"])
async def site(
    request: pytest.FixtureRequest, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> AsyncIterator[Site]:
    configure_logging(json=True, level="warning", stream=io.StringIO())
    monkeypatch.setenv("CALLROUTER_PLAN", str(always_open_plan(tmp_path)))  # the fail-static script's
    holder = PlanHolder.load(EXAMPLE)
    keys = RedisKeys(prefix=f"test-{uuid.uuid4().hex[:12]}:")
    redis = Redis.from_url(redis_server.url)
    crm = FakeCrm(SECRET)
    await crm.start()
    sinks = {
        f"{tenant}/crm": WebhookSink(f"{tenant}/crm", webhook_config(crm.url), SECRET)
        for tenant in ("harborough", "charnwood")
    }
    worker = DeliveryWorker(redis, CENTRE, dict(sinks), policy=FAST, keys=keys)
    stop = asyncio.Event()
    delivering = asyncio.create_task(worker.run(stop))
    pumping: list[asyncio.Task[None]] = []
    async with FakeAmi("callrouter", AMI_SECRET) as fake:
        controllers = []
        for n in range(request.param):
            ctl, task = await _controller(f"ctl-{'ab'[n]}", holder, redis, keys, fake)
            controllers.append(ctl)
            pumping.append(task)
        await wait_until(lambda: all(c.consumer.connected for c in controllers))
        await wait_until(lambda: any(c.consumer.is_writer for c in controllers))
        try:
            yield Site(redis, keys, fake, crm, controllers)
        finally:
            for task in pumping:
                task.cancel()
            for ctl in controllers:
                await ctl.consumer.stop()
                await ctl.server.drain(timeout=1)
            stop.set()
            await asyncio.wait_for(delivering, timeout=10)
            await crm.stop()
            await redis.aclose()


async def test_every_call_reaches_the_crm_once_per_version_with_its_ivr_part(site: Site) -> None:
    ctls = site.controllers
    served: dict[str, str] = {}  # call -> controller that ran its FastAGI requests
    plays = [
        ("07700900201", [PressAfterPrompt("1"), PressAfterPrompt("1")], QueuePlay(disposition="resolved")),
        ("07700900202", [PressAfterPrompt("2")], QueuePlay("abandon")),
        ("07700900203", [PressAfterPrompt("1")], QueuePlay()),
        ("07700900204", [PressAfterPrompt("2")], QueuePlay("timeout")),
    ]
    for n, (caller, steps, play) in enumerate(plays):
        ctl = ctls[n % len(ctls)]
        served[await site.call(ctl.server.port, caller, steps, play)] = ctl.name
    down = free_port()  # no controller answers there: the fail-static path
    failstatic = await site.call(down, "07700900205", [PressAfterPrompt("2")], QueuePlay(), fallback=FALLBACK)
    later = next(c for c in served if c.endswith(".203"))
    calls = [*served, failstatic]

    expected = {f"{c}:1" for c in calls}
    await wait_until(lambda: {k for k, _, _ in site.crm.accepted} >= expected, timeout_s=20)
    await desktop_disposition(site.fake, later, "complaint")
    expected.add(f"{later}:2")
    await wait_until(lambda: {k for k, _, _ in site.crm.accepted} >= expected, timeout_s=10)
    await asyncio.sleep(4 * (GRACE_S + PUMP_S))  # nothing more comes

    keys = [k for k, _, _ in site.crm.accepted]
    assert sorted(keys) == sorted(expected)
    assert site.crm.duplicates == 0, "a version sent twice"
    assert await site.redis.xlen(site.keys.records_stream(CENTRE)) == len(expected)
    records = {k: ContactRecord.model_validate_json(json.dumps(site.crm.events[k]["data"])) for k in keys}
    for record in records.values():
        checked(record)
    for call, ctl in served.items():
        record = records[f"{call}:1"]
        assert record.ivr.menus, f"{call}: record without its IVR part"
        assert record.decisions, call
        assert record.queues, call
        assert await site.owner(call) == ctl
    static = records[f"{failstatic}:1"]
    assert (static.decisions, static.ivr.menus) == ([], [])  # no controller served it
    assert [q.queue for q in static.queues] == ["hdc-waste"]
    writer = next(c.name for c in ctls if c.consumer.is_writer)
    assert await site.owner(failstatic) == writer
    assert records[f"{later}:2"].disposition is not None
    assert records[f"{later}:2"].disposition.kind == "complaint"
    emitted = sum(c.pump.appended for c in ctls)
    assert emitted == len(expected), "a controller appended a record it does not own"
    if len(ctls) == 2:
        assert all(c.pump.appended for c in ctls), "each controller emits the calls it served"
        # the other copy of each version: skipped (claimed) or parked (the fail-static call, on
        # the controller that is not the lease holder, until the park time ends)
        assert sum(c.pump.skipped + len(c.pump.parked) for c in ctls) == len(expected)
