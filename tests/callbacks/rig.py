"""A centre for callback tests: the fake AMI server with its queue model, the emulated PBX running
``dialplans/callrouter.conf``'s callback contexts, a real redis-server, the real AMI consumer (live
state into Redis, under the writer lease) and the dialler.

What an ``Originate`` of the dialler does here (``emulator.ami_originate`` plays the AMI side):
its ``;2`` leg joins the Asterisk queue at position 1 (as ``Queue(...,1)`` in
``callrouter-callback-adviser`` asks), waits for a free adviser (the test frees them), the adviser
answers (AgentCalled/AgentConnect), the ``;1`` leg runs ``callrouter-callback-caller`` in the PBX
(``Dial`` on the trunk; the caller's phone does what :attr:`CallbackCentre.phones` says, and
``UserEvent(CallbackOutcome)`` goes out on AMI), then the adviser hangs up.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from redis.asyncio import Redis

from emulator.ami import FakeAmi
from emulator.ami_originate import Legs, OriginatePlay, OriginateRequest
from emulator.centre import CallCentre, wire
from emulator.dialplan import DIALPLANS, GLOBALS
from emulator.extensions import Dialplan
from emulator.pbx import Invite, Pbx, Pjsip
from ivr import channel_vars as cv
from ivr.controller import PlanHolder
from ivr.dialler import Dialler, DiallerSettings
from routing.ami.consumer import AmiConsumer
from routing.callbacks import StoredCallback, load_callback, request_callback
from routing.core.callback import CallbackRequest
from routing.core.decide import CompiledPlan
from routing.live.lease import WriterLease
from routing.live.source import CachedLiveSource
from routing.live.store import QueueStateStore
from routing.redis_keys import RedisKeys
from tests.controller.conftest import EXAMPLE
from tests.support.live_web import fast_ami_settings

SECRET = "callback-test-secret"  # noqa: S105 (the fake AMI server's test credential)
QUEUE = "hdc-revenues"
ADVISERS = ("PJSIP/adviser1", "PJSIP/adviser2", "PJSIP/adviser3")


def open_all_hours_plan(tmp: Path, **callback: Any) -> Path:
    """The example plan with Harborough open round the clock (the tests run at any hour) and a
    callback policy on its revenues queue (no overflow there: overflow is the decision's test)."""
    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    harborough = data["tenants"]["harborough"]
    harborough["hours"] = {"weekdays": ["00:00-24:00"], "weekend": ["00:00-24:00"]}
    harborough["bank_holidays"] = "none"
    harborough["closures"] = []
    harborough["special_openings"] = []
    revenues = harborough["queues"]["revenues"]
    revenues.pop("overflow", None)
    revenues["callback"] = {"ring_s": 10, "max_attempts": 3, "retry_delay_s": 30, **callback}
    path = tmp / "plan.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


@dataclass
class Phone:
    """What the caller's phone does: a DIALSTATUS and, when answered, the seconds talked."""

    status: str = "ANSWER"
    talk_s: int = 60


@dataclass
class CallbackCentre:
    fake: FakeAmi
    redis: Redis
    keys: RedisKeys
    plan: CompiledPlan
    pbx: Pbx
    phones: dict[str, list[Phone]] = field(default_factory=dict)  # number -> one per call, in turn
    free: set[str] = field(default_factory=set)  # advisers ready for the next queue call
    log: list[tuple[str, str]] = field(default_factory=list)  # ("adviser"|"caller", who), in order
    originates: list[OriginateRequest] = field(default_factory=list)
    hold_adviser: asyncio.Event | None = None  # set: advisers answer; unset: they wait

    # --- the far end of an Originate ----------------------------------------------------------

    async def far_end(self, request: OriginateRequest, legs: Legs) -> OriginatePlay:
        self.originates.append(request)
        queue = request.variables[cv.CALLBACK_QUEUE]
        two = dataclasses.replace(
            legs.two, context="callrouter-callback-adviser", exten="s", caller_id_name="Callback"
        )
        self.fake.emit(self.fake.model.join(queue, two, time.time(), position=1))
        deadline = time.monotonic() + request.timeout_ms / 1000
        while time.monotonic() < deadline:
            ready = self.hold_adviser is None or self.hold_adviser.is_set()
            interface = next((a for a in ADVISERS if a in self.free), None)
            if ready and interface is not None and self._first_in(queue, two.uniqueid):
                self.free.discard(interface)
                agent = self.fake.model.new_channel(interface, "Adviser", "2101")
                agent = dataclasses.replace(agent, linkedid=legs.one.uniqueid)
                self.fake.emit(self.fake.model.answer(two.uniqueid, interface, agent, time.time()))
                self.log.append(("adviser", interface))
                return OriginatePlay("answer")
            await asyncio.sleep(0.02)
        self.fake.emit(self.fake.model.abandon(two.uniqueid, time.time()))
        return OriginatePlay("noanswer")

    def _first_in(self, queue: str, uniqueid: str) -> bool:
        waiting = self.fake.model.queue(queue).waiting
        return bool(waiting) and waiting[0].channel.uniqueid == uniqueid

    async def answered(self, request: OriginateRequest, legs: Legs) -> None:
        """The ;1 leg runs callrouter-callback-caller; then the adviser hangs up."""
        one = self.pbx.new_channel(
            legs.one.name,
            uniqueid=legs.one.uniqueid,
            caller_num=request.caller_id_num,
            caller_name=request.caller_id_name,
            context=request.context,
            exten=request.exten,
        )
        for name, value in request.variables.items():
            one.set(name, value)
        await self.pbx.run(one, request.context, request.exten)
        two = legs.two.uniqueid
        caller = self.fake.model.connected.get(two)
        interface = caller.interface if caller is not None else ""
        self.fake.emit(self.fake.model.complete(two, time.time()))
        if interface:
            self.free.add(interface)

    def phone(self, invite: Invite) -> str:
        self.log.append(("caller", invite.user))
        script = self.phones.get(invite.user) or [Phone()]
        return script[0].status

    def talk(self, invite: Invite) -> int:
        script = self.phones.get(invite.user) or [Phone()]
        talked = script[0].talk_s
        if len(script) > 1:
            script.pop(0)
        return talked

    # --- the test's side --------------------------------------------------------------------

    def caller_joins(self, name: str = "Jane Resident") -> str:
        """A live caller joins the queue (a real inbound call waiting)."""
        emission = self.fake.caller_joins(QUEUE, name=name)
        assert emission.channel is not None
        return emission.channel.uniqueid

    def adviser_takes_next_live_caller(self, uniqueid: str) -> str:
        """A free adviser answers the live caller ``uniqueid`` (app_queue's own ring)."""
        interface = next(a for a in ADVISERS if a in self.free)
        self.free.discard(interface)
        self.fake.answer(uniqueid, interface)
        self.log.append(("adviser", interface))
        self.log.append(("live", uniqueid))
        return interface

    def free_adviser(self, interface: str) -> None:
        self.free.add(interface)
        self.fake.set_member_status(interface, 1, in_call=False)

    async def take_callback(
        self, call_id: str, number: str, joined_at: float, requested_at: float | None = None
    ) -> str:
        req = CallbackRequest(
            tenant="harborough",
            queue="revenues",
            number=number,
            joined_at=joined_at,
            requested_at=requested_at or time.time(),
            call_id=call_id,
            language="en",
        )
        policy = self.plan.plan.tenants["harborough"].queues["revenues"].callback
        assert policy is not None
        return await request_callback(
            self.redis, self.keys, req, policy, time.time(), asterisk_queue=QUEUE
        )

    async def stored(self, ident: str) -> StoredCallback:
        found = await load_callback(self.redis, self.keys, ident)
        assert found is not None
        return found


async def wait_for(predicate: Callable[[], Any], timeout_s: float = 20.0) -> None:
    end = time.monotonic() + timeout_s
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        assert time.monotonic() < end, "condition not met in time"
        await asyncio.sleep(0.05)


@asynccontextmanager
async def centre(
    redis_url: str,
    keys: RedisKeys,
    plan_path: Path,
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    settings: DiallerSettings = DiallerSettings(interval_s=0.2, adviser_wait_s=5, lost_after_s=1),
) -> AsyncIterator[tuple[CallbackCentre, Dialler]]:
    compiled = PlanHolder.load(plan_path).current.compiled
    redis = Redis.from_url(redis_url)
    async with FakeAmi("callrouter", SECRET) as fake:
        for interface in ADVISERS:
            fake.add_member(QUEUE, interface, f"Adviser {interface[-1]}", membership="static", send=False)
        pbx_events = CallCentre(fake)
        rig_holder: list[CallbackCentre] = []
        pbx = Pbx(
            Dialplan.parse((DIALPLANS / "callrouter.conf").read_text(encoding="utf-8")),
            {**GLOBALS, "CR_TRUNK": "pstn"},
            pjsip=Pjsip({"pstn": "sip:127.0.0.1:5090"}),
            far_end=lambda invite: rig_holder[0].phone(invite),
            talk_s=lambda invite: rig_holder[0].talk(invite),
            events=pbx_events,
        )
        rig = CallbackCentre(fake, redis, keys, compiled, pbx, free=set(ADVISERS))
        rig_holder.append(rig)
        fake.originator.far_end = rig.far_end
        fake.originator.answered = rig.answered
        ami = fast_ami_settings(fake.port, SECRET)
        store = QueueStateStore(redis, "ctl-a", keys)
        lease = WriterLease(redis, "ctl-a", ami.lease_ttl_s, keys)
        live = CachedLiveSource(redis, lambda: compiled, keys=keys, refresh_s=0.1, max_age_s=3600)
        dialler_box: list[Dialler] = []
        consumer = AmiConsumer(ami, store, lease, on_message=lambda h, t: dialler_box[0].on_message(h, t))
        dialler = Dialler(
            redis,
            holder="ctl-a",
            is_holder=lambda: consumer.is_writer,
            send=consumer.send_action,
            plan=lambda: compiled,
            live=live.read_now,
            waiting=store.waiting_callers,
            clock=clock,
            keys=keys,
            settings=settings,
        )
        dialler_box.append(dialler)
        await consumer.start()
        tasks = [
            asyncio.create_task(live.run(lambda: datetime.now(UTC))),
            asyncio.create_task(dialler.run()),
        ]
        try:
            await wait_for(lambda: consumer.is_writer and consumer.stats.reconciles_applied > 0, 10)
            yield rig, dialler
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with_cancel = asyncio.gather(task, return_exceptions=True)
                await with_cancel
            await consumer.stop()
            await redis.aclose()
