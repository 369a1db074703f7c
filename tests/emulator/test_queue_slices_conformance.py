"""Queue() as the emulated PBX and centre play it, against Asterisk 22.10.1 (``queue_slices.txt``).

The capture's part 2 is replayed: its own dialplan (copied from the capture's header), two callers
in ``council-plain`` (``context=labq-key``): D joins an empty queue asking for position 5, presses
7 (no extension 7 in ``labq-key``: ignored, D stays) then 1 (D leaves for ``labq-key,1,1``); E
joins behind D asking for position 9 and, D gone, times out. Compared: each caller's queue events
(Position, Count, OriginalPosition) from the capture's AMI annotations, and what the dialplan
read after Queue() (its ``Verbose`` lines in the capture's log: QUEUESTATUS, QUEUEPOSITION).
Part 1's facts (a TIMEOUT slice, the rejoin at QUEUEPOSITION) are checked on the queue model.
"""

from __future__ import annotations

import asyncio
import re

from emulator.ami import FakeAmi
from emulator.ami_wire import Message, headers_dict
from emulator.centre import CallCentre, QueuePlay
from emulator.extensions import Dialplan
from emulator.pbx import Channel, Pbx
from tests.fastagi.transcripts import FIXTURES

CAPTURE = FIXTURES / "queue_slices.txt"
PART_2 = CAPTURE.read_text(encoding="utf-8").split("# ---- Part 2")[1]
QUEUE_EVENTS = ("QueueCallerJoin", "QueueCallerAbandon", "QueueCallerLeave")
D, E = "PJSIP/sipp-00000005", "PJSIP/sipp-00000006"


def lab_dialplan() -> str:
    """Part 2's dialplan, verbatim from the capture's header (its ``[labq]`` and ``[labq-key]``)."""
    header = PART_2.split("# Calls:")[0]
    lines = [line[1:].strip() for line in header.splitlines() if line.startswith("#   ")]
    start = lines.index("[labq]")
    return "\n".join(lines[start:]) + "\n"


def captured_queue_events(channel: str) -> list[tuple[str, ...]]:
    """The channel's queue events in part 2, from the ``AMI Event:`` annotations."""
    found: list[tuple[str, ...]] = []
    for line in PART_2.splitlines():
        if "AMI Event: " not in line:
            continue
        fields = dict(item.split(": ", 1) for item in line.split("AMI Event: ", 1)[1].split("; ")[1:])
        event = line.split("AMI Event: ", 1)[1].split(";", 1)[0]
        if event in QUEUE_EVENTS and fields.get("Channel") == channel:
            found.append(queue_event(event, fields))
    return found


def queue_event(event: str, fields: dict[str, str]) -> tuple[str, ...]:
    extra = fields.get("Count") if event != "QueueCallerAbandon" else fields.get("OriginalPosition")
    return (event, fields["Position"], extra or "")


def captured_verbose() -> list[str]:
    """What the dialplan said after Queue() (``Verbose`` lines), without QUEUEWAIT (see below)."""
    said = re.findall(r"app_verbose\.c: (.*)$", PART_2, re.MULTILINE)
    return [without_wait(line) for line in said]


def without_wait(text: str) -> str:
    """QUEUEWAIT (the whole seconds waited) is not emulated: the emulated wait is not the capture's."""
    return re.sub(r" QUEUEWAIT=\[[^]]*\]", "", text)


class Kept(CallCentre):
    def __init__(self, fake: FakeAmi, plays: dict[str, QueuePlay]) -> None:
        super().__init__(fake, lambda _queue, caller: plays[caller.name])
        self.sent: list[dict[str, str]] = []

    def _emit(self, messages: list[Message]) -> None:
        self.sent.extend(headers_dict(m) for m in messages)
        super()._emit(messages)

    def queue_events(self, channel: str) -> list[tuple[str, ...]]:
        mine = [m for m in self.sent if m.get("Event") in QUEUE_EVENTS and m["Channel"] == channel]
        return [queue_event(m["Event"], m) for m in mine]


async def replay_part_2() -> tuple[Kept, Pbx]:
    async with FakeAmi() as fake:
        plays = {
            D: QueuePlay("key", digit="71", wait_s=0.2),  # 7 ignored, then 1
            E: QueuePlay("timeout", wait_s=0.4),  # the slice ends after D has left
        }
        centre = Kept(fake, plays)
        pbx = Pbx(
            Dialplan.parse(lab_dialplan()),
            {},
            events=centre,
            queue_call=centre.queue,
            queue_contexts={"council-plain": "labq-key"},  # queues.conf context=labq-key
        )
        d, e = pbx.new_channel(D), pbx.new_channel(E)
        first = asyncio.create_task(pbx.run(d, "labq", "601"))
        await asyncio.sleep(0.05)  # E calls after D has joined
        await pbx.run(e, "labq", "602")
        await first
    return centre, pbx


