"""A pretend contact centre: Asterisk's AMI side, for whole calls and for demonstrations.

:class:`CallCentre` is the AMI side of the emulated PBX (:mod:`emulator.pbx`): every channel the
PBX makes is reported on the fake AMI server as Asterisk reports it (``Newchannel``, the
dialplan's user events, ``DialBegin``/``DialEnd`` of outward legs, ``HangupRequest``/``Hangup``
of the caller), and it plays each ``Queue()``: the
caller joins, then an adviser answers (the queue's gosub runs on the adviser's channel, the
adviser's desktop sets ``CR_DISPOSITION`` on it, the adviser hangs up and their hangup handlers
run), or the caller hangs up while waiting, or the queue times out, or the caller is withdrawn.
Event order and headers follow the captures (``ami_queue_answered_call.txt``,
``ami_queue_caller_abandon.txt``, ``ami_queue_timeout.txt``, ``ami_queue_call_disposition.txt``,
``dial_pjsip_trunk_forms.txt``). An outward leg ends when its ``Dial()`` returns: the far
end's ``HangupRequest`` (a BYE after the talk: 16; a 486: 17, before ``DialEnd``) and its
``Hangup`` (16, 17, or 0 when it rang unanswered), as ``callback_originate.txt``. Not
reported: bridges, music on hold, the queue's own DialBegin/DialEnd to advisers, ring-no-answer
retries and device states. The ``Timestamp`` header (``timestampevents = yes``) only when a
``stamp`` clock is given: then each event of a channel carries that clock plus the ringing and
talk the PBX played at once on that channel (:attr:`emulator.pbx.Channel.played_s`), as
Asterisk would have stamped them had it waited them out; without it, records take receive
times.

The demonstration:

``callrouter simulate-centre --plan PLAN --port 5038`` serves the fake AMI server on loopback
with three advisers in every queue of the plan. Callers keep joining one queue (by default
the first queue of the first council) faster than the advisers answer, so its waiting count
and longest wait climb until the overflow policy starts; the other queues stay quiet. It stops
by itself after ``--seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from emulator import ami_wire
from emulator.ami import FakeAmi
from emulator.ami_permissions import CALLROUTER_USER_WRITE
from emulator.ami_wire import Message, channel_event
from emulator.extensions import split_args
from emulator.pbx import EXIT_WITH_KEY, Channel, Pbx
from ivr import channel_vars as cv
from ivr.controller import PlanHolder
from routing.core.plan import Plan

ADVISERS = 3
_STATES = {"Down": "0", "Ring": "4", "Ringing": "5", "Up": "6"}
NORMAL_CLEARING = (("Cause", "16"), ("Cause-txt", "Normal Clearing"))
CAUSE_TEXT = {0: "Unknown", 16: "Normal Clearing", 17: "User busy", 19: "User alerting, no answer"}


def cause(number: int) -> tuple[tuple[str, str], tuple[str, str]]:
    """A Hangup's ``Cause`` / ``Cause-txt`` headers (main/causes.h)."""
    return ("Cause", str(number)), ("Cause-txt", CAUSE_TEXT.get(number, "Unknown"))


@dataclass(frozen=True)
class QueuePlay:
    """What happens to one caller in ``Queue()``.

    ``answer``: ``interface`` answers; their desktop sets ``disposition`` (or nothing) on their
    channel, then they hang up. ``abandon``: the caller hangs up while waiting. ``timeout``:
    Queue()'s timeout passes (``QUEUESTATUS=TIMEOUT``). ``withdraw``: the caller is withdrawn
    (``QUEUESTATUS=WITHDRAW``). ``key``: the caller presses ``digit`` while waiting."""

    outcome: Literal["answer", "abandon", "timeout", "withdraw", "key"] = "answer"
    interface: str = "PJSIP/agent1"
    adviser: str = "Agent One"
    disposition: str | None = None
    wait_s: float = 0.0
    """Real seconds the caller waits in the queue before the outcome (a demonstration's waits)."""
    digit: str = ""
    """``key``: the digits the caller presses while waiting, one after another. The first with
    an extension in the queue's context takes them out of Queue() to it
    (:meth:`~emulator.pbx.Pbx.queue_exit`); one with no such context or extension is ignored,
    as app_queue ignores it: the caller stays in the queue (``queue_slices.txt``: a 7 with no
    extension 7 changed nothing, a 1 then left)."""
    then: Literal["answer", "abandon", "timeout", "withdraw"] = "timeout"
    """``key``: what happens to a caller no key took out, who is still waiting."""


Plays = Callable[[str, Channel], QueuePlay]
"""``(queue, caller's channel) -> QueuePlay``: the centre's script."""


def wire(channel: Channel) -> ami_wire.Channel:
    """The AMI channel block of an emulated channel, where it is in the dialplan now."""
    return ami_wire.Channel(
        channel.name,
        channel.uniqueid,
        caller_id_num=channel.caller_num or "<unknown>",
        caller_id_name=channel.caller_name or "<unknown>",
        context=channel.context,
        exten=channel.exten,
        priority=str(channel.priority),
        state=_STATES.get(channel.state, "6"),
        state_desc=channel.state,
        linkedid=channel.call_id,
    )


