"""The events contact records need, as the emulated centre sends them, against the captures.

``ami_queue_call_disposition.txt`` (an answered call the adviser ends, their hangup handler
raising ``UserEvent CallDisposition``, then the desktop's ``UserEvent`` action after the call)
and ``ami_queue_caller_abandon.txt`` (the caller hangs up while an adviser rings). The
``Timestamp`` header (``timestampevents = yes``) is the one header the fake leaves out.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from emulator.ami import FakeAmi
from emulator.ami_wire import Message, parse_message, parse_transcript, server_messages
from emulator.centre import CallCentre, QueuePlay
from emulator.dialplan import Asterisk
from emulator.pbx import Channel, Pbx
from tests.ami.test_fake_ami import SECRET, RawClient, close_clients, login
from tests.support.captures import captures_dir

QUEUE = "council-revenues"


def captured(name: str) -> list[Message]:
    """Every message Asterisk sent in a capture, header order and repeats kept, no Timestamp."""
    blocks = server_messages(parse_transcript((captures_dir() / name).read_text(encoding="utf-8")))
    return [[(k, v) for k, v in parse_message(b) if k != "Timestamp"] for b in blocks]


def names(message: Message) -> list[str]:
    return [k for k, _ in message]


def value(message: Message, key: str) -> str:
    return next(v for k, v in message if k == key)


@pytest.fixture
async def fake() -> AsyncIterator[FakeAmi]:
    async with FakeAmi("ivrtest", SECRET) as server:
        yield server
        await close_clients()


async def messages_until(client: RawClient, last: str, channel: str | None = None) -> list[Message]:
    got: list[Message] = []
    while not got or value(got[-1], "Event") != last or (channel and value(got[-1], "Channel") != channel):
        got.append(parse_message(await client.message()))
    return got


def pbx_with(centre: CallCentre) -> tuple[Pbx, Channel]:
    """The shipped dialplan on the emulated PBX, and a caller's channel at its Queue()."""
    pbx = Pbx(Asterisk().dialplan(), {}, events=centre, queue_call=centre.queue)
    caller = pbx.new_channel(
        "PJSIP/sipp-0000003b", caller_num="01632960123", caller_name="Jane Resident", context="probe"
    )
    caller.state = "Up"
    return pbx, caller


async def test_the_advisers_hangup_handler_raises_the_disposition_as_asterisk_did(fake: FakeAmi) -> None:
    """Queue()'s gosub (callrouter-agent) pushes callrouter-disposition on the adviser's channel;
    when the adviser hangs up: HangupRequest (no Cause), AgentComplete (Reason agent), the
    UserEvent with the Linkedid and CR_DISPOSITION, then the adviser's Hangup (16)."""
    client = await login(fake)
    centre = CallCentre(fake, lambda _q, _c: QueuePlay(disposition="resolved"))
    pbx, caller = pbx_with(centre)
    status = await centre.queue(pbx, caller, QUEUE, "30", "callrouter-agent")
    assert status == "CONTINUE"
    got = await messages_until(client, "QueueMemberStatus")
    while value(got[-1], "Status") != "1":
        got += await messages_until(client, "QueueMemberStatus")
    agent = value(next(m for m in got if value(m, "Event") == "AgentConnect"), "DestChannel")

    capture = captured("ami_queue_call_disposition.txt")
    cap_agent = "PJSIP/agent1-0000003c"

    def ending(messages: list[Message], adviser: str) -> list[Message]:
        wanted = ("HangupRequest", "AgentComplete", "UserEvent", "Hangup")
        return [
            m
            for m in messages
            if m[0] == ("Event", m[0][1])
            and value(m, "Event") in wanted
            and (value(m, "Event") == "AgentComplete" or dict(m).get("Channel") == adviser)
        ]

    ours, theirs = ending(got, agent), ending(capture, cap_agent)
    assert (
        [value(m, "Event") for m in ours]
        == [value(m, "Event") for m in theirs]
        == [
            "HangupRequest",
            "AgentComplete",
            "UserEvent",
            "Hangup",
        ]
    )
    for mine, real in zip(ours, theirs, strict=True):
        assert names(mine) == names(real), value(real, "Event")
    event = ours[2]
    tail = event[names(event).index("UserEvent") :]
    assert tail == [
        ("UserEvent", "CallDisposition"),
        ("Source", "dialplan hangup handler"),
        ("AgentChannel", agent),
        ("Linkedid", caller.uniqueid),
        ("Disposition", "resolved"),
    ]
    real_tail = theirs[2][names(theirs[2]).index("UserEvent") :]
    assert [k for k, _ in tail] == [k for k, _ in real_tail]
    assert (value(event, "Context"), value(event, "Exten"), value(event, "Priority")) == (
        "callrouter-disposition",
        "s",
        "1",
    )
    assert value(ours[1], "Reason") == value(theirs[1], "Reason") == "agent"
    assert [value(m, "Linkedid") for m in ours] == [caller.uniqueid] * 4
    assert (value(ours[3], "Cause"), value(ours[3], "Cause-txt")) == ("16", "Normal Clearing")


