"""The emulated Asterisk with a system name against Asterisk 22.10.1 with ``systemname = east-1``
(``tests/fixtures/asterisk/agi_ami_systemname.txt``, recorded for this project: a PJSIP call
into FastAGI; a PJSIP call through a Local channel whose ``;2`` leg runs FastAGI and then
``Queue()``; AMI Originate without and with ``ChannelId``; a baseline run without
``systemname``; a run with ``systemname = east 1``).

Ids differ from run to run (the seconds, the channel count), so each side's ids are written as
the shape they have and the order they first appear in: ``east-1-<id 1>``, ``east-1-<id 2>``...
The same ids in the same places, the same shapes, and the same relations (which leg's
``Linkedid`` is which channel's ``Uniqueid``) on the wire of both."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

from emulator.agi import CallerScript
from emulator.ami import FakeAmi
from emulator.ami_wire import Message, parse_message, parse_transcript, server_messages, with_system_name
from emulator.centre import CallCentre, QueuePlay
from emulator.dialplan import Asterisk, place_call
from routing.core.linkedid import is_linkedid
from tests.ami.test_fake_originate import Session, probe, session
from tests.fastagi.transcripts import FIXTURES, AgiConnection, agi_connections

CAPTURE = FIXTURES / "agi_ami_systemname.txt"
NAME = "east-1"
_AGI_LINE = re.compile(r"^\s*\d+\.\d+ (A->S|S->A) (.*)$")
_DIGITS = r"[0-9]+\.[0-9]+"
_ID = re.compile(rf"((?:[^\s()]*?-)?{_DIGITS}|cb-[0-9]+-[0-9]+)(;2)?")
ID_HEADERS = ("Uniqueid", "Linkedid")  # and their Dest / LocalOne / LocalTwo forms
LEFT_OUT = {"VarSet", "Newexten", "Newstate", "DialState", "DialEnd", "HangupRequest", "SoftHangupRequest",
            "QueueMemberStatus", "UserEvent"}  # fmt: skip
"""Events the capture left out (its header: they carried ``SystemName`` too) or did not see."""


def section(title: str) -> str:
    """The capture's section whose ``# ==== `` title starts with ``title``."""
    parts = re.split(r"^# ==== ", CAPTURE.read_text(encoding="utf-8"), flags=re.MULTILINE)
    [found] = [part for part in parts if part.startswith(title)]
    return "# ==== " + found


def events(text: str) -> list[Message]:
    """Every AMI event of ``text`` (not the responses), each header in order."""
    return [
        m for m in map(parse_message, server_messages(parse_transcript(text))) if m and m[0][0] == "Event"
    ]


class Ids:
    """Each distinct id written as its shape and the order it first appeared in: ``east-1-<id 2>``,
    ``<id 3>`` (``cb-1-1``: an Originate's ChannelId), ``<id 3>;2`` (its ``;2`` leg's)."""

    def __init__(self) -> None:
        self.seen: dict[str, str] = {}

    def __call__(self, value: str) -> str:
        def one(match: re.Match[str]) -> str:
            whole, tail = match[1], match[2] or ""
            number = self.seen.setdefault(whole, f"<id {len(self.seen) + 1}>")
            name = whole.rpartition("-")[0] if re.fullmatch(rf".+-{_DIGITS}", whole) else ""
            return f"{name}-{number}{tail}" if name else f"{number}{tail}"

        return _ID.sub(one, value)


def id_headers(messages: Iterable[Message], ids: Ids) -> list[tuple[str, str, str]]:
    """``(event, header, id as written)`` of every Uniqueid / Linkedid header, in order."""
    return [
        (dict(m)["Event"], key, ids(value))
        for m in messages
        for key, value in m
        if key.endswith(ID_HEADERS) and key != "BridgeUniqueid"  # a bridge's is a UUID
    ]


# --- the capture --------------------------------------------------------------------------------