def user_event(channel: Channel, data: str) -> Message:
    """``UserEvent(name,Key: value,...)`` as AMI sends it: the channel block, ``UserEvent``, then
    each argument as a header in order (README 2.4; the value keeps what follows ``: ``)."""
    name, *body = split_args(data)
    headers: list[tuple[str, str]] = []
    for item in body:
        key, colon, value = item.partition(":")
        if colon:
            headers.append((key.strip(), value[1:] if value.startswith(" ") else value))
    return channel_event("UserEvent", "user,all", wire(channel), ("UserEvent", name.strip()), *headers)


class CallCentre:
    """The AMI side of the emulated PBX (see the module doc): a :class:`~emulator.pbx.PbxEvents`
    and the PBX's ``queue_call``."""

    def __init__(
        self,
        fake: FakeAmi,
        plays: Plays = lambda _queue, _caller: QueuePlay(),
        *,
        stamp: Callable[[], float] | None = None,
    ) -> None:
        self.fake, self.plays, self.stamp = fake, plays, stamp
        self._gone: set[str] = set()  # callers whose Hangup was sent already

    def _emit(self, messages: list[Message]) -> None:
        self.fake.emit(messages)

    def _stamped(self, message: Message, channel: Channel) -> Message:
        """``message`` with ``Timestamp`` after ``Privilege`` (manager.c puts it there) on
        ``channel``'s clock, when this centre stamps events."""
        if self.stamp is None:
            return message
        at = self.stamp() + channel.played_s
        return [*message[:2], ("Timestamp", f"{at:.6f}"), *message[2:]]

    # --- PbxEvents -------------------------------------------------------------------------

    def channel_created(self, channel: Channel) -> None:
        self._emit([self._stamped(channel_event("Newchannel", "call,all", wire(channel)), channel)])

    def user_event(self, channel: Channel, data: str) -> None:
        self._emit([self._stamped(user_event(channel, data), channel)])

    def dialled(self, caller: Channel, leg: Channel, dial_string: str, status: str) -> None:
        """``Dial()`` of an outward leg: ``DialBegin`` (the caller's block, the leg's, DialString)
        and ``DialEnd`` with DIALSTATUS (``dial_pjsip_trunk_forms.txt``)."""
        begin = [
            ("Event", "DialBegin"),
            ("Privilege", "call,all"),
            *ami_wire.channel_block(wire(caller)),
            *ami_wire.channel_block(wire(leg), "Dest"),
            ("DialString", dial_string),
        ]
        if status == "ANSWER":
            leg.state = "Up"
        # a 486: the leg's HangupRequest (Cause 17) comes before DialEnd (callback_originate.txt)
        busy = (
            [channel_event("HangupRequest", "call,all", wire(leg), ("Cause", "17"))]
            if status == "BUSY"
            else []
        )
        end = [
            ("Event", "DialEnd"),
            ("Privilege", "call,all"),
            *ami_wire.channel_block(wire(caller)),
            *ami_wire.channel_block(wire(leg), "Dest"),
            ("DialStatus", status),
        ]
        self._emit(
            [self._stamped(begin, leg), *(self._stamped(m, leg) for m in busy), self._stamped(end, caller)]
        )

    def hung_up(self, channel: Channel, cause_: int, *, requested: bool) -> None:
        """A channel the PBX made is gone (an outward leg when Dial() returns; a callback's ;1
        leg when its dialplan ends): ``Hangup`` with its cause, after the far end's
        ``HangupRequest`` when ``requested`` (their BYE)."""
        ch = wire(channel)
        request = (
            [channel_event("HangupRequest", "call,all", ch, ("Cause", str(cause_)))] if requested else []
        )
        hangup = [*request, channel_event("Hangup", "call,all", ch, *cause(cause_))]
        self._emit([self._stamped(m, channel) for m in hangup])

    def caller_gone(self, channel: Channel, *, by_caller: bool) -> None:
        """The caller's channel is done: their BYE (``HangupRequest``, no Cause) when they hung
        up, then ``Hangup`` 16; nothing when the queue already reported it."""
        if channel.uniqueid in self._gone:
            return
        self._gone.add(channel.uniqueid)
        ch = wire(channel)
        request = [channel_event("HangupRequest", "call,all", ch)] if by_caller else []
        hangup = [*request, channel_event("Hangup", "call,all", ch, *cause(channel.hangup_cause))]
        self._emit([self._stamped(m, channel) for m in hangup])

    # --- Queue() ---------------------------------------------------------------------------

    async def queue(  # noqa: PLR0917 (the PBX calls it positionally: QueueCall)
        self, pbx: Pbx, caller: Channel, queue: str, max_wait: str, gosub: str, position: int = 0
    ) -> str:
        """Play ``Queue()`` for ``caller`` (joining at ``position``, Queue()'s 9th argument, when
        given); returns QUEUESTATUS (empty: the caller hung up; ``EXITWITHKEY``: a digit took
        them to the queue's context). Every exit from the waiting list sets ``QUEUEPOSITION``,
        the caller's place as they left (app_queue ``leave_queue``)."""
        play = self.plays(queue, caller)
        model, now = self.fake.model, self.fake.clock()
        if play.interface not in model.queue(queue).members:
            model.add_member(queue, play.interface, play.adviser, now, membership="static")
        self._emit(model.join(queue, wire(caller), now, position))
        if play.wait_s > 0:
            await asyncio.sleep(play.wait_s)
        caller.set("QUEUEPOSITION", str(model.position(caller.uniqueid)))
        if play.outcome == "key":
            if any(pbx.queue_exit(caller, queue, digit) for digit in play.digit):
                self._emit(model.exit_with_key(caller.uniqueid))
                return EXIT_WITH_KEY
            play = dataclasses.replace(play, outcome=play.then)  # still waiting
        if play.outcome == "abandon":
            self._gone.add(caller.uniqueid)
            self._emit(model.abandon(caller.uniqueid, self.fake.clock()))
            return ""
        if play.outcome in ("timeout", "withdraw"):
            self._emit(model.time_out(caller.uniqueid, self.fake.clock()))
            return "WITHDRAW" if play.outcome == "withdraw" else "TIMEOUT"
        await self._answered(pbx, caller, play, gosub)
        return "CONTINUE"

    async def _answered(self, pbx: Pbx, caller: Channel, play: QueuePlay, gosub: str) -> None:
        model = self.fake.model
        agent = pbx.new_channel(
            f"{play.interface}-{len(pbx.events):08x}",
            caller_num="2101",
            caller_name=play.adviser,
            linkedid=caller.call_id,
            context="agents",
            exten="s",
        )
        agent.state = "Up"
        self._emit(model.answer(caller.uniqueid, play.interface, wire(agent), self.fake.clock()))
        if gosub:
            await pbx.gosub_handler(agent, f"{gosub},s,1")  # app_queue: on the adviser's channel
        if play.disposition is not None:
            agent.set(cv.DISPOSITION, play.disposition)  # the adviser's desktop: AMI Setvar
        before, after = model.agent_hangs_up(caller.uniqueid, self.fake.clock())
        self._emit(before)
        agent.hung_up = True
        await pbx.run_hangup_handlers(agent)
        self._emit(after)


