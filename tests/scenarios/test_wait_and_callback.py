"""The caller's side of the wait, on the emulated Asterisk with the fake AMI and a real Redis.

The shipped dialplan runs each call (:func:`emulator.dialplan.place_call`); the emulated centre
plays every Queue() slice on the fake AMI server; the real AMI consumer writes live state and
the queue's handle times into a real redis-server; the controller reads them (the expected wait)
and leaves callbacks with the real store (:mod:`routing.callbacks`).

The queue ``hdc-revenues`` (Harborough, menu key 1) gets a callback and wait announcements in
the plan used here; its one adviser's calls last 300 s (six AgentComplete with TalkTime 300).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from emulator.agi import CallerScript, HangUpDuring, PressAfterPrompt, Silence, Step
from emulator.ami import FakeAmi
from emulator.ami_wire import Message, headers_dict
from emulator.centre import CallCentre, QueuePlay
from emulator.dialplan import Asterisk, CallRecord, place_call
from emulator.pbx import Channel
from ivr.callback_desk import RedisCallbackDesk
from ivr.controller import Controller, PlanHolder
from ivr.fastagi import FastAgiServer, ServerConfig
from records import facts as rf
from records.builder import RecordBuilder
from records.model import ContactRecord
from records.outbox import MemorySink, RecordPump
from routing.ami.consumer import AmiConsumer
from routing.ami.settings import AmiSettings
from routing.callbacks import pending_callbacks
from routing.core.decide import CompiledPlan
from routing.core.live import LiveState, Toggles
from routing.live.lease import WriterLease
from routing.live.source import RedisLiveSource
from routing.live.store import QueueStateStore
from routing.redis_keys import RedisKeys
from tests.ami.helpers import wait_until
from tests.controller.conftest import EXAMPLE, HARBOROUGH, TUESDAY_10AM
from tests.support.redis_server import RedisServer

SECRET = "wait-scenario-secret"
QUEUE = "hdc-revenues"
ADVISER = "PJSIP/hdc-adviser"
CALLER = "01632960123"  # the caller id the emulated caller presents (geographic)
KEY_CONTEXT = "callrouter-wait-key"

CALLBACK_YAML = """        callback:
          offer_above_s: {above}
          offer_key: "1"
          offer_every_s: 120
        announce_wait:
          every_s: 60
          max_figure_s: 600
