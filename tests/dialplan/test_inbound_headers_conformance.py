"""The emulated PBX against the Asterisk 22.10.1 captures of reading the partner headers on an
inbound call (``pjsip_header_read_probe.txt``, ``agi_inbound_partner_headers.txt``).

Given the INVITE headers each captured call carried, the emulator runs the same dialplan lines
with the same data after substitution (the values ``PJSIP_HEADER(read,...)`` and ``URIENCODE()``
gave), logs the same ERROR lines (a Local channel, a header too long for the function's buffer;
an absent header logs nothing), and the FastAGI server receives the same ``agi_arg_N``."""

from __future__ import annotations

import re

import pytest

from emulator.dialplan import DIALPLANS
from emulator.extensions import Dialplan
from emulator.pbx import Channel, Pbx, Pjsip
from ivr import channel_vars as cv
from tests.controller.test_dialplan_contract import parse_conf
from tests.dialplan import transcripts as tr
from tests.dialplan.language_lines import LANGUAGE_HEADER_LINE, LANGUAGE_INBOUND_LINES

CALLER = ("01632960123", "Jane Resident")  # the sipp UAC of the captures
PROBE = tr.sections(tr.PROBE)
INBOUND = tr.sections(tr.INBOUND)
LAB = """
[lab]
exten => _+44.,1,Goto(callrouter-inbound,${EXTEN},1)
exten => 200,1,Answer()
 same => n,Dial(Local/+441632960001@callrouter-inbound,5)
 same => n,Hangup()
"""


def normalise(text: str) -> str:
    """Channel names without their sequence numbers."""
    return re.sub(r"((?:PJSIP|Local)/[^\s,;\"]+?)-[0-9a-f]{8}", r"\1-N", text)


def service(section: tr.Section) -> str:
    """The extension the sipp UAC called: the first line Asterisk ran."""
    return section.executed()[0].exten


class Recorder:
    """The FastAGI server of the captures, as an AGI runner: it records each AGI()'s arguments
    and sets ``CR_ROUTE`` as the recorded server did (the route of the capture's session)."""

    def __init__(self, sessions: list[tr.AgiSession]) -> None:
        self.sessions = sessions
        self.calls: list[tuple[Channel, str, list[str]]] = []

    async def __call__(self, pbx: Pbx, channel: Channel, url: str, args: list[str]) -> None:
        recorded = self.sessions[len(self.calls)]
        self.calls.append((channel, url, args))
        for command in recorded.commands:
            match = re.fullmatch(r'SET VARIABLE (\w+) "(.*)"', command)
            if match:
                channel.set(match.group(1), match.group(2))
        channel.set("AGISTATUS", "SUCCESS")


def pbx_for(dialplan: str, recorder: Recorder) -> Pbx:
    return Pbx(
        Dialplan.parse(dialplan),
        {"CR_AGI": "agi://127.0.0.1:4599", "CR_TRUNK": "pstn"},
        pjsip=Pjsip({"pstn": "sip:127.0.0.1:5160"}),
        agi=recorder,
    )


def caller(pbx: Pbx, section: tr.Section) -> Channel:
    channel = pbx.new_channel("PJSIP/sipp-00000006", caller_num=CALLER[0], caller_name=CALLER[1])
    channel.received = section.sent_headers()
    return channel


def captured_lines(section: tr.Section, contexts: set[str]) -> list[tuple[str, str, str, str]]:
    return [
        (e.context, e.app, normalise(e.channel), normalise(e.data))
        for e in section.executed()
        if e.context in contexts and e.app != "Return"
    ]


def emulated_lines(pbx: Pbx, contexts: set[str]) -> list[tuple[str, str, str, str]]:
    return [
        (e.context, e.app, normalise(e.channel), normalise(e.data))
        for e in pbx.events
        if e.context in contexts and e.app != "Return"
    ]


# --- PJSIP_HEADER(read,...) and URIENCODE() on their own (pjsip_header_read_probe.txt) ----------


