"""What the wait loop (callrouter-wait) relies on in Queue(), emulated as Asterisk 22.10.1 does it.

Captured (``ami_queue_timeout.txt``, ``ami_queue_status_summary_withdraw.txt``,
``ami_queue_answered_call.txt``): Queue()'s timeout argument ends the wait with
``QueueCallerAbandon``, ``QueueCallerLeave`` then ``QUEUESTATUS=TIMEOUT``; every exit sets
``QUEUEPOSITION`` (VarSet before QUEUESTATUS) to the caller's place as they left, renumbered
when someone ahead left first.

Captured since in ``queue_slices.txt`` and replayed against the emulator by
``tests/emulator/test_queue_slices_conformance.py`` (the position argument past the end of the
queue, an ignored key, a key exit, the rejoin at QUEUEPOSITION); here, from apps/app_queue.c of
Asterisk 22, the cases that capture does not show:

* Queue()'s 9th argument, ``position``: ``join_queue`` inserts the caller before the entry at
  that place among callers of the same priority (``if (!inserted && (qe->prio >= cur->prio) &&
  position && (position <= pos + 1))``), at the end when the queue is shorter; queue_exec reads
  it with ``atoi`` and takes a negative one as no preference.
* A digit while waiting: ``valid_exit`` goes to ``<queue context>,<digit>,1`` when the queue has
  a ``context`` (queues.conf) and the extension exists; queue_exec then logs EXITWITHKEY, does
  not call ``record_abandoned`` (no QueueCallerAbandon) and, its reason being QUEUE_UNKNOWN,
  leaves QUEUESTATUS as it was (``if (reason != QUEUE_UNKNOWN) set_queue_result(...)``);
  ``leave_queue`` still sets QUEUEPOSITION.
"""

from __future__ import annotations

import asyncio

import pytest

from emulator.ami import FakeAmi
from emulator.ami_wire import Message, headers_dict, parse_message, parse_transcript, server_messages
from emulator.centre import CallCentre, QueuePlay
from emulator.extensions import Dialplan
from emulator.pbx import Channel, Pbx
from tests.support.captures import captures_dir

QUEUE = "council-revenues"
WATCHED = ("QueueCallerJoin", "QueueCallerAbandon", "QueueCallerLeave")


def captured(name: str) -> dict[str, list[tuple[str, ...]]]:
    """Per caller channel: its queue events (name, Position) and QUEUEPOSITION/QUEUESTATUS sets."""
    text = (captures_dir() / name).read_text()
    out: dict[str, list[tuple[str, ...]]] = {}
    for block in server_messages(parse_transcript(text)):
        m = headers_dict(parse_message(block))
        event = m.get("Event", "")
        if event in WATCHED:
            out.setdefault(m["Channel"], []).append((event, m["Position"]))
        elif event == "VarSet" and m.get("Variable") in ("QUEUEPOSITION", "QUEUESTATUS"):
            out.setdefault(m["Channel"], []).append((m["Variable"], m["Value"]))
    return out


class Recording(CallCentre):
    def __init__(self, fake: FakeAmi, plays: list[QueuePlay]) -> None:
        super().__init__(fake, lambda _queue, _caller: plays.pop(0))
        self.sent: list[dict[str, str]] = []

    def _emit(self, messages: list[Message]) -> None:
        self.sent.extend(headers_dict(m) for m in messages)
        super()._emit(messages)


def emulated(centre: Recording, channel: Channel) -> list[tuple[str, ...]]:
    """The same view of an emulated caller: its queue events, then the variables Queue() left."""
    events: list[tuple[str, ...]] = [
        (m["Event"], m["Position"])
        for m in centre.sent
        if m.get("Event") in WATCHED and m["Channel"] == channel.name
    ]
    for variable in ("QUEUEPOSITION", "QUEUESTATUS"):
        value = channel.get(variable)
        if value is not None:
            events.append((variable, value))
    return events


def pbx_for(centre: Recording, dialplan: str, contexts: dict[str, str] | None = None) -> Pbx:
    return Pbx(
        Dialplan.parse(dialplan), {}, events=centre, queue_call=centre.queue, queue_contexts=contexts or {}
    )


PROBE = "[probe]\nexten => 2001,1,Queue(council-revenues,,,,8)\n same => n,NoOp(after)\n"


async def test_a_queue_timeout_is_what_the_capture_shows() -> None:
    """ami_queue_timeout.txt: Join 1, Abandon 1, Leave 1, QUEUEPOSITION=1, QUEUESTATUS=TIMEOUT."""
    (want,) = captured("ami_queue_timeout.txt").values()
    async with FakeAmi() as fake:
        centre = Recording(fake, [QueuePlay("timeout")])
        pbx = pbx_for(centre, PROBE)
        channel = pbx.new_channel("PJSIP/sipp-0000001a")
        await pbx.run(channel, "probe", "2001")
    assert emulated(centre, channel) == want
    assert pbx.events[-1].data == "after"  # the dialplan goes on after Queue()