"""


def plan_file(tmp_path: Path, *, above: int = 300, with_policies: bool = True) -> Path:
    """The example plan; revenues overflow only at 60 waiting (the peak here must stay in the
    queue), with the callback and announcements when ``with_policies``."""
    text = EXAMPLE.read_text()
    text = text.replace(
        "enter: {waiting: 6, longest_wait_s: 300, callers_per_available: 4, no_adviser: true}",
        "enter: {waiting: 60}",
    ).replace("leave: {waiting: 3, longest_wait_s: 120, callers_per_available: 2}", "leave: {waiting: 30}")
    if with_policies:
        text = text.replace(
            '        service: "Council tax and benefits"\n        timeout_s: 900\n',
            '        service: "Council tax and benefits"\n        timeout_s: 900\n'
            + CALLBACK_YAML.format(above=above),
        )
    path = tmp_path / "plan.yaml"
    path.write_text(text)
    return path


class ShiftedLive:
    """Live state from Redis, read at real time, handed to a controller whose decision clock is a
    fixed weekday morning (the snapshots' ages are kept)."""

    def __init__(self, source: RedisLiveSource) -> None:
        self.source = source

    async def read(self, plan: CompiledPlan, tenant: str | None, now: datetime) -> tuple[LiveState, Toggles]:
        real = datetime.now(now.tzinfo)
        live, toggles = await self.source.read(plan, tenant, real)
        shift = now - real
        queues = {q: replace(s, observed_at=s.observed_at + shift) for q, s in live.queues.items()}
        return replace(live, queues=queues), toggles

    async def remember(self, latches: tuple[tuple[str, bool], ...]) -> None:
        return None


class RecordingCentre(CallCentre):
    """The emulated centre, keeping every AMI message it sends."""

    def __init__(self, fake: FakeAmi, plays: Callable[[str, Channel], QueuePlay]) -> None:
        super().__init__(fake, plays)
        self.sent: list[dict[str, str]] = []

    def _emit(self, messages: list[Message]) -> None:
        self.sent.extend(headers_dict(m) for m in messages)
        super()._emit(messages)


@dataclass
class Rig:
    fake: FakeAmi
    port: int
    redis: Redis
    keys: RedisKeys
    controller: Controller
    facts: list[rf.IvrFact]
    now: list[float]  # the controller's real-time clock (the wait's times), advanced by the plays
    start: float  # that clock when the test began
    sink: MemorySink  # the contact records, as serve hands them over
    plays: list[QueuePlay] = field(default_factory=list)  # what each Queue() slice of the call does
    contexts: dict[str, str] = field(default_factory=lambda: {QUEUE: KEY_CONTEXT})
    centre: RecordingCentre | None = None

    def _play(self, queue: str, caller: Channel) -> QueuePlay:
        self.now[0] += 120  # each slice: two minutes pass on the wait's clock
        return self.plays.pop(0) if self.plays else QueuePlay(interface=ADVISER)

    async def call(
        self, steps: list[Step], plays: list[QueuePlay], caller: str | None = CALLER
    ) -> CallRecord:
        self.plays = list(plays)
        self.centre = RecordingCentre(self.fake, self._play)
        script = CallerScript(
            dial=HARBOROUGH, caller=caller, steps=steps, uniqueid=f"1795980000.{len(self.facts)}"
        )
        asterisk = Asterisk(centre=self.centre, queue_contexts=self.contexts)
        return await place_call("127.0.0.1", self.port, script, asterisk=asterisk, deadline=20)

    def joins(self, channel_prefix: str = "PJSIP/sipp") -> list[int]:
        """Positions of the emulated caller's QueueCallerJoin events, in order."""
        assert self.centre is not None
        return [
            int(m["Position"])
            for m in self.centre.sent
            if m.get("Event") == "QueueCallerJoin" and m["Channel"].startswith(channel_prefix)
        ]

    async def record(self, call_id: str) -> ContactRecord:
        """The contact record of the call (its first version)."""
        await wait_until(lambda: any(r.id == call_id for r in self.sink.records), timeout_s=10)
        return next(r for r in self.sink.records if r.id == call_id)

    def offers(self) -> list[rf.CallbackOffered]:
        return [f for f in self.facts if isinstance(f, rf.CallbackOffered)]

    async def waiting(self, count: int) -> list[str]:
        """``count`` more callers waiting in the queue (each one a fake AMI caller)."""
        joined = [self.fake.caller_joins(QUEUE, number=f"0163296{n:04d}") for n in range(count)]
        return [j.channel.uniqueid for j in joined if j.channel is not None]


async def _seed(fake: FakeAmi, clock: list[float], redis: Redis, keys: RedisKeys) -> None:
    """One adviser; six answered calls of 300 s each (their AgentComplete TalkTime), then the
    adviser is busy on a seventh."""
    fake.add_member(QUEUE, ADVISER, "Adviser One", membership="static")
    for _ in range(6):
        uid = fake.caller_joins(QUEUE).channel.uniqueid
        fake.answer(uid, ADVISER)
        clock[0] += 300
        fake.complete(uid)
    busy = fake.caller_joins(QUEUE).channel.uniqueid
    fake.answer(busy, ADVISER)

    async def written() -> bool:
        return len(await redis.zrange(keys.queue_handle_times(QUEUE), 0, -1)) == 6

    for _ in range(100):
        if await written():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the AMI consumer did not write the handle times")


@pytest.fixture
def policies() -> dict[str, Any]:
    return {"above": 300, "with_policies": True}


@pytest.fixture
async def rig(redis_server: RedisServer, tmp_path: Path, policies: dict[str, Any]) -> AsyncIterator[Rig]:
    keys = RedisKeys(prefix=f"test-{uuid.uuid4().hex[:12]}:")
    redis = Redis.from_url(redis_server.url, decode_responses=True)
    ami_clock = [1795980000.0]
    now = [time.time()]
    facts: list[rf.IvrFact] = []
    decision_clock = [TUESDAY_10AM]
    holder = PlanHolder.load(plan_file(tmp_path, **policies))
    builder = RecordBuilder(holder.current.plan.centre, b"wait scenario caller hash key, 32", grace_s=0.2)
    sink = MemorySink()
    started = now[0]
    # the wait's clock runs ahead of real time by the slices played: so does the records' clock
    pump = RecordPump(builder, sink, interval_s=0.05, clock=lambda: time.time() + (now[0] - started))

    def fact(item: rf.IvrFact) -> None:
        facts.append(item)
        pump.fact(item)

    controller = Controller(
        holder,
        ShiftedLive(RedisLiveSource(redis, keys)),
        clock=lambda: decision_clock[0],
        live_timeout=1.0,
        facts=fact,
        fact_clock=lambda: now[0],
        callbacks=RedisCallbackDesk(redis, keys),
    )
    server = FastAgiServer(ServerConfig(host="127.0.0.1", port=0, call_timeout=20))
    controller.register(server)
    async with FakeAmi("callrouter", SECRET, clock=lambda: ami_clock[0]) as fake, server:
        settings = AmiSettings(port=fake.port, secret=SECRET, lease_ttl_s=5)
        lease = WriterLease(redis, "ctl-a", settings.lease_ttl_s, keys)
        consumer = AmiConsumer(settings, QueueStateStore(redis, "ctl-a", keys), lease, on_message=pump.ami)
        await consumer.start()
        pumping = asyncio.create_task(pump.run())
        try:
            await wait_until(lambda: consumer.connected and consumer.is_writer)
            await _seed(fake, ami_clock, redis, keys)
            yield Rig(fake, server.port, redis, keys, controller, facts, now, now[0], sink)
        finally:
            pumping.cancel()
            await consumer.stop()
            await redis.aclose()


async def settled(rig: Rig, waiting: int) -> None:
    """Live state in Redis shows ``waiting`` callers."""
    for _ in range(100):
        snap = await QueueStateStore(rig.redis, "reader", rig.keys).snapshot(
            QUEUE, datetime.now(TUESDAY_10AM.tzinfo)
        )
        if snap is not None and snap.waiting == waiting:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"live state never showed {waiting} waiting")


