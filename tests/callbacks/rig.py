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
from emulator.ami_originate import Legs, OriginatePlay, OriginateRequest, one_hung_up
from emulator.ami_permissions import CALLROUTER_USER_WRITE
from emulator.ami_wire import channel_event
from emulator.centre import CallCentre
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
from routing.replicas import NO_WAIT, ReplicaWait
from tests.controller.conftest import EXAMPLE
from tests.support.live_web import fast_ami_settings

SECRET = "callback-test-secret"
QUEUE = "hdc-revenues"
ADVISERS = ("PJSIP/adviser1", "PJSIP/adviser2", "PJSIP/adviser3")

ADVISER_EXTENSION = ("Adviser", "2101")  # the answering adviser's caller id (name, extension)


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
    """What the caller's phone does: a DIALSTATUS, the seconds it rings first and, when
    answered, the seconds talked (both played at once, on the ;1 leg's clock: its events'
    ``Timestamp``)."""

    status: str = "ANSWER"
    talk_s: int = 60
    ring_s: float = 0.0


@dataclass
class CallbackCentre:
    """The test's centre. Advisers start busy; :meth:`free_adviser` ends what they were on and
    makes them ready; a ready adviser goes to the head of the queue at once, as app_queue hands
    an adviser who frees up to the first caller waiting (:meth:`serve`)."""

    fake: FakeAmi
    redis: Redis
    keys: RedisKeys
    plan: CompiledPlan
    pbx: Pbx = field(init=False)
    centre: CallCentre = field(init=False)
    phones: dict[str, list[Phone]] = field(default_factory=dict)  # number -> one per call, in turn
    free: list[str] = field(default_factory=list)  # advisers ready for the next queue call
    on: dict[str, str] = field(default_factory=dict)  # adviser -> the live caller they talk to
    served: list[str] = field(default_factory=list)  # who got an adviser, in order: uniqueid or callback id
    log: list[tuple[str, str]] = field(default_factory=list)  # ("adviser"|"caller", who), in order
    originates: list[OriginateRequest] = field(default_factory=list)
    legs: dict[str, asyncio.Future[str]] = field(default_factory=dict)  # callback legs waiting
    ringing: dict[str, Phone] = field(default_factory=dict)  # number -> its current call's script

    # --- app_queue ----------------------------------------------------------------------------

    async def serve(self) -> None:
        while True:
            waiting = self.fake.model.queue(QUEUE).waiting
            while self.free and waiting:
                head = waiting[0].channel.uniqueid
                interface = self.free.pop(0)
                leg = self.legs.pop(head, None)
                if leg is not None:
                    leg.set_result(interface)  # the leg's far end answers it (far_end)
                    await asyncio.sleep(0.05)
                else:
                    self.fake.answer(head, interface)
                    self.on[interface] = head
                    self.served.append(head)
                    self.log.append(("adviser", interface))
                waiting = self.fake.model.queue(QUEUE).waiting
            await asyncio.sleep(0.01)

    # --- the far end of an Originate ----------------------------------------------------------

    async def far_end(self, request: OriginateRequest, legs: Legs) -> OriginatePlay:
        self.originates.append(request)
        queue = request.variables[cv.CALLBACK_QUEUE]
        position = int(request.variables[cv.CALLBACK_POSITION])
        two = dataclasses.replace(
            legs.two, context="callrouter-callback-adviser", exten="s", caller_id_name="Callback"
        )
        ringing: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.legs[two.uniqueid] = ringing
        self.fake.emit(self.fake.model.join(queue, two, time.time(), position=position))
        try:
            interface = await asyncio.wait_for(asyncio.shield(ringing), request.timeout_ms / 1000)
        except TimeoutError:
            # The Originate's Timeout: Asterisk hangs ;2 up (HangupRequest, Cause 19), it leaves
            # the queue (Abandon, Leave); the Originator then reports both legs' Hangup (19)
            # around OriginateResponse (callback_originate.txt, "no adviser")
            self.legs.pop(two.uniqueid, None)
            self.fake.emit([channel_event("HangupRequest", "call,all", two, ("Cause", "19"))])
            self.fake.emit(self.fake.model.time_out(two.uniqueid, time.time()))
            return OriginatePlay("noanswer")
        agent = self.fake.model.new_channel(interface, *ADVISER_EXTENSION)
        agent = dataclasses.replace(agent, linkedid=legs.one.uniqueid)
        self.fake.emit(self.fake.model.answer(two.uniqueid, interface, agent, time.time()))
        self.served.append(request.variables[cv.CALLBACK_ID])
        self.log.append(("adviser", interface))
        return OriginatePlay("answer")

    async def answered(self, request: OriginateRequest, legs: Legs) -> None:
        """The ;1 leg runs callrouter-callback-caller; then the adviser hangs up. As on Asterisk
        (``callback_originate.txt``), the adviser's answer on ;2 becomes ;1's caller id (its
        connected line): the Originate's CallerID is no longer there when ;1 dials the caller."""
        one = self.pbx.new_channel(
            legs.one.name,
            uniqueid=legs.one.uniqueid,
            caller_num=ADVISER_EXTENSION[1],
            caller_name=ADVISER_EXTENSION[0],
            context=request.context,
            exten=request.exten,
            announced=True,  # the Originate made it: its Newchannel has gone out
        )
        one.state = "Up"  # the Originate answered it: the adviser's answer
        for name, value in request.variables.items():
            one.set(name, value)
        await self.pbx.run(one, request.context, request.exten)
        # ;1's dialplan ends: it hangs up, then the queue call of ;2 ends, all with ;1's cause
        # (16; 17 when the caller was busy: callback_originate.txt)
        self.fake.emit(one_hung_up(legs, one.hangup_cause))
        self.fake.emit(self.fake.model.complete(legs.two.uniqueid, time.time(), cause=one.hangup_cause))

    def phone(self, invite: Invite) -> str:
        """The caller's phone rings: this call's script entry (the last one repeats)."""
        self.log.append(("caller", invite.user))
        script = self.phones.setdefault(invite.user, [Phone()])
        self.ringing[invite.user] = script.pop(0) if len(script) > 1 else script[0]
        return self.ringing[invite.user].status

    def talk(self, invite: Invite) -> int:
        return self.ringing[invite.user].talk_s

    def ring(self, invite: Invite) -> float:
        return self.ringing[invite.user].ring_s

    # --- the test's side --------------------------------------------------------------------

    def caller_joins(self, name: str = "Jane Resident") -> str:
        """A live caller joins the queue (an inbound call waiting)."""
        emission = self.fake.caller_joins(QUEUE, name=name)
        assert emission.channel is not None
        return emission.channel.uniqueid

    def free_adviser(self, interface: str) -> None:
        """``interface`` ends the live call they were on (if any) and is ready for the next."""
        uniqueid = self.on.pop(interface, None)
        if uniqueid is not None:
            self.fake.complete(uniqueid)
        else:
            self.fake.set_member_status(interface, 1, in_call=False)
        self.free.append(interface)

    async def take_callback(
        self,
        call_id: str,
        number: str,
        joined_at: float,
        now: float | None = None,
        wait: ReplicaWait = NO_WAIT,
    ) -> str:
        """A caller who joined at ``joined_at`` takes the callback offer at ``now`` (default: now),
        as the IVR does, through ``request_callback`` (acknowledged once ``wait``'s replicas hold it)."""
        now = time.time() if now is None else now
        req = CallbackRequest(
            tenant="harborough",
            queue="revenues",
            number=number,
            joined_at=joined_at,
            requested_at=now,
            call_id=call_id,
            language="en",
        )
        policy = self.plan.plan.tenants["harborough"].queues["revenues"].callback
        assert policy is not None
        return await request_callback(
            self.redis, self.keys, req, policy, now, asterisk_queue=QUEUE, wait=wait
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


FAST = DiallerSettings(interval_s=0.2, adviser_wait_s=5, lost_after_s=1)


@asynccontextmanager
async def emulated_centre(
    redis_url: str | Redis, keys: RedisKeys, plan_path: Path
) -> AsyncIterator[CallbackCentre]:
    """The fake AMI server (its port: ``rig.fake.port``), the PBX and app_queue's turns; no
    controller (a test runs its own, in this process or as ``callrouter serve``). ``redis_url``:
    a URL, or a client of the test's own (through Sentinel, say), closed on exit as well."""
    compiled = PlanHolder.load(plan_path).current
    redis = Redis.from_url(redis_url) if isinstance(redis_url, str) else redis_url
    async with FakeAmi("callrouter", SECRET, write=CALLROUTER_USER_WRITE) as fake:
        for interface in ADVISERS:
            fake.add_member(QUEUE, interface, f"Adviser {interface[-1]}", membership="static", send=False)
        for interface in ADVISERS:  # every adviser is on a call when the test starts
            fake.set_member_status(interface, 2, in_call=True, send=False)
        rig = CallbackCentre(fake, redis, keys, compiled)
        rig.centre = CallCentre(fake, stamp=time.time)
        rig.pbx = Pbx(
            Dialplan.parse((DIALPLANS / "callrouter.conf").read_text(encoding="utf-8")),
            {**GLOBALS, "CR_TRUNK": "pstn"},
            pjsip=Pjsip({"pstn": "sip:127.0.0.1:5090"}),
            far_end=rig.phone,
            talk_s=rig.talk,
            ring_s=rig.ring,
            events=rig.centre,
        )
        fake.originator.far_end = rig.far_end
        fake.originator.answered = rig.answered
        serving = asyncio.create_task(rig.serve())
        try:
            yield rig
        finally:
            serving.cancel()
            await asyncio.gather(serving, return_exceptions=True)
            await redis.aclose()


@asynccontextmanager
async def centre(
    redis_url: str | Redis,
    keys: RedisKeys,
    plan_path: Path,
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    settings: DiallerSettings = FAST,
    wait: ReplicaWait = NO_WAIT,
) -> AsyncIterator[tuple[CallbackCentre, Dialler]]:
    """:func:`emulated_centre` with a controller's AMI side in this process: the AMI consumer
    (live state into Redis, under the writer lease) and the dialler (its claims and ends
    acknowledged once ``wait``'s replicas hold them)."""
    async with emulated_centre(redis_url, keys, plan_path) as rig:
        redis, compiled = rig.redis, rig.plan
        ami = fast_ami_settings(rig.fake.port, SECRET)
        store = QueueStateStore(redis, "ctl-a", keys)
        lease = WriterLease(redis, "ctl-a", ami.lease_ttl_s, keys)
        live = CachedLiveSource(redis, lambda: compiled, keys=keys, refresh_s=0.1, max_age_s=3600)
        consumer = AmiConsumer(ami, store, lease)
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
            wait=wait,
        )
        consumer.on_message = dialler.on_message
        await consumer.start()
        tasks = [asyncio.create_task(live.run(lambda: datetime.now(UTC))), asyncio.create_task(dialler.run())]
        try:
            await wait_for(lambda: consumer.is_writer and consumer.stats.reconciles_applied > 0, 10)
            yield rig, dialler
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await consumer.stop()