async def test_queueposition_is_the_place_at_leaving() -> None:
    """ami_queue_status_summary_withdraw.txt: the second caller joined at 2 and, the first having
    left before them, left at 1: QUEUEPOSITION=1 for both."""
    want = list(captured("ami_queue_status_summary_withdraw.txt").values())
    async with FakeAmi() as fake:
        centre = Recording(fake, [QueuePlay("withdraw", wait_s=0.05), QueuePlay("withdraw", wait_s=0.15)])
        pbx = pbx_for(centre, PROBE)
        first, second = pbx.new_channel("PJSIP/sipp-0000001d"), pbx.new_channel("PJSIP/sipp-0000001f")
        task = asyncio.create_task(pbx.run(first, "probe", "2001"))
        await asyncio.sleep(0.01)
        await pbx.run(second, "probe", "2001")
        await task
    assert [emulated(centre, first), emulated(centre, second)] == want


async def test_an_answered_caller_gets_queueposition_too() -> None:
    """ami_queue_answered_call.txt: Join 1, Leave 1, QUEUEPOSITION=1 (with option c the caller
    goes on with QUEUESTATUS=CONTINUE, which that capture's call, without c, does not reach)."""
    (want,) = captured("ami_queue_answered_call.txt").values()
    async with FakeAmi() as fake:
        centre = Recording(fake, [QueuePlay()])
        pbx = pbx_for(centre, "[probe]\nexten => 2000,1,Queue(council-revenues)\n")
        channel = pbx.new_channel("PJSIP/sipp-00000016")
        await pbx.run(channel, "probe", "2000")
    assert emulated(centre, channel) == want


@pytest.mark.parametrize(
    ("position", "joined_at"), [("2", 2), ("1", 1), ("9", 4), ("", 4), ("-3", 4), ("x", 4)]
)
async def test_the_position_argument(position: str, joined_at: int) -> None:
    """app_queue join_queue (not captured): three waiting, Queue(...,position) enters at that
    place, or at the end when the queue is shorter, empty, negative or not a number (atoi)."""
    async with FakeAmi() as fake:
        for n in range(3):
            fake.caller_joins(QUEUE, number=f"0163296000{n}")
        centre = Recording(fake, [QueuePlay("timeout")])
        pbx = pbx_for(centre, f"[t]\nexten => s,1,Queue({QUEUE},c,,,5,,,,{position})\n")
        channel = pbx.new_channel("PJSIP/sipp-00000030")
        await pbx.run(channel, "t", "s")
    join = next(m for m in centre.sent if m.get("Event") == "QueueCallerJoin")
    assert (join["Position"], join["Count"]) == (str(joined_at), "4")
    assert channel.get("QUEUEPOSITION") == str(joined_at)


KEYED = (
    "[t]\nexten => s,1,Set(QUEUESTATUS=TIMEOUT)\n same => n,Queue(council-revenues,c,,,5)\n"
    " same => n,NoOp(no key)\n"
    "[waitkeys]\nexten => _[0-9*#],1,NoOp(key ${EXTEN} at ${QUEUEPOSITION} status ${QUEUESTATUS})\n"
)


async def test_a_digit_leaves_for_the_queue_context() -> None:
    """valid_exit (not captured): with context=waitkeys, a 1 takes the caller to waitkeys,1,1:
    Leave without Abandon, QUEUEPOSITION set, QUEUESTATUS left as it was."""
    async with FakeAmi() as fake:
        fake.caller_joins(QUEUE)
        centre = Recording(fake, [QueuePlay("key", digit="1")])
        pbx = pbx_for(centre, KEYED, {QUEUE: "waitkeys"})
        channel = pbx.new_channel("PJSIP/sipp-00000031")
        await pbx.run(channel, "t", "s")
    assert emulated(centre, channel) == [
        ("QueueCallerJoin", "2"),
        ("QueueCallerLeave", "2"),
        ("QUEUEPOSITION", "2"),
        ("QUEUESTATUS", "TIMEOUT"),  # the earlier value, untouched
    ]
    assert [e.data for e in pbx.events if e.app == "NoOp"] == ["key 1 at 2 status TIMEOUT"]


async def test_a_digit_with_no_context_is_ignored() -> None:
    """No context on the queue: the digit does nothing, the caller stays in the queue (here
    until the slice ends as a timeout, QueuePlay's ``then``)."""
    async with FakeAmi() as fake:
        centre = Recording(fake, [QueuePlay("key", digit="1")])
        pbx = pbx_for(centre, KEYED)
        channel = pbx.new_channel("PJSIP/sipp-00000032")
        await pbx.run(channel, "t", "s")
    assert [e.data for e in pbx.events if e.app == "NoOp"] == ["no key"]
    assert ("QueueCallerAbandon", "1") in emulated(centre, channel)
