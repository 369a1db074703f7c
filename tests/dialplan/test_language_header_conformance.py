"""``X-Callrouter-Language`` on an inbound call, against the Asterisk 22.10.1 capture of the
partner hop (``agi_inbound_dialled_header.txt``).

No capture ran the language lines themselves. Each is a captured ``X-Callrouter-Dialled`` line
with the header's and the variable's names changed (``language_lines.py``), so the capture shows
what a real Asterisk does with them: the value read by ``PJSIP_HEADER(read,...)`` and
``URIENCODE()``d (a comma, pipe, quote or space cannot split or escape anything), empty when the
header is absent, not read on a Local channel (no ERROR line). Unlike the dialled number the
language is not a route argument: every ``AGI()`` still sends the captured four ``agi_arg_N``
lines, and the route asks for ``CR_FROM_LANGUAGE`` with ``GET VARIABLE`` (README 1.3: ``200
result=1 (value)``, no escaping; ``200 result=1 ()`` when set empty) only on a partner's call.

Here the emulator runs the shipped ``callrouter-inbound`` for each captured call, the INVITE
carrying the captured ``X-Callrouter-Dialled`` value as ``X-Callrouter-Language`` too: the
language variable must get exactly what the capture shows the dialled variable got."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from emulator.dialplan import DIALPLANS
from tests.controller.test_dialplan_contract import parse_conf
from tests.dialplan import transcripts as tr
from tests.dialplan.language_lines import LANGUAGE_HEADER_LINE, LANGUAGE_INBOUND_LINES, as_dialled
from tests.dialplan.test_inbound_headers_conformance import Recorder, caller, pbx_for, service

CAPTURE = "agi_inbound_dialled_header.txt"
HOPS = [s for s in tr.sections(CAPTURE) if s.label[:7] in {f"hop ({c})" for c in "abcd"}]
LANGUAGE = "X-Callrouter-Language"
DIALLED = "X-Callrouter-Dialled"


def shipped_dialplan() -> str:
    """The shipped callrouter.conf as it is, with the capture's ``[lab]``."""
    shipped = (DIALPLANS / "callrouter.conf").read_text(encoding="utf-8")
    return shipped + "\n" + "\n".join(["[lab]", *tr.dialplan_lines(CAPTURE, "lab")]) + "\n"


def set_data(events: Iterable[Any], variable: str) -> list[str]:
    """The data of every ``Set(<variable>=...)`` run, in order."""
    return [e.data for e in events if e.app == "Set" and e.data.startswith(f"{variable}=")]


def test_the_language_lines_are_captured_lines_renamed() -> None:
    shipped = parse_conf(DIALPLANS / "callrouter.conf")
    captured_inbound = tr.dialplan_lines(CAPTURE, "callrouter-inbound")
    inbound = shipped["callrouter-inbound"]
    for line in LANGUAGE_INBOUND_LINES:
        assert as_dialled(line) in captured_inbound
        # right after its captured twin: the same place in the call
        assert inbound[inbound.index(line) - 1] == as_dialled(line)
    captured_headers = tr.dialplan_lines(tr.INBOUND, "callrouter-headers")
    assert as_dialled(LANGUAGE_HEADER_LINE).replace("ARG4", "ARG2") in captured_headers
    assert LANGUAGE_HEADER_LINE in shipped["callrouter-headers"]


def test_what_the_capture_shows_for_the_dialled_header() -> None:
    """The captured values the language lines must reproduce."""
    by_call = {s.label[5]: s for s in HOPS}
    assert set_data(by_call["a"].executed(), "CR_FROM_DIALLED") == [
        "CR_FROM_DIALLED=",
        "CR_FROM_DIALLED=%2B441858000001",
    ]
    assert set_data(by_call["b"].executed(), "CR_FROM_DIALLED") == ["CR_FROM_DIALLED=", "CR_FROM_DIALLED="]
    assert set_data(by_call["c"].executed(), "CR_FROM_DIALLED") == ["CR_FROM_DIALLED="]  # Local: not read
    assert set_data(by_call["d"].executed(), "CR_FROM_DIALLED")[-1] == (
        "CR_FROM_DIALLED=%2B441858000001%2Cx%7Cy%22z%201"
    )


@pytest.mark.parametrize("section", HOPS, ids=[s.label[:7] for s in HOPS])
async def test_the_language_header_arrives_as_the_captured_dialled_one(section: tr.Section) -> None:
    """The shipped callrouter-inbound, the INVITE carrying the dialled value as the language
    too: ``CR_FROM_LANGUAGE`` gets what the capture's ``CR_FROM_DIALLED`` got, the route gets
    the captured arguments (four, the language not among them), and nothing is logged."""
    recorder = Recorder(section.sessions())
    pbx = pbx_for(shipped_dialplan(), recorder)
    channel = caller(pbx, section)
    dialled = dict(channel.received).get(DIALLED)
    if dialled is not None:
        channel.received = [*channel.received, (LANGUAGE, dialled)]
    await pbx.run(channel, "lab", service(section))

    captured = set_data(section.executed(), "CR_FROM_DIALLED")
    emulated = set_data(pbx.events, "CR_FROM_LANGUAGE")
    assert captured
    assert emulated == [data.replace("CR_FROM_DIALLED", "CR_FROM_LANGUAGE", 1) for data in captured]
    assert [args for _, _, args in recorder.calls] == [s.args for s in section.sessions()]
    assert all(len(args) == 4 for _, _, args in recorder.calls)
    assert [line for line in pbx.log if line.startswith(("ERROR", "WARNING"))] == section.errors()