async def test_no_disposition_set_sends_the_header_empty(fake: FakeAmi) -> None:
    client = await login(fake)
    centre = CallCentre(fake)
    pbx, caller = pbx_with(centre)
    await centre.queue(pbx, caller, QUEUE, "30", "callrouter-agent")
    got = await messages_until(client, "UserEvent")
    assert got[-1][-1] == ("Disposition", "")


async def test_the_desktops_user_event_action_is_echoed_as_asterisk_did(fake: FakeAmi) -> None:
    """After the call the desktop sends ``Action: UserEvent``: ``Event Sent``, then an event
    with no channel fields, UserEvent first and the other headers (ActionID too) in order."""
    client = await login(fake)
    await client.send(
        ("Action", "UserEvent"),
        ("UserEvent", "CallDisposition"),
        ("Linkedid", "1795963598.67"),
        ("Disposition", "resolved"),
        ("Adviser", "agent1"),
        ("Source", "AMI action"),
        ("ActionID", "x-3"),
    )
    capture = captured("ami_queue_call_disposition.txt")
    real = [m for m in capture if ("ActionID", "x-3") in m]
    assert parse_message(await client.message()) == real[0]
    assert parse_message(await client.message()) == real[1]


async def test_a_caller_who_hangs_up_in_the_queue_as_asterisk_reports_it(fake: FakeAmi) -> None:
    """HangupRequest (the caller's BYE: no Cause) before QueueCallerAbandon, Leave, Hangup 0."""
    client = await login(fake)
    centre = CallCentre(fake, lambda _q, _c: QueuePlay("abandon"))
    pbx, caller = pbx_with(centre)
    assert await centre.queue(pbx, caller, QUEUE, "30", "callrouter-agent") == ""
    got = await messages_until(client, "Hangup")
    wanted = ("HangupRequest", "QueueCallerAbandon", "QueueCallerLeave", "Hangup")
    capture = captured("ami_queue_caller_abandon.txt")
    theirs = [
        m
        for m in capture
        if m[0][0] == "Event"
        and value(m, "Event") in wanted
        and dict(m).get("Channel", "").startswith("PJSIP/sipp")
    ]
    ours = [m for m in got if value(m, "Event") in wanted]
    assert [value(m, "Event") for m in ours] == [value(m, "Event") for m in theirs] == list(wanted)
    for mine, real in zip(ours, theirs, strict=True):
        assert names(mine) == names(real), value(real, "Event")


async def test_newchannel_has_the_captured_headers(fake: FakeAmi) -> None:
    client = await login(fake)
    _pbx, caller = pbx_with(CallCentre(fake))
    mine = parse_message(await client.message())
    real = next(m for m in captured("ami_queue_call_disposition.txt") if m[0] == ("Event", "Newchannel"))
    assert names(mine) == names(real)
    assert (value(mine, "Uniqueid"), value(mine, "Linkedid")) == (caller.uniqueid, caller.uniqueid)


async def test_an_outward_dial_as_asterisk_reports_it(fake: FakeAmi) -> None:
    """DialBegin (caller's block, the leg's, DialString) and DialEnd (DialStatus), the leg
    carrying the caller's Linkedid (``dial_pjsip_trunk_forms.txt``)."""
    client = await login(fake)
    pbx, caller = pbx_with(CallCentre(fake))
    await client.message()  # the caller's Newchannel
    leg = pbx.new_channel("PJSIP/pstn-00000017", linkedid=caller.call_id)
    pbx.ami.dialled(caller, leg, "+441632960999@pstn", "ANSWER")  # type: ignore[union-attr]
    got = [parse_message(await client.message()) for _ in range(3)]
    capture = captured("dial_pjsip_trunk_forms.txt")
    for mine in got:
        real = next(m for m in capture if m[0] == mine[0])
        assert names(mine) == names(real), value(mine, "Event")
    begin, end = got[1], got[2]
    assert (value(begin, "DestLinkedid"), value(begin, "DialString")) == (
        caller.uniqueid,
        "+441632960999@pstn",
    )
    assert value(end, "DialStatus") == "ANSWER"
