"""Every call makes a contact record: calls of known outcomes on the emulated Asterisk.

The controller (a real FastAGI server) reports each call's facts to a record builder; the
emulated PBX runs the shipped dialplan, and its contact centre (:class:`emulator.centre.CallCentre`)
reports the channels and plays each Queue() on the fake AMI server, which the real AMI consumer
reads (live state into a real Redis) with its tap feeding the same builder. The records reach a
sink as ``serve`` hands them over; each is checked against the published JSON Schema.
"""

from __future__ import annotations

import asyncio
import io
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
from redis.asyncio import Redis

from callrouter.logs import configure_logging
from emulator.agi import CallerScript, HangUpDuring, PressAfterPrompt, Silence
from emulator.ami import FakeAmi
from emulator.centre import CallCentre, QueuePlay
from emulator.dialplan import Asterisk, place_call
from emulator.pbx import Channel
from ivr.controller import Controller, NoLiveState, PlanHolder
from ivr.fastagi import FastAgiServer, ServerConfig
from records.builder import RecordBuilder
from records.model import ContactRecord
from records.outbox import MemorySink, RecordPump
from routing.ami.consumer import AmiConsumer
from routing.ami.settings import AmiSettings
from routing.live.lease import WriterLease
from routing.live.store import QueueStateStore
from routing.redis_keys import RedisKeys
from tests.ami.helpers import wait_until
from tests.controller.conftest import EXAMPLE, HARBOROUGH, LONDON, TUESDAY_10AM
from tests.records.support import checked
from tests.support.redis_server import RedisServer

SECRET = "records-scenario-secret"
CARD = "4929123456781234"
CARD_LIKE = re.compile(r"[0-9]{13,19}")
CHARNWOOD = "01632960100"
SATURDAY_3PM = datetime(2026, 11, 28, 15, 0, tzinfo=LONDON)


@dataclass
class Centre:
    controller: Controller
    server: FastAgiServer
    fake: FakeAmi
    pump: RecordPump
    sink: MemorySink
    consumer: AmiConsumer
    clock: list[datetime]
    plays: dict[str, QueuePlay]  # caller number -> what happens in Queue()
    log: io.StringIO
    redis: Redis
    keys: RedisKeys

    def asterisk(self) -> Asterisk:
        return Asterisk(centre=CallCentre(self.fake, self._play))

    def _play(self, queue: str, caller: Channel) -> QueuePlay:
        return self.plays.get(caller.caller_num, QueuePlay())

    async def call(
        self, caller: str, steps: list[Any], play: QueuePlay | None = None, dial: str = HARBOROUGH
    ) -> str:
        if play is not None:
            self.plays[caller] = play
        uniqueid = f"1795970000.{len(self.plays) + int(caller[-3:])}"
        script = CallerScript(dial=dial, caller=caller, steps=steps, uniqueid=uniqueid)
        await place_call("127.0.0.1", self.server.port, script, asterisk=self.asterisk(), deadline=20)
        return uniqueid

    def records(self) -> dict[tuple[str, int], ContactRecord]:
        return {(r.id, r.version): r for r in self.sink.records}


@pytest.fixture
async def centre(redis_server: RedisServer) -> AsyncIterator[Centre]:
    stream = io.StringIO()
    configure_logging(json=True, level="debug", stream=stream)
    holder = PlanHolder.load(EXAMPLE)
    builder = RecordBuilder(holder.current.plan.centre, b"scenario caller hash key, 32 b..", grace_s=0.3)
    sink = MemorySink()
    pump = RecordPump(builder, sink, interval_s=0.05)
    clock = [TUESDAY_10AM]
    controller = Controller(holder, NoLiveState(), clock=lambda: clock[0], facts=pump.fact)
    server = FastAgiServer(ServerConfig(host="127.0.0.1", port=0, call_timeout=20))
    controller.register(server)
    keys = RedisKeys(prefix=f"test-{uuid.uuid4().hex[:12]}:")
    redis = Redis.from_url(redis_server.url, decode_responses=True)
    async with FakeAmi("callrouter", SECRET) as fake, server:
        settings = AmiSettings(port=fake.port, secret=SECRET, lease_ttl_s=5)
        lease = WriterLease(redis, "ctl-a", settings.lease_ttl_s, keys)
        consumer = AmiConsumer(settings, QueueStateStore(redis, "ctl-a", keys), lease, on_message=pump.ami)
        await consumer.start()
        await wait_until(lambda: consumer.connected and consumer.is_writer)
        pumping = asyncio.create_task(pump.run())
        try:
            yield Centre(controller, server, fake, pump, sink, consumer, clock, {}, stream, redis, keys)
        finally:
            pumping.cancel()
            await consumer.stop()
            await redis.aclose()
            configure_logging(json=True, level="warning", stream=io.StringIO())


async def desktop_disposition(fake: FakeAmi, linkedid: str, disposition: str) -> None:
    """The adviser's desktop after the call: ``Action: UserEvent`` on its own AMI session."""
    reader, writer = await asyncio.open_connection("127.0.0.1", fake.port)
    try:
        await reader.readline()
        for action in (
            [("Action", "Login"), ("Username", "callrouter"), ("Secret", SECRET), ("ActionID", "d-1")],
            [("Action", "UserEvent"), ("UserEvent", "CallDisposition"), ("Linkedid", linkedid),
             ("Disposition", disposition), ("Adviser", "agent1"), ("ActionID", "d-2")],
        ):  # fmt: skip
            writer.write(("".join(f"{k}: {v}\r\n" for k, v in action) + "\r\n").encode())
            await writer.drain()
            while b"Response: " not in (reply := await reader.readuntil(b"\r\n\r\n")):
                continue
            assert b"Response: Success" in reply
    finally:
        writer.close()
        await writer.wait_closed()