def prompts(record: CallRecord) -> list[str]:
    return [p for s in record.sessions for p in s.prompts]


def commands(record: CallRecord) -> list[str]:
    return [c for s in record.sessions for c in s.commands]


ANSWERED = QueuePlay(interface=ADVISER)
SLICE_ENDS = QueuePlay("timeout", interface=ADVISER)


async def test_entry_offer_above_the_threshold_takes_the_callers_own_number(rig: Rig) -> None:
    """4 waiting, 1 adviser, 300 s calls: 20 minutes expected, above 300 s: the offer at entry;
    the caller presses 1 and confirms the number they call from: the callback keeps their join
    time; goodbye and hang up; the record's fact says accepted, geographic (never the number)."""
    await rig.waiting(4)
    await settled(rig, 4)
    record = await rig.call([PressAfterPrompt("1"), PressAfterPrompt("1"), PressAfterPrompt("1")], [])
    assert record.summary() == "route (open) -> menu main -> hang up"
    assert "harborough/callback-offer" in prompts(record)
    assert "harborough/callback-goodbye" in prompts(record)
    assert any(c.startswith("SAY DIGITS 01632960123") for c in commands(record))
    pending = await pending_callbacks(rig.redis, rig.keys, QUEUE)
    assert len(pending) == 1
    stored = await rig.redis.hgetall(rig.keys.callback(pending[0].callback_id))
    assert stored["number"] == "+441632960123"
    assert float(stored["joined_at"]) == pending[0].joined_at == int(rig.start)
    assert [(o.accepted, o.number_kind) for o in rig.offers()] == [(True, "geographic")]
    assert rig.joins() == []  # never queued: the offer came before the first slice


