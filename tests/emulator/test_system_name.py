"""The emulated Asterisk with ``systemname`` set (asterisk.conf): every channel it makes has the
Uniqueid ``<systemname>-<seconds>.<sequence>`` (``main/channel_internal_api.c``: ``"%s-%li.%d"``)
and every leg of a call carries its first channel's as its Linkedid: in the dialplan
(``${UNIQUEID}``, ``${CHANNEL(linkedid)}``), the FastAGI environment (``agi_uniqueid``), the
partner headers, and every AMI event (callers, queue members, Local legs, Originate without
``ChannelId``). Without it, ``<seconds>.<sequence>`` as before."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from emulator.agi import CallerScript, PressAfterPrompt
from emulator.ami import FakeAmi
from emulator.ami_wire import parse_message
from emulator.centre import CallCentre, QueuePlay
from emulator.dialplan import Asterisk, place_call
from emulator.extensions import Dialplan
from emulator.pbx import Pbx
from ivr import channel_vars as cv
from ivr.controller import Controller, NoLiveState, PlanHolder
from ivr.fastagi import FastAgiServer, ServerConfig
from records.model import HopFrom
from routing.core.linkedid import is_linkedid, split_linkedid
from tests.ami.test_fake_originate import Session, capture, probe, session
from tests.controller.conftest import EXAMPLE, HARBOROUGH, TUESDAY_10AM
from tests.scenarios.test_partner_hop import CHARNWOOD, Busy, as_centre_b, start_centre

NAME = "ast1.harborough-pbx_2"
_DIGITS = re.compile(r"[0-9]+\.[0-9]+")


def named(uniqueid: str, name: str = NAME) -> bool:
    """``<name>-<seconds>.<sequence>``, and a Linkedid callrouter takes."""
    parts = split_linkedid(uniqueid)
    return parts is not None and parts[0] == name and is_linkedid(uniqueid)


@pytest.mark.parametrize(
    ("name", "shape"), [(NAME, rf"{re.escape(NAME)}-[0-9]+\.[0-9]+"), ("", r"[0-9]+\.[0-9]+")]
)
async def test_the_dialplan_sees_the_named_uniqueid_on_every_leg(name: str, shape: str) -> None:
    conf = (
        "[ctx]\nexten => s,1,Set(U=${UNIQUEID})\n same => n,Set(L=${CHANNEL(linkedid)})\n"
        " same => n,Dial(Local/leg@legs)\n"
        "[legs]\nexten => leg,1,Set(LU=${UNIQUEID})\n same => n,Set(LL=${CHANNEL(linkedid)})\n"
        " same => n,Hangup()\n"
    )
    made = []
    pbx = Pbx(Dialplan.parse(conf), {}, system_name=name, observer=lambda _p, ch, _a, _d: made.append(ch))
    caller = pbx.new_channel("PJSIP/sipp-00000001")
    await pbx.run(caller, "ctx", "s")
    assert re.fullmatch(shape, caller.get("U") or "")
    assert caller.get("U") == caller.get("L") == caller.uniqueid
    [leg] = {ch.name: ch for ch in made if ch.name.startswith("Local/leg@legs")}.values()  # the ;2 leg
    assert re.fullmatch(shape, leg.uniqueid)
    assert leg.uniqueid != caller.uniqueid
    assert leg.get("LU") == leg.uniqueid
    assert leg.get("LL") == caller.uniqueid  # the call's Linkedid: its first channel's Uniqueid


@pytest.fixture
async def controller() -> AsyncIterator[FastAgiServer]:
    controller = Controller(PlanHolder.load(EXAMPLE), NoLiveState(), clock=lambda: TUESDAY_10AM)
    server = FastAgiServer(ServerConfig(host="127.0.0.1", port=0, call_timeout=20))
    controller.register(server)
    await server.start()
    try:
        yield server
    finally:
        await server.drain(0)


async def received(client: Session) -> list[dict[str, str]]:
    """Every message the AMI session has been sent, until it has been quiet for 0.3 s."""
    got: list[dict[str, str]] = []
    with contextlib.suppress(TimeoutError):
        while True:
            got.append(dict(parse_message(await asyncio.wait_for(client.reader.readuntil(b"\r\n\r\n"), 0.3))))
    return got


async def test_a_whole_call_has_named_ids_in_agi_and_on_the_ami(controller: FastAgiServer) -> None:
    """The shipped dialplan, a real controller, the call answered in a queue of the fake AMI of
    the same Asterisk: ``agi_uniqueid`` of every ``AGI()``, and every ``Uniqueid`` / ``Linkedid``
    of every AMI event of the call (the caller's channel, the adviser's) carry the name."""
    async with FakeAmi("ivrtest", "ivrtest-secret", system_name=NAME) as fake, session(fake) as client:
        centre = CallCentre(fake, lambda _q, _c: QueuePlay(disposition="resolved"))
        script = CallerScript(dial=HARBOROUGH, caller="07700900123", steps=[PressAfterPrompt("1")])
        asterisk = Asterisk(centre=centre, system_name=NAME)
        record = await place_call("127.0.0.1", controller.port, script, asterisk=asterisk, deadline=10)
        events = await received(client)
    assert "answered" in record.summary(), record.summary()
    call_id = record.sessions[0].uniqueid
    assert named(call_id)
    assert {s.uniqueid for s in record.sessions} == {call_id}  # agi_uniqueid of every AGI()
    ids = {(m.get("Event"), k, m[k]) for m in events for k in m if k.endswith(("Uniqueid", "Linkedid"))}
    assert ("Newchannel", "Uniqueid", call_id) in ids
    assert [i for i in ids if not named(i[2])] == []
    assert {v for _, k, v in ids if k.endswith("Linkedid")} == {call_id}
    advisers = {v for e, k, v in ids if (e, k) == ("AgentConnect", "DestUniqueid")}
    assert len(advisers) == 1
    assert advisers != {call_id}


async def test_the_partner_header_carries_the_named_linkedid(tmp_path: Path) -> None:
    """A overflows the caller to B: ``X-Callrouter-Linkedid: ${CHANNEL(linkedid)}`` on the dial
    is the id A's Asterisk made, and B takes it into the record's ``hop_from``."""
    plan_b = tmp_path / "plan-b.yaml"
    plan_b.write_text(as_centre_b(EXAMPLE.read_text()))
    a = await start_centre("charnwood", EXAMPLE, Busy())
    b = await start_centre("harborough", plan_b)
    try:
        script = CallerScript(dial=CHARNWOOD, caller="01632960123", steps=[PressAfterPrompt("1")])
        at_a = await place_call("127.0.0.1", a.server.port, script, asterisk=Asterisk(system_name=NAME))
        [attempt] = at_a.dials
        assert attempt.invite is not None
        sent = dict(attempt.invite.headers)[cv.HEADER_LINKEDID]
        assert named(sent)
        assert sent == at_a.sessions[0].uniqueid
        back = Asterisk(system_name="harborough-ast1")
        there = CallerScript(dial=attempt.invite.user, caller="01632960123")
        at_b = await place_call(
            "127.0.0.1", b.server.port, there, asterisk=back, headers=attempt.invite.headers
        )
        assert named(at_b.sessions[0].uniqueid, "harborough-ast1")
        assert b.records()[at_b.sessions[0].uniqueid].hop_from == HopFrom(centre="charnwood", id=sent)
    finally:
        await a.server.drain(0)
        await b.server.drain(0)


async def test_originate_without_a_channel_id_makes_named_legs() -> None:
    """Originate without ``ChannelId``: both Local legs' Uniqueids are Asterisk's own, named;
    with ``ChannelId`` they are the ones given (a callback's, never a Linkedid)."""
    actions, _, _ = capture()
    async with FakeAmi("ivrtest", "ivrtest-secret", system_name=NAME) as fake, session(fake) as client:
        fake.originator.far_end = probe
        client.send(actions["o-2"])  # Local/3002@probe, no ChannelId
        one, _ = await client.until(lambda m: m.get("Event") == "Newchannel" and m["Channel"].endswith(";1"))
        two, _ = await client.until(lambda m: m.get("Event") == "Newchannel" and m["Channel"].endswith(";2"))
        first, second = dict(one), dict(two)
        assert named(first["Uniqueid"])
        assert named(second["Uniqueid"])
        assert first["Linkedid"] == second["Linkedid"] == first["Uniqueid"]
        client.send(actions["o-5"])  # ChannelId: harborough-cb-0001
        await client.until(
            lambda m: m.get("Event") == "Newchannel" and m.get("Uniqueid") == "harborough-cb-0001"
        )
        assert not is_linkedid("harborough-cb-0001")


async def test_the_fake_amis_own_callers_and_advisers_are_named() -> None:
    async with FakeAmi("callrouter", system_name=NAME) as fake:
        caller = fake.caller_joins("hdc-revenues", name="Jane Resident").channel
        assert named(caller.uniqueid)
    async with FakeAmi("callrouter") as plain:
        assert _DIGITS.fullmatch(plain.caller_joins("hdc-revenues").channel.uniqueid)