def test_the_capture_shows_an_ignored_key_and_a_key_exit() -> None:
    assert captured_queue_events(D) == [("QueueCallerJoin", "1", "1"), ("QueueCallerLeave", "1", "1")]
    assert captured_queue_events(E) == [
        ("QueueCallerJoin", "2", "2"),
        ("QueueCallerAbandon", "1", "2"),
        ("QueueCallerLeave", "1", "0"),
    ]
    assert "DTMF end '7' received on PJSIP/sipp-00000005" in PART_2  # pressed, and nothing left


async def test_the_emulated_queue_calls_are_the_captured_ones() -> None:
    centre, pbx = await replay_part_2()
    assert centre.queue_events(D) == captured_queue_events(D)
    assert centre.queue_events(E) == captured_queue_events(E)
    said = [without_wait(e.data.partition(",")[2]) for e in pbx.events if e.app == "Verbose"]
    assert sorted(said) == sorted(captured_verbose())  # D: key exit, QUEUESTATUS still PRESET


async def test_an_ignored_key_leaves_the_caller_waiting_for_what_comes_next() -> None:
    """The 7 alone: D stays in the queue and, answered later, goes on with CONTINUE."""
    async with FakeAmi() as fake:
        centre = Kept(fake, {D: QueuePlay("key", digit="7", then="answer")})
        pbx = Pbx(
            Dialplan.parse(lab_dialplan()),
            {},
            events=centre,
            queue_call=centre.queue,
            queue_contexts={"council-plain": "labq-key"},
        )
        d: Channel = pbx.new_channel(D)
        await pbx.run(d, "labq", "601")
    assert [e[0] for e in centre.queue_events(D)] == ["QueueCallerJoin", "QueueCallerLeave"]
    assert any(m.get("Event") == "AgentConnect" for m in centre.sent)
    assert [e.data for e in pbx.events if e.app == "Verbose"] == [
        "1,labq: after Queue() QUEUESTATUS=[CONTINUE] QUEUEPOSITION=[1] QUEUEWAIT=[]"
    ]


PART_1 = CAPTURE.read_text(encoding="utf-8").split("# ---- Part 2")[0]
A = "PJSIP/sipp-00000002"
# Part 1's Queue() call, as the wait loop makes it (the capture's log), looped on TIMEOUT
SLICES = (
    "[slices]\n"
    "exten => s,1,Set(QUEUEPOSITION=)\n"
    " same => n(step),Set(QUEUESTATUS=)\n"
    " same => n,Queue(council-cb,c,,,4,,callrouter-agent,,${QUEUEPOSITION})\n"
    ' same => n,GotoIf($["${QUEUESTATUS}" = "TIMEOUT"]?step)\n'
)


def captured_part_1(channel: str) -> list[tuple[str, ...]]:
    found: list[tuple[str, ...]] = []
    for line in PART_1.splitlines():
        if "AMI Event: " not in line:
            continue
        event, *items = line.split("AMI Event: ", 1)[1].split("; ")
        fields = dict(item.split(": ", 1) for item in items)
        if fields.get("Channel") != channel:
            continue
        if event in QUEUE_EVENTS:
            found.append(queue_event(event, fields))
        elif event == "VarSet" and fields["Variable"] in ("QUEUEPOSITION", "QUEUESTATUS") and fields["Value"]:
            found.append((fields["Variable"], fields["Value"]))
    return found


async def test_a_timeout_slice_and_the_rejoin_at_queueposition() -> None:
    """Caller A's first slice and rejoin (part 1): Join 1 of 1; B and C join behind; the slice
    times out (Abandon 1, Leave 1 of 2, QUEUEPOSITION=1 then QUEUESTATUS=TIMEOUT); Queue() again
    with position = QUEUEPOSITION puts A back at 1, B and C behind (Count 3)."""
    want = captured_part_1(A)[:6]
    assert want == [
        ("QueueCallerJoin", "1", "1"),
        ("QueueCallerAbandon", "1", "1"),
        ("QueueCallerLeave", "1", "2"),
        ("QUEUEPOSITION", "1"),
        ("QUEUESTATUS", "TIMEOUT"),
        ("QueueCallerJoin", "1", "3"),
    ]
    async with FakeAmi() as fake:
        plays = [QueuePlay("timeout", wait_s=0.2), QueuePlay("abandon")]
        centre = Kept(fake, {})
        centre.plays = lambda _queue, _caller: plays.pop(0)
        seen: list[tuple[str, ...]] = []

        def watch(_pbx: Pbx, channel: Channel, app: str, _data: str) -> None:
            if app == "Queue" and channel.get("QUEUESTATUS"):
                seen.append(("QUEUEPOSITION", channel.get("QUEUEPOSITION") or ""))
                seen.append(("QUEUESTATUS", channel.get("QUEUESTATUS") or ""))

        pbx = Pbx(Dialplan.parse(SLICES), {}, events=centre, queue_call=centre.queue, observer=watch)
        a = pbx.new_channel(A)
        run = asyncio.create_task(pbx.run(a, "slices", "s"))
        await asyncio.sleep(0.05)
        fake.caller_joins("council-cb", number="01632960122")  # B
        fake.caller_joins("council-cb", number="01632960133")  # C
        await run
    events = centre.queue_events(A)
    assert [*events[:3], *seen, events[3]] == want