async def test_no_offer_below_the_threshold(rig: Rig) -> None:
    """Nobody waiting, so the caller is next: no offer at entry; answered in the first slice."""
    await settled(rig, 0)
    record = await rig.call([PressAfterPrompt("1")], [ANSWERED])
    assert record.summary().startswith("route (open) -> menu main -> queue hdc-revenues (continue)")
    assert not any("callback" in p for p in prompts(record))
    assert rig.offers() == []


async def test_announcements_say_position_and_more_than_ten_minutes(rig: Rig) -> None:
    """4 ahead at 300 s each with one adviser: 20 minutes, beyond the 600 s the plan lets it
    say: "there are 4 calls waiting ahead of you; the estimated hold time is more than 10
    minutes", never "20". The caller declines the offer and is answered in the first slice."""
    await rig.waiting(4)
    await settled(rig, 4)
    record = await rig.call([PressAfterPrompt("1"), Silence()], [ANSWERED])
    said = [
        c for c in commands(record) if c.startswith(("STREAM FILE queue", "STREAM FILE vm", "SAY NUMBER"))
    ]
    assert said[:6] == [
        'STREAM FILE queue-thereare ""',
        'SAY NUMBER 4 ""',
        'STREAM FILE queue-callswaiting ""',
        'STREAM FILE queue-holdtime ""',
        'STREAM FILE vm-morethan ""',
        'SAY NUMBER 10 ""',
    ]
    assert "SAY NUMBER 20" not in " ".join(commands(record))
    assert [(o.accepted, o.number_kind) for o in rig.offers()] == [(False, None)]
    assert await pending_callbacks(rig.redis, rig.keys, QUEUE) == []


async def test_periodic_offer_and_the_place_kept_between_slices(rig: Rig) -> None:
    """Declined at entry; the first slice ends (QUEUESTATUS=TIMEOUT, two minutes later): offered
    again, declined; the caller rejoins at the position Queue() reported (QUEUEPOSITION), ahead
    of a caller who joined behind them meanwhile; answered in the second slice."""
    await rig.waiting(2)
    await settled(rig, 2)

    def latecomer() -> None:
        rig.fake.caller_joins(QUEUE, number="01632960999")

    first = QueuePlay("timeout", interface=ADVISER, wait_s=0.05)
    plays = [first, ANSWERED]
    original = rig._play

    def play(queue: str, caller: Channel) -> QueuePlay:
        if len(rig.plays) == 2:
            asyncio.get_running_loop().call_soon(latecomer)  # joins while our caller waits
        return original(queue, caller)

    rig._play = play  # type: ignore[method-assign]
    record = await rig.call([PressAfterPrompt("1"), Silence(), Silence()], plays)
    assert record.summary().startswith("route (open) -> menu main -> queue hdc-revenues (timeout)")
    assert record.summary().endswith("queue hdc-revenues (continue) -> answered, survey not answered")
    assert rig.joins() == [3, 3]  # rejoined at their place, not behind the latecomer (4th)
    assert [o.accepted for o in rig.offers()] == [False, False]
    contact = await rig.record(record.sessions[0].uniqueid)
    assert [(v.queue, v.position, v.outcome) for v in contact.queues] == [(QUEUE, 3, "answered")]
    assert contact.callback is not None
    assert (contact.callback.offered, contact.callback.accepted) == (True, False)