async def test_every_call_makes_exactly_its_record(centre: Centre) -> None:
    answered = await centre.call(
        "07700900101", [PressAfterPrompt("1"), PressAfterPrompt("1")], QueuePlay(disposition="resolved")
    )
    abandoned = await centre.call("07700900102", [PressAfterPrompt("2")], QueuePlay("abandon"))
    centre.clock[0] = SATURDAY_3PM
    closed = await centre.call("07700900103", [])
    centre.clock[0] = TUESDAY_10AM
    in_menu = await centre.call("07700900104", [PressAfterPrompt("9"), HangUpDuring("WAIT FOR DIGIT")])
    payment = await centre.call(
        "07700900105", [PressAfterPrompt("3"), PressAfterPrompt(CARD), PressAfterPrompt("87654321")]
    )
    timed_out = await centre.call("07700900106", [PressAfterPrompt("2")], QueuePlay("timeout"))
    withdrawn = await centre.call("07700900107", [PressAfterPrompt("1")], QueuePlay("withdraw"))
    later = await centre.call("07700900108", [PressAfterPrompt("1"), Silence(), Silence()], QueuePlay())
    partner = await centre.call("07700900109", [PressAfterPrompt("1")], QueuePlay("withdraw"), dial=CHARNWOOD)
    calls = [answered, abandoned, closed, in_menu, payment, timed_out, withdrawn, later, partner]

    await wait_until(lambda: {k[0] for k in centre.records()} >= set(calls), timeout_s=10)
    await desktop_disposition(centre.fake, later, "complaint")
    await wait_until(lambda: (later, 2) in centre.records(), timeout_s=10)
    await asyncio.sleep(0.5)  # nothing more comes
    records = centre.records()
    assert sorted(records) == sorted([(c, 1) for c in calls] + [(later, 2)])
    assert len(centre.sink.records) == len(records), "a record version appended twice"
    docs = {key: checked(record) for key, record in records.items()}
    one = {call: docs[(call, 1)] for call in calls}
    for number, call in enumerate(calls, start=101):
        assert one[call]["caller"]["number"] == f"07700900{number}"
        assert one[call]["tenant"] == ("charnwood" if call == partner else "harborough")
        assert one[call]["complete"] is True
        assert one[call]["hangup"] is not None, call

    r = one[answered]
    assert [(m["menu"], m["keys"]) for m in r["ivr"]["menus"]] == [("main", ["1"])]
    assert r["ivr"]["announcements"] == [{"prompt": "harborough/bin-collection-change", "skipped": False}]
    assert [d["kind"] for d in r["decisions"]] == ["open", "open"]
    assert [(q["queue"], q["outcome"]) for q in r["queues"]] == [("hdc-revenues", "answered")]
    assert r["answered"]["by"] == {"centre": "charnwood", "id": "PJSIP/agent1", "name": "Agent One"}
    assert r["disposition"]["kind"] == "resolved"
    assert r["survey"] == 1
    assert r["hangup"]["by"] == "adviser"

    r = one[abandoned]
    assert [(q["queue"], q["outcome"]) for q in r["queues"]] == [("hdc-waste", "abandoned")]
    assert (r["answered"], r["hangup"]["by"], r["survey"]) == (None, "caller", None)

    r = one[closed]
    assert [d["kind"] for d in r["decisions"]] == ["closed"]
    assert r["ivr"]["menus"] == []
    assert r["queues"] == []

    r = one[in_menu]
    assert (r["ivr"]["abandoned"], r["ivr"]["abandoned_in"], r["ivr"]["invalid"]) == (True, "main", 1)
    assert r["ivr"]["menus"][0]["keys"] == []
    assert r["hangup"]["by"] == "caller"

    r = one[payment]
    assert r["payment"] == {"line": "council_tax", "reference_captured": True, "handed_off": True}
    assert [(m["menu"], m["keys"]) for m in r["ivr"]["menus"]] == [("main", ["3"])]

    r = one[timed_out]
    assert [(q["queue"], q["outcome"]) for q in r["queues"]] == [("hdc-waste", "timed_out")]
    assert r["decisions"][-1]["destination"].startswith("voicemail")

    r = one[withdrawn]
    assert next((q["queue"], q["outcome"]) for q in r["queues"]) == ("hdc-revenues", "withdrawn")

    r = one[partner]
    assert [d["kind"] for d in r["decisions"]] == ["open", "open", "overflow"]
    assert [(q["queue"], q["outcome"]) for q in r["queues"]] == [("cbc-general", "withdrawn")]
    assert [(h["centre"], h["answered"]) for h in r["hops"]] == [("harborough", True)]
    assert r["centre"] == "harborough"

    assert one[later]["disposition"] is None
    v2 = docs[(later, 2)]
    assert v2["disposition"]["kind"] == "complaint"
    assert v2["disposition"]["by"] == "agent1"
    assert {k: v for k, v in v2.items() if k not in ("version", "updated_at", "disposition")} == {
        k: v for k, v in one[later].items() if k not in ("version", "updated_at", "disposition")
    }

    log = centre.log.getvalue()
    assert log, "the controller logged nothing"
    for number in range(101, 110):
        assert f"07700900{number}" not in log
    assert CARD_LIKE.search(log) is None
    assert "87654321" not in log
    # this centre's keys only: other tests share the session's Redis server
    keys = [key async for key in centre.redis.scan_iter(f"{centre.keys.prefix}*")]
    assert keys
    for key in keys:
        assert CARD_LIKE.search(key) is None
        assert "07700900" not in key
    dump = str(records)
    assert CARD not in dump
    assert "87654321" not in dump
    assert centre.pump.refused_facts == 0
    assert centre.consumer.stats.tap_errors == 0