def test_what_the_capture_shows() -> None:
    first, through_local = agi_connections(section("section 1 + 2a")) + agi_connections(
        section("section 1b + 2b")
    )
    assert re.fullmatch(rf"east-1-{_DIGITS}", first.env["agi_uniqueid"])
    assert dict(first.exchange)[b"GET VARIABLE SYSTEMNAME\n"] == b"200 result=1 (east-1)\n"
    local = dict(through_local.exchange)
    assert (
        local[b"GET VARIABLE UNIQUEID\n"] == f"200 result=1 ({through_local.env['agi_uniqueid']})\n".encode()
    )
    assert local[b"GET VARIABLE CHANNEL(linkedid)\n"] != local[b"GET VARIABLE UNIQUEID\n"]  # the caller's
    for message in events(section("section 1 + 2a")) + events(section("section 1b + 2b")):
        assert message[2] == ("SystemName", NAME), message[0]
    [baseline] = agi_connections(section("section 5"))
    assert re.fullmatch(_DIGITS, baseline.env["agi_uniqueid"])
    assert dict(baseline.exchange)[b"GET VARIABLE SYSTEMNAME\n"] == b"200 result=1 ()\n"
    assert all(("SystemName", NAME) not in m for m in events(section("section 5")))
    [spaced] = agi_connections(section("section 6"))
    assert re.fullmatch(rf"east 1-{_DIGITS}", spaced.env["agi_uniqueid"])  # Asterisk takes it
    assert not is_linkedid(spaced.env["agi_uniqueid"])  # callrouter does not


# --- the emulator -------------------------------------------------------------------------------

# The capture's extensions.conf (its header), as the emulator's dialplan: a call starts in
# callrouter-inbound, so lab's 100 and 200 are there; AGI()'s URL is ${CR_AGI}'s.
DIALPLAN = """
[callrouter-inbound]
exten => 100,1,Answer()
 same => n,AGI(${CR_AGI}/route,${EXTEN})
 same => n,Hangup()
exten => 200,1,Answer()
 same => n,Dial(Local/300@lab,20)
 same => n,Hangup()

[lab]
exten => 300,1,Answer()
 same => n,AGI(${CR_AGI}/route,${EXTEN})
 same => n,Queue(sysq,,,,10)
 same => n,Hangup()
"""


class Recorder:
    """A FastAGI server that sends a connection's captured commands in turn, keeping the
    environment and each reply, one connection after another."""

    def __init__(self, captured: list[AgiConnection]) -> None:
        self.captured = captured
        self.got: list[AgiConnection] = []

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        got = AgiConnection()
        self.got.append(got)
        head = await reader.readuntil(b"\n\n")
        for line in head.decode().splitlines():
            key, _, value = line.partition(": ")
            got.env[key] = value
        for command, _ in self.captured[len(self.got) - 1].exchange:
            writer.write(command)
            await writer.drain()
            got.exchange.append((command, await reader.readline()))
        writer.close()


@dataclass
class Emulated:
    connections: list[AgiConnection]
    events: list[Message]


async def received(client: Session) -> list[Message]:
    """The AMI session's messages until it has been quiet for 0.3 s."""
    got: list[Message] = []
    with contextlib.suppress(TimeoutError):
        while True:
            got.append(parse_message(await asyncio.wait_for(client.reader.readuntil(b"\r\n\r\n"), 0.3)))
    return got