async def test_a_key_during_the_wait_hears_the_offer_at_once(rig: Rig) -> None:
    """Below the threshold (no offer at entry), the caller presses 1 in the queue: Queue() ends
    at callrouter-wait-key,1 (queues.conf context=), the offer plays; they key another number
    (a mobile), confirm it, and hang up with a callback that holds their first join time."""
    await settled(rig, 0)
    steps = [
        PressAfterPrompt("1"),
        PressAfterPrompt("2"),
        PressAfterPrompt("07700900123"),
        PressAfterPrompt("1"),
    ]
    key = QueuePlay("key", interface=ADVISER, digit="1")
    record = await rig.call([PressAfterPrompt("1"), PressAfterPrompt("1"), *steps[1:]], [key])
    assert record.summary() == "route (open) -> menu main -> queue hdc-revenues (exitwithkey) -> hang up"
    pending = await pending_callbacks(rig.redis, rig.keys, QUEUE)
    assert len(pending) == 1
    assert pending[0].joined_at == int(rig.start)  # the first join, not the time of the key
    stored = await rig.redis.hgetall(rig.keys.callback(pending[0].callback_id))
    assert stored["number"] == "+447700900123"
    assert [(o.accepted, o.number_kind) for o in rig.offers()] == [(True, "mobile")]
    contact = await rig.record(record.sessions[0].uniqueid)
    assert [(v.queue, v.outcome) for v in contact.queues] == [(QUEUE, "callback")]
    assert contact.callback is not None
    # not called back yet: no attempt, no outcome
    expected = {"offered": True, "accepted": True, "number_kind": "mobile", "attempts": [], "outcome": None}
    assert contact.callback.model_dump() == expected
    assert "07700900123" not in contact.model_dump_json()  # the record has the kind, never the number


async def test_premium_refused_then_invalid_then_given_up(rig: Rig) -> None:
    """Withheld caller id: must key a number. 09... (premium) is refused, then 12345 (not a
    number), then nothing: after three tries the caller keeps waiting, answered in the slice."""
    await rig.waiting(4)
    await settled(rig, 4)
    steps: list[Step] = [PressAfterPrompt("1"), PressAfterPrompt("1"), PressAfterPrompt("09012345678"),
                         PressAfterPrompt("12345"), Silence()]  # fmt: skip
    record = await rig.call(steps, [ANSWERED], caller=None)
    assert prompts(record).count("harborough/callback-number-refused") == 3
    assert "harborough/callback-number-is" not in prompts(record)  # withheld: nothing to confirm
    assert record.summary().endswith("queue hdc-revenues (continue) -> answered, survey not answered")
    assert await pending_callbacks(rig.redis, rig.keys, QUEUE) == []
    assert [(o.accepted, o.number_kind) for o in rig.offers()] == [(False, None)]


@pytest.mark.parametrize("policies", [{"above": 300, "with_policies": False}])
async def test_a_plan_without_callback_or_announcements_queues_as_before(rig: Rig) -> None:
    """No policy on the queue: CR_ACTION=queue, one Queue() with the plan's 900 s timeout, no
    wait route, no announcement, no key context needed."""
    await rig.waiting(4)
    await settled(rig, 4)
    record = await rig.call([PressAfterPrompt("1")], [ANSWERED])
    assert record.summary() == (
        "route (open) -> menu main -> queue hdc-revenues (continue) -> answered, survey not answered"
    )
    assert record.variables["CR_ACTION"] == "queue"
    assert "CR_WAIT" not in record.variables
    assert len(record.sessions) == 3  # route, menu, survey: no wait step
    assert not any(c.startswith(("SAY", "STREAM FILE queue")) for c in commands(record))
    assert rig.offers() == []
    assert rig.joins() == [5]  # behind the 4 waiting


async def test_a_hang_up_between_slices_is_an_abandon_in_the_queue(rig: Rig) -> None:
    """The caller hangs up while the position is announced after the first slice: the record's
    one queue visit is abandoned (from the first join), not an abandon in the IVR."""
    await rig.waiting(4)
    await settled(rig, 4)
    steps: list[Step] = [PressAfterPrompt("1"), Silence(), HangUpDuring("queue-thereare")]
    record = await rig.call(steps, [SLICE_ENDS])
    assert record.ended == "caller hung up"
    contact = await rig.record(record.sessions[0].uniqueid)
    assert [(v.queue, v.outcome) for v in contact.queues] == [(QUEUE, "abandoned")]
    assert not contact.ivr.abandoned