def test_the_probe_capture_has_its_six_calls() -> None:
    assert [s.label[:9] for s in PROBE] == [f"probe ({c})" for c in "abcdef"]


@pytest.mark.parametrize("section", PROBE, ids=[s.label[:9] for s in PROBE])
async def test_header_reads_as_captured(section: tr.Section) -> None:
    """Present: the value; absent: empty, nothing logged; 5000 characters: empty and an ERROR;
    on a Local channel: empty and an ERROR. The raw value splits AGI()'s arguments at its comma
    and loses its quotes and backslash; its URIENCODE() is one argument."""
    recorder = Recorder(section.sessions())
    pbx = pbx_for("[lab]\n" + "\n".join(tr.dialplan_lines(tr.PROBE, "lab")) + "\n", recorder)
    await pbx.run(caller(pbx, section), "lab", service(section))

    [(_, url, args)] = recorder.calls
    [session] = section.sessions()
    assert url == session.env["agi_request"]
    assert args == session.args
    assert emulated_lines(pbx, {"lab"}) == captured_lines(section, {"lab"})
    assert [line for line in pbx.log if line.startswith(("ERROR", "WARNING"))] == section.errors()


def test_what_the_probe_capture_shows() -> None:
    """The observations the dialplan relies on, read from the capture itself."""
    by_call = {s.label[7]: s for s in PROBE}
    assert by_call["b"].errors() == []  # an absent header: no log line at all
    assert by_call["b"].sessions()[0].args == ["100", "", "", "end"]  # empty arguments are sent
    assert all("requires a PJSIP channel" in e for e in by_call["f"].errors())
    assert all("Not enough buffer space" in e for e in by_call["e"].errors())
    hostile = by_call["c"].sessions()[0].args
    assert hostile[1] == "1764412345.42"  # the raw value was split at its comma ...
    assert len(hostile) == 3  # ... and its quote swallowed the rest, "end" included
    assert len(by_call["d"].sessions()[0].args[1]) == 300  # no length limit below the buffer


# --- callrouter-inbound, the shipped dialplan (agi_inbound_partner_headers.txt) ---------------


def test_the_shipped_inbound_context_is_the_captured_one() -> None:
    """A change to these lines needs a new capture from a real Asterisk. callrouter-inbound,
    callrouter-agi's AGI() and callrouter-headers,partner are, as shipped, the lines
    ``agi_inbound_language_header.txt`` ran (``test_language_header_conformance.py``). The
    earlier captures ran them without the ``X-Callrouter-Language`` lines (``language_lines.py``):
    callrouter-inbound as ``agi_inbound_dialled_header.txt`` ran it, callrouter-headers as
    ``agi_inbound_partner_headers.txt`` did; the tests replaying those leave them out."""
    shipped = parse_conf(DIALPLANS / "callrouter.conf")
    language = "agi_inbound_language_header.txt"
    assert tr.dialplan_lines(language, "callrouter-inbound") == shipped["callrouter-inbound"]
    for context in ("callrouter-agi", "callrouter-headers"):  # their first extension
        captured = tr.dialplan_lines(language, context)
        assert captured == shipped[context][: len(captured)]

    dialled = "agi_inbound_dialled_header.txt"
    inbound = [line for line in shipped["callrouter-inbound"] if line not in LANGUAGE_INBOUND_LINES]
    assert tr.dialplan_lines(dialled, "callrouter-inbound") == inbound
    agi = tr.dialplan_lines(dialled, "callrouter-agi")
    assert agi == shipped["callrouter-agi"][: len(agi)]
    headers = tr.dialplan_lines(tr.INBOUND, "callrouter-headers")
    partner = [line for line in shipped["callrouter-headers"] if line != LANGUAGE_HEADER_LINE]
    assert headers == partner[: len(headers)]


def test_the_inbound_capture_has_its_seven_calls() -> None:
    assert [s.label[:11] for s in INBOUND] == [f"inbound ({c})" for c in "abcdefg"]


