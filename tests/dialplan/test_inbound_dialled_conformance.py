"""The emulated PBX against the Asterisk 22.10.1 capture of a partner hop carrying the dialled
number (``agi_inbound_dialled_header.txt``): a proposed ``callrouter-inbound`` that also reads
``X-Callrouter-Dialled`` and passes it as a fifth Gosub argument, and a ``callrouter-agi``
whose ``AGI()`` passes ``${ARG5}``.

What the capture shows: the Gosub's first argument is the script, so the five arguments arrive
as ``agi_arg_1`` to ``agi_arg_4``; ``URIENCODE()`` turns the header's ``+`` into ``%2B``; an
argument the Gosub did not pass (or an empty one) is still sent, empty, so every ``AGI()`` of
``callrouter-agi`` sends exactly four ``agi_arg_N`` lines. The emulator, given the dialplan lines
of the capture, must run the same lines with the same data and send the same arguments."""

from __future__ import annotations

import pytest

from emulator.dialplan import DIALPLANS
from tests.dialplan import transcripts as tr
from tests.dialplan.test_inbound_headers_conformance import (
    Recorder,
    caller,
    captured_lines,
    emulated_lines,
    pbx_for,
    service,
)

CAPTURE = "agi_inbound_dialled_header.txt"
HOPS = tr.sections(CAPTURE)
CONTEXTS = {"lab", "callrouter-inbound", "callrouter-agi"}


def captured_dialplan() -> str:
    """The shipped callrouter.conf with ``[callrouter-inbound]`` and the ``s`` lines of
    ``[callrouter-agi]`` as the capture ran them, and the capture's ``[lab]``."""
    shipped = (DIALPLANS / "callrouter.conf").read_text(encoding="utf-8")
    replaced = {name: tr.dialplan_lines(CAPTURE, name) for name in ("callrouter-inbound", "callrouter-agi")}
    lab = ["[lab]", *tr.dialplan_lines(CAPTURE, "lab")]
    return "\n".join([*tr.spliced(shipped, replaced), *lab]) + "\n"


def test_the_capture_has_its_five_calls() -> None:
    assert [s.label[:7] for s in HOPS] == [f"hop ({c})" for c in "abcde"]


def test_what_the_capture_shows() -> None:
    """The observations a change to the dialplan and the route would rely on."""
    by_call = {s.label[5]: s for s in HOPS}
    assert by_call["a"].sessions()[0].args == [
        "+441632960001",
        "charnwood",
        "1764412345.42",
        "%2B441858000001",
    ]
    assert by_call["b"].sessions()[0].args == ["+441632960001", "", "", ""]  # absent: sent empty
    assert by_call["c"].sessions()[0].args == ["+441632960001", "", "", ""]  # Local: reads skipped
    assert by_call["d"].sessions()[0].args[3] == "%2B441858000001%2Cx%7Cy%22z%201"
    overflow, survey = by_call["e"].sessions()
    assert overflow.args == ["harborough", "council-tax", "TIMEOUT", ""]  # ARG5 not passed
    assert survey.args == ["harborough", "council-tax", "", ""]  # ARG4 and ARG5 not passed
    assert all(s.errors() == [] for s in HOPS)


def test_the_dialplan_under_test_differs_from_the_shipped_one_only_where_the_capture_says() -> None:
    text = captured_dialplan()
    assert "Set(CR_FROM_DIALLED=${URIENCODE(${PJSIP_HEADER(read,X-Callrouter-Dialled)})})" in text
    assert "AGI(${CR_AGI}/${ARG1},${ARG2},${ARG3},${ARG4},${ARG5})" in text
    assert "AGI(${CR_AGI}/${ARG1},${ARG2},${ARG3},${ARG4})\n" not in text


@pytest.mark.parametrize("section", HOPS, ids=[s.label[:7] for s in HOPS])
async def test_the_emulator_sends_the_captured_arguments(section: tr.Section) -> None:
    """Each captured call, run by the emulator with the INVITE headers the call carried: the
    same lines with the same data, no ERROR or WARNING line, the same ``agi_arg_N`` per AGI()."""
    assert section.sessions()
    assert captured_lines(section, CONTEXTS)
    recorder = Recorder(section.sessions())
    pbx = pbx_for(captured_dialplan(), recorder)
    await pbx.run(caller(pbx, section), "lab", service(section))

    assert [args for _, _, args in recorder.calls] == [s.args for s in section.sessions()]
    assert emulated_lines(pbx, CONTEXTS) == captured_lines(section, CONTEXTS)
    assert [line for line in pbx.log if line.startswith(("ERROR", "WARNING"))] == section.errors()