def queues_of(plan: Plan) -> list[str]:
    """Every Asterisk queue the plan names, in plan order, once each."""
    found = [q.asterisk_queue for t in plan.tenants.values() for q in t.queues.values()]
    return list(dict.fromkeys(found))


def staff(fake: FakeAmi, queues: list[str]) -> None:
    for queue in queues:
        for n in range(1, ADVISERS + 1):
            fake.add_member(queue, f"PJSIP/{queue}-{n}", f"Adviser {n}", membership="static", send=False)


def step(fake: FakeAmi, queue: str, rng: random.Random, answered: list[str]) -> None:
    """One beat: a caller joins; now and then an adviser answers the longest waiter."""
    fake.caller_joins(queue, name=rng.choice(["Jane Resident", "Zoë Brontë", "Sam Patel", "Ade Okafor"]))
    waiting = fake.model.queue(queue).waiting
    if waiting and rng.random() < 0.35:
        caller = waiting[0].channel.uniqueid
        fake.answer(caller, f"PJSIP/{queue}-{1 + len(answered) % ADVISERS}")
        answered.append(caller)
    if len(answered) > ADVISERS:
        fake.complete(answered.pop(0))


async def run(
    plan: Plan, port: int, seconds: float, *, beat_s: float, peak_queue: str | None, secret: str
) -> None:
    queues = queues_of(plan)
    busy = peak_queue or queues[0]
    rng = random.Random(2026)
    answered: list[str] = []
    async with FakeAmi("callrouter", secret, port=port, write=CALLROUTER_USER_WRITE) as fake:
        staff(fake, queues)
        print(f"pretend centre: AMI on 127.0.0.1:{fake.port}, peak in {busy}", flush=True)
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while loop.time() < end:
            step(fake, busy, rng, answered)
            await asyncio.sleep(beat_s)


def cmd_simulate_centre(args: argparse.Namespace) -> int:
    plan = PlanHolder.load(Path(args.plan)).current.plan
    secret = os.environ.get("CALLROUTER_AMI_SECRET", "demo-only")
    asyncio.run(run(plan, args.port, args.seconds, beat_s=args.beat, peak_queue=args.queue, secret=secret))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "simulate-centre", help="a pretend Asterisk (AMI) with a peak, for demonstrations"
    )
    parser.add_argument("--plan", required=True)
    parser.add_argument("--port", type=int, default=5038)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--beat", type=float, default=0.4, help="seconds between callers joining")
    parser.add_argument("--queue", help="the Asterisk queue that peaks (default: the plan's first)")
    parser.set_defaults(handler=cmd_simulate_centre)