async def emulate(tmp_path: Path, name: str) -> Emulated:
    """The capture's two calls on the emulated Asterisk with system name ``name``."""
    conf = tmp_path / "extensions.conf"
    conf.write_text(DIALPLAN)
    captured = agi_connections(section("section 1 + 2a")) + agi_connections(section("section 1b + 2b"))
    recorder = Recorder(captured)
    server = await asyncio.start_server(recorder, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with FakeAmi("ivrtest", "ivrtest-secret", system_name=name) as fake, session(fake) as client:
            member = QueuePlay(interface="Local/400@agents/n")
            asterisk = Asterisk(
                dialplans=(conf,), globals={}, contacts={}, system_name=name,
                centre=CallCentre(fake, lambda _q, _c: member),
            )  # fmt: skip
            for dial, n in (("100", 1), ("200", 2)):
                script = CallerScript(dial=dial, caller="01632960123", caller_name="Jane Resident")
                await place_call("127.0.0.1", port, script, asterisk=asterisk, number=n, deadline=10)
            got = await received(client)
    finally:
        server.close()
    return Emulated(recorder.got, [m for m in got if m and m[0][0] == "Event" and m[0][1] != "FullyBooted"])


@pytest.fixture
async def east(tmp_path: Path) -> Emulated:
    return await emulate(tmp_path, NAME)


async def test_fastagi_gets_the_ids_and_the_name_asterisk_gives(east: Emulated) -> None:
    """``agi_uniqueid`` and the replies to ``GET VARIABLE UNIQUEID``, ``CHANNEL(linkedid)``,
    ``CHANNEL(uniqueid)`` and ``SYSTEMNAME``: on the caller's own channel all one id; on the
    Local ``;2`` leg its own id, and the caller's as its Linkedid."""
    captured = agi_connections(section("section 1 + 2a")) + agi_connections(section("section 1b + 2b"))
    assert len(east.connections) == len(captured) == 2
    theirs, ours = Ids(), Ids()
    for asterisk, emulator in zip(captured, east.connections, strict=True):
        assert ours(emulator.env["agi_uniqueid"]) == theirs(asterisk.env["agi_uniqueid"])
        assert [(c, ours(r.decode())) for c, r in emulator.exchange] == [
            (c, theirs(r.decode())) for c, r in asterisk.exchange
        ]
    assert all(re.fullmatch(rf"east-1-{_DIGITS}", found) for found in ours.seen)


async def test_every_event_names_the_system_and_carries_the_named_ids(east: Emulated) -> None:
    """Each event the emulator sends for the calls has ``SystemName: east-1`` third, as every
    captured one does; every ``Uniqueid`` / ``Linkedid`` header (``Dest...``, ``LocalOne...``)
    is ``east-1-<seconds>.<sequence>``; and every Linkedid of a call is its caller's Uniqueid."""
    captured = events(section("section 1 + 2a")) + events(section("section 1b + 2b"))
    for message in captured + east.events:
        assert message[:3] == [message[0], message[1], ("SystemName", NAME)], message
    for messages in (captured, east.events):
        for _, _, value in id_headers(messages, Ids()):
            assert value.startswith(f"{NAME}-<id "), value
        callers = [dict(m)["Uniqueid"] for m in messages if dict(m)["Event"] == "Newchannel"
                   and dict(m)["Channel"].startswith("PJSIP/sipp-")]  # fmt: skip
        linked = {v for m in messages for k, v in m if k.endswith("Linkedid")}
        assert linked <= set(callers), (linked, callers)
    kinds = {dict(m)["Event"] for m in east.events}
    assert {"Newchannel", "QueueCallerJoin", "AgentCalled", "AgentConnect", "Hangup"} <= kinds
    assert kinds <= {dict(m)["Event"] for m in captured} | LEFT_OUT


async def test_the_queue_call_through_a_local_channel_links_as_captured(east: Emulated) -> None:
    """``QueueCallerJoin`` and ``AgentConnect`` of call 2, its channels numbered in the order they
    were made (the PJSIP caller, the Local ``;1`` and ``;2`` legs, the member's): the caller
    block is the ``;2`` leg's own id with the PJSIP caller's as its Linkedid, the adviser's
    channel its own id with the caller's as its ``DestLinkedid``."""

    def relations(messages: list[Message]) -> list[tuple[str, str, str]]:
        ids = Ids()
        for m in messages:  # number the ids in the order the channels were made
            if dict(m)["Event"] == "Newchannel":
                ids(dict(m)["Uniqueid"])
        wanted = ("QueueCallerJoin", "AgentConnect")
        return [i for i in id_headers(messages, ids) if i[0] in wanted]

    captured = events(section("section 1b + 2b"))
    call_2 = [m for m in east.events if dict(m).get("Linkedid", "") != dict(east.events[0]).get("Linkedid")]
    assert relations(call_2) == relations(captured)


async def test_originate_ids_are_named_unless_given(tmp_path: Path) -> None:
    """Originate without ``ChannelId``: both legs named, the ``;2`` leg linked to the ``;1``;
    ``ChannelId`` alone: ``<ChannelId>`` and ``<ChannelId>;2``, never named; with
    ``OtherChannelId``: both as given. The emulator's Newchannel ids against the capture's."""
    text = section("section 3")
    actions = [b"".join(line.data for line in parse_transcript(block) if line.direction == "C->S")
               for block in re.split(r"^# ---- ", text, flags=re.MULTILINE)[1:]]  # fmt: skip
    captured = [m for m in events(text) if dict(m)["Event"] == "Newchannel"]
    async with FakeAmi("ivrtest", "ivrtest-secret", system_name=NAME) as fake, session(fake) as client:
        fake.originator.far_end = probe
        got: list[Message] = []
        for action in actions:
            client.send(action)
            got += [m for m in await received(client) if m and dict(m).get("Event") == "Newchannel"]
    theirs, ours = Ids(), Ids()
    assert [[(k, ours(v)) for k, v in m if k in ID_HEADERS] for m in got] == [
        [(k, theirs(v)) for k, v in m if k in ID_HEADERS] for m in captured
    ]


async def test_without_a_system_name_nothing_is_named(tmp_path: Path) -> None:
    """The baseline run: ``<seconds>.<sequence>`` ids, no ``SystemName`` header, ``SYSTEMNAME``
    empty: the emulator's default."""
    plain = await emulate(tmp_path, "")
    [baseline] = agi_connections(section("section 5"))
    assert re.fullmatch(_DIGITS, plain.connections[0].env["agi_uniqueid"])
    assert (
        dict(plain.connections[0].exchange)[b"GET VARIABLE SYSTEMNAME\n"]
        == dict(baseline.exchange)[b"GET VARIABLE SYSTEMNAME\n"]
    )
    assert all(("SystemName", NAME) not in m and m[2][0] != "SystemName" for m in plain.events)


async def test_a_name_with_a_space_is_used_as_asterisk_uses_it(tmp_path: Path) -> None:
    """``systemname = east 1``: Asterisk makes ``east 1-...`` ids and says nothing; so does the
    emulator (callrouter refuses the ids: tests/records/test_system_name_refused.py)."""
    spaced = await emulate(tmp_path, "east 1")
    [captured] = agi_connections(section("section 6"))
    mine = spaced.connections[0].env["agi_uniqueid"]
    assert Ids()(mine) == Ids()(captured.env["agi_uniqueid"]) == "east 1-<id 1>"
    assert not is_linkedid(mine)


def test_system_name_follows_a_timestamp_as_manager_c_appends_them() -> None:
    """``timestampevents = yes`` puts ``Timestamp`` before ``SystemName`` (main/manager.c appends
    the timestamp first); without it ``SystemName`` is third, as the capture shows."""
    plain: Message = [("Event", "Hangup"), ("Privilege", "call,all"), ("Channel", "PJSIP/sipp-1")]
    stamped: Message = [("Event", "Hangup"), ("Privilege", "call,all"), ("Timestamp", "1796003965.000001"),
                        ("Channel", "PJSIP/sipp-1")]  # fmt: skip
    assert [k for k, _ in with_system_name(plain, NAME)] == ["Event", "Privilege", "SystemName", "Channel"]
    assert [k for k, _ in with_system_name(stamped, NAME)] == [
        "Event", "Privilege", "Timestamp", "SystemName", "Channel",
    ]  # fmt: skip
    assert with_system_name([("Response", "Success")], NAME) == [("Response", "Success")]