AGI_NOW = "AGI(${CR_AGI}/${ARG1},${ARG2},${ARG3},${ARG4},${ARG5})"
AGI_THEN = "AGI(${CR_AGI}/${ARG1},${ARG2},${ARG3},${ARG4})"


def callrouter_dialplan() -> str:
    """The shipped callrouter.conf as this capture ran it: its ``callrouter-inbound`` (two partner
    headers), ``callrouter-agi``'s four-argument ``AGI()`` and no ``X-Callrouter-Language``.
    The shipped lines that read the third header are checked against
    ``agi_inbound_dialled_header.txt`` (``test_inbound_dialled_conformance.py``)."""
    shipped = (DIALPLANS / "callrouter.conf").read_text()
    inbound = {"callrouter-inbound": tr.dialplan_lines(tr.INBOUND, "callrouter-inbound")}
    out = [
        line.replace(AGI_NOW, AGI_THEN)
        for line in tr.spliced(shipped, inbound)
        if line.strip() != LANGUAGE_HEADER_LINE  # not in this capture (language_lines.py)
    ]
    assert AGI_NOW not in "\n".join(out)
    return "\n".join(out) + "\n" + LAB


ONE_CALL = [s for s in INBOUND if len(s.sessions()) == 1]


@pytest.mark.parametrize("section", ONE_CALL, ids=[s.label[:11] for s in ONE_CALL])
async def test_inbound_passes_the_headers_as_captured(section: tr.Section) -> None:
    """Each call through callrouter-inbound: the same lines with the same data, the same ERROR
    lines, the same route arguments (URI-encoded values, empty ones for absent headers and on
    a Local channel, whose reads the GotoIf skips: no ERROR there)."""
    recorder = Recorder(section.sessions())
    pbx = pbx_for(callrouter_dialplan(), recorder)
    await pbx.run(caller(pbx, section), "lab", service(section))

    [(_, _, args)] = recorder.calls
    assert args == section.sessions()[0].args
    contexts = {"lab", "callrouter-inbound", "callrouter-agi"}
    assert emulated_lines(pbx, contexts) == captured_lines(section, contexts)
    assert [line for line in pbx.log if line.startswith(("ERROR", "WARNING"))] == section.errors()


async def test_a_real_hop_carries_the_centre_and_the_linkedid() -> None:
    """inbound (g): centre A's partner dial came back in to centre B. The emulator builds the
    INVITE of A's dial; B's call, given its headers, routes with A's centre and A's Linkedid
    (the first call's agi_uniqueid), as the capture's second FastAGI session shows."""
    section = next(s for s in INBOUND if s.label.startswith("inbound (g)"))
    first, second = section.sessions()
    assert second.args[2] == first.env["agi_uniqueid"]  # what the capture shows

    recorder = Recorder([first])
    pbx_a = pbx_for(callrouter_dialplan(), recorder)
    channel_a = caller(pbx_a, section)
    await pbx_a.run(channel_a, "lab", service(section))
    [attempt] = pbx_a.dials
    assert attempt.invite is not None

    b_side = tr.Section("B", [])
    recorder_b = Recorder([second])
    pbx_b = pbx_for(callrouter_dialplan(), recorder_b)
    channel_b = caller(pbx_b, b_side)
    channel_b.received = list(attempt.invite.headers)
    await pbx_b.run(channel_b, "lab", attempt.invite.user)

    [(_, _, args)] = recorder_b.calls
    assert args[:2] == second.args[:2]
    assert args[2] == channel_a.uniqueid  # A's Linkedid, as second.args[2] is the first call's
    sent = dict(attempt.invite.headers)
    assert sent[cv.HEADER_CENTRE] == "charnwood"
    contexts = {"callrouter-headers"}
    assert emulated_lines(pbx_a, contexts) == [
        (c, app, ch, data.replace(first.env["agi_uniqueid"], channel_a.uniqueid))
        for c, app, ch, data in captured_lines(section, contexts)
    ]
