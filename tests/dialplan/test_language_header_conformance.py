"""``X-Callrouter-Language`` across a partner hop, against the Asterisk 22.10.1 capture of the
shipped dialplan (``agi_inbound_language_header.txt``).

Sending (``send (a)``-``(d)``): the route settles the language (the 6th ``CR_ROUTE`` field),
``callrouter-dispatch,dial`` dials the partner trunk and the pre-dial handler
``callrouter-headers,partner`` adds ``X-Callrouter-Language`` from its 4th argument: the
emulator builds the INVITE the capture's sipp UAS received (the same X- headers, values and
order; none for an empty language), directly and through ``Local/<number>@callrouter-outbound``.

Receiving (``recv (a)``-``(k)``, ``hop (e)``): ``callrouter-inbound`` reads the header into
``CR_FROM_LANGUAGE``; a FastAGI server asks for it (``GET VARIABLE``) as the capture's did, and
the emulator, on the wire, answers with the captured bytes (the URI-encoded value, empty when
absent, on a Local channel or past the header buffer, cut at 1023 characters) and sends the
captured route arguments (the language never among them).

The static route (``static (a)``-``(e)``, controller down, fail-static script failed): generated
from a plan whose council speaks ``cy`` then ``en``, it keeps a carried ``cy`` or ``en`` and
sends it on with its partner dial; anything else (hostile, unlisted, none) leaves the council's
first language and no header, as the capture shows.

The controller's reading: each captured reply, parsed as the FastAGI channel parses it and
by the fail-static script's pyst2, and checked by :func:`ivr.contract.read_hop_language` for a
council with ``cy`` and ``en``, gives ``cy`` where the capture carried ``cy`` and refuses every
hostile value."""

from __future__ import annotations

import ast
import asyncio
import io
import itertools
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from agi_scripts._agi import ClassicChannel
from emulator.agi import CallerScript
from emulator.dialplan import DIALPLANS, Asterisk, place_call
from emulator.extensions import Dialplan
from emulator.pbx import Channel, Pbx, Pjsip
from ivr import channel_vars as cv
from ivr.contract import read_hop_language
from ivr.controller import PlanHolder
from ivr.fastagi.protocol import parse_reply_line
from ivr.static_dialplan import render
from routing.core.language import ChoiceSpec
from tests.controller.test_dialplan_contract import parse_conf
from tests.controller.test_language import welsh_plan
from tests.dialplan import transcripts as tr
from tests.dialplan.language_lines import LANGUAGE_HEADER_LINE, LANGUAGE_INBOUND_LINES
from tests.dialplan.test_inbound_headers_conformance import (
    CALLER,
    Recorder,
    captured_lines,
    emulated_lines,
    normalise,
    service,
)

CAPTURE = "agi_inbound_language_header.txt"
SECTIONS = tr.sections(CAPTURE)
BY_TAG = {s.label.partition(":")[0]: s for s in SECTIONS}
SENT = [s for s in SECTIONS if s.label.startswith("send (")]
RECEIVED = [s for s in SECTIONS if s.label.startswith("recv (")]
STATIC = [s for s in SECTIONS if s.label.startswith("static (")]
GLOBALS = {"CR_AGI": "agi://127.0.0.1:4619", "CR_TRUNK": "pstn"}
CONTACTS = {"pstn": "sip:127.0.0.1:5074", "loop": "sip:127.0.0.1:5072"}
GET_LANGUAGE = f"GET VARIABLE {cv.FROM_LANGUAGE}"
SHIPPED = parse_conf(DIALPLANS / "callrouter.conf")


# --- reading the capture ------------------------------------------------------------------------


def x_headers(section: tr.Section, side: str) -> list[tuple[str, str]]:
    """The X- headers (any case) of an INVITE, in order: ``SIP``, the one the sipp UAC sent;
    ``UAS``, the one the sipp UAS (the partner centre) received."""
    found: list[tuple[str, str]] = []
    for line in section.lines:
        if line.startswith(f"#   {side} ") and line[len(side) + 5 :].lower().startswith("x-"):
            key, _, value = line.removeprefix(f"#   {side} ").partition(":")
            found.append((key, value.removeprefix(" ")))
    return found


def uas_headers(section: tr.Section) -> list[tuple[str, str]]:
    return x_headers(section, "UAS")


def exchanges(section: tr.Section) -> list[list[tuple[str, bytes]]]:
    """Each FastAGI connection's lines after the environment: (direction, exact bytes)."""
    found: list[list[tuple[str, bytes]]] = []
    in_env = False
    for line in section.lines:
        if line.startswith("# ---- FastAGI connection"):
            found.append([])
            in_env = True
            continue
        match = re.match(r"^\s*\d+\.\d+ (A->S|S->A) (.*)$", line)
        if not match or not found:
            continue
        data: bytes = ast.literal_eval(match.group(2))
        if in_env:
            in_env = data != b"\n"
        else:
            found[-1].append((match.group(1), data))
    return found


def language_replies(section: tr.Section) -> list[bytes]:
    """Asterisk's reply to each ``GET VARIABLE CR_FROM_LANGUAGE``, as captured."""
    replies: list[bytes] = []
    for lines in exchanges(section):
        for (way, data), (_, reply) in itertools.pairwise(lines):
            if way == "S->A" and data == f"{GET_LANGUAGE}\n".encode():
                replies.append(reply)
    return replies


def set_data(events: list[tr.Executed], variable: str) -> list[str]:
    return [e.data for e in events if e.app == "Set" and e.data.startswith(f"{variable}=")]


def test_the_capture_has_its_scenarios() -> None:
    assert list(BY_TAG) == [
        *(f"send ({c})" for c in "abcd"),
        "hop (e)",
        *(f"recv ({c})" for c in "abcdefghijk"),
        *(f"static ({c})" for c in "abcde"),
    ]
    assert all("sipp exit status 0" in "\n".join(s.lines) for s in SECTIONS)  # every call completed


def test_the_capture_ran_the_shipped_lines() -> None:
    """A change to these lines needs a new capture from a real Asterisk."""
    for context in ("callrouter-inbound", "callrouter-unpack", "callrouter-outbound"):
        assert tr.dialplan_lines(CAPTURE, context) == SHIPPED[context], context
    for context in ("callrouter-agi", "callrouter-headers"):  # their first extension
        captured = tr.dialplan_lines(CAPTURE, context)
        assert captured == SHIPPED[context][: len(captured)], context
    dial = tr.dialplan_lines(CAPTURE, "callrouter-dispatch")
    dispatch = SHIPPED["callrouter-dispatch"]
    start = dispatch.index(dial[0])
    assert dispatch[start : start + len(dial)] == dial
    assert set(LANGUAGE_INBOUND_LINES) <= set(SHIPPED["callrouter-inbound"])
    assert LANGUAGE_HEADER_LINE in tr.dialplan_lines(CAPTURE, "callrouter-headers")


def test_what_the_capture_shows() -> None:
    """The observations the dialplan and the controller rely on, read from the capture."""
    sent = {tag: dict(uas_headers(s)) for tag, s in BY_TAG.items() if s in SENT}
    assert sent["send (a)"][cv.HEADER_LANGUAGE] == "cy"  # verbatim
    assert cv.HEADER_LANGUAGE not in sent["send (b)"]  # no settled language: no header at all
    assert sent["send (c)"][cv.HEADER_LANGUAGE] == "en_GB"
    assert sent["send (d)"][cv.HEADER_LANGUAGE] == "cy"  # inherited through the Local hop
    assert [k for k, _ in uas_headers(BY_TAG["send (a)"])] == [
        cv.HEADER_TENANT,
        cv.HEADER_DIALLED,
        cv.HEADER_CENTRE,
        cv.HEADER_LANGUAGE,
        cv.HEADER_LINKEDID,
    ]
    replies = {tag: language_replies(s)[-1] for tag, s in BY_TAG.items() if s in RECEIVED or tag == "hop (e)"}
    assert replies["hop (e)"] == b"200 result=1 (cy)\n"
    assert replies["recv (a)"] == b"200 result=1 (cy)\n"
    for empty in ("recv (b)", "recv (c)", "recv (h)", "recv (j)"):
        assert replies[empty] == b"200 result=1 ()\n", empty
    assert language_replies(BY_TAG["send (d)"]) == [b"200 result=0\n"]  # never set on that channel
    assert replies["recv (d)"].count(b"(") == 2  # the value's own parenthesis, not escaped
    assert replies["recv (e)"] == b"200 result=1 (%2563%2579)\n"  # escapes encoded again
    assert len(replies["recv (g)"]) == len(b"200 result=1 ()\n") + 1023
    assert (
        set_data(BY_TAG["recv (g)"].executed(), cv.FROM_LANGUAGE)[-1] == f"{cv.FROM_LANGUAGE}=" + "%7C" * 1365
    )
    assert replies["recv (i)"] == replies["recv (k)"] == b"200 result=1 (cy)\n"
    assert BY_TAG["recv (h)"].errors() == [
        "ERROR res_pjsip_header_funcs.c: Not enough buffer space in pjsip_hdr_print_on"
    ]
    for section in RECEIVED:  # the language is not a route argument
        assert len(section.sessions()[0].args) == 4
    static = {tag: dict(uas_headers(s)).get(cv.HEADER_LANGUAGE) for tag, s in BY_TAG.items() if s in STATIC}
    # the static route keeps a listed language (and sends it on), nothing else
    assert static == {
        "static (a)": "cy",
        "static (b)": "en",
        "static (c)": None,
        "static (d)": None,
        "static (e)": None,
    }


# --- sending: the emulated PBX builds the INVITE the partner received --------------------------


def shipped_dialplan() -> str:
    """The shipped callrouter.conf as it is, with the capture's ``[lab]``."""
    shipped = (DIALPLANS / "callrouter.conf").read_text(encoding="utf-8")
    return shipped + "\n" + "\n".join(["[lab]", *tr.dialplan_lines(CAPTURE, "lab")]) + "\n"


def sending_pbx(recorder: Recorder, trunk: str = "pstn") -> Pbx:
    return Pbx(
        Dialplan.parse(shipped_dialplan()),
        {**GLOBALS, "CR_TRUNK": trunk},
        pjsip=Pjsip(CONTACTS),
        agi=recorder,
    )


def linkedid_as(
    section: tr.Section, channel: Channel, headers: list[tuple[str, str]]
) -> list[tuple[str, str]]:
    """The captured headers with the caller's Linkedid (its first AGI's agi_uniqueid, as every
    leg of the call carries it) replaced by the emulated caller's."""
    captured = section.sessions()[0].env["agi_uniqueid"]
    return [(k, channel.uniqueid if v == captured else v) for k, v in headers]


@pytest.mark.parametrize("section", SENT, ids=[s.label[:8] for s in SENT])
async def test_the_partner_invite_carries_the_captured_language(section: tr.Section) -> None:
    recorder = Recorder(section.sessions())
    pbx = sending_pbx(recorder)
    channel = pbx.new_channel("PJSIP/sipp-00000005", caller_num=CALLER[0], caller_name=CALLER[1])
    await pbx.run(channel, "lab", service(section))

    [attempt] = [d for d in pbx.dials if d.invite is not None and d.data.startswith("PJSIP/")]
    assert attempt.invite is not None
    sent = [(k, v) for k, v in attempt.invite.headers if k.startswith("X-")]
    assert sent == linkedid_as(section, channel, uas_headers(section))
    contexts = {"callrouter-outbound", "callrouter-headers"}
    captured = section.sessions()[0].env["agi_uniqueid"]
    assert emulated_lines(pbx, contexts) == [
        (c, app, ch, data.replace(captured, channel.uniqueid))
        for c, app, ch, data in captured_lines(section, contexts)
    ]
    assert [line for line in pbx.log if line.startswith(("ERROR", "WARNING"))] == section.errors()


# --- the static route: the language carried, compared with the council's ---------------------


def generated_static(tmp_path: Path) -> str:
    """The static route generated, as for the capture, from the example plan with Harborough
    speaking Welsh, then English."""
    return render(PlanHolder.load(welsh_plan(tmp_path)).current.plan)


async def unreachable(pbx: Pbx, channel: Channel, url: str, args: list[str]) -> None:
    """The capture's controller and fail-static script: nothing listens; /bin/false."""
    if url.startswith("agi://"):
        channel.set("AGISTATUS", "FAILURE")


def test_the_capture_ran_the_generated_static_route(tmp_path: Path) -> None:
    """The static route's lines as ``callrouter plan static-dialplan`` writes them today: a
    change needs a new capture."""
    generated = generated_static(tmp_path)
    captured = tr.dialplan_lines(CAPTURE, "callrouter-static")
    lines = [line.strip() for line in generated.splitlines()]
    start = lines.index(captured[0])
    assert lines[start : start + len(captured)] == captured
    failstatic = tr.dialplan_lines(CAPTURE, "callrouter-failstatic")
    assert failstatic == SHIPPED["callrouter-failstatic"]


@pytest.mark.parametrize("section", STATIC, ids=[s.label[:10] for s in STATIC])
async def test_the_static_route_keeps_the_captured_language(section: tr.Section, tmp_path: Path) -> None:
    """Controller down: the emulated static route sets the language, and its partner dial
    sends the headers, the capture's did; the values its expressions compare raise nothing."""
    pbx = Pbx(
        Dialplan.parse(shipped_dialplan() + "\n" + generated_static(tmp_path)),
        {**GLOBALS, "CR_FALLBACK": "/bin/false"},
        pjsip=Pjsip(CONTACTS),
        agi=unreachable,
        queue_outcome=lambda queue, variables: "JOINEMPTY",
    )
    channel = pbx.new_channel("PJSIP/sipp-0000004e", caller_num=CALLER[0], caller_name=CALLER[1])
    channel.received = x_headers(section, "SIP")
    await pbx.run(channel, "lab", service(section))

    contexts = {"callrouter-static"}
    assert emulated_lines(pbx, contexts) == captured_lines(section, contexts)
    [attempt] = [d for d in pbx.dials if d.invite is not None]
    assert attempt.invite is not None
    sent = [(k, v) for k, v in attempt.invite.headers if k.startswith("X-")]
    captured = [(k, channel.uniqueid if k == cv.HEADER_LINKEDID else v) for k, v in uas_headers(section)]
    assert sent == captured
    assert [e for e in section.errors() if "res_agi.c" not in e and "Unable to join queue" not in e] == []


# --- receiving: the emulator on the wire answers GET VARIABLE as Asterisk did ------------------


@dataclass
class LanguageAsker:
    """A FastAGI server doing what the capture's did: ``GET VARIABLE CR_FROM_LANGUAGE``, then
    ``SET VARIABLE CR_ROUTE`` with the captured route; it keeps the environment and the reply."""

    route_commands: list[str]
    envs: list[dict[str, str]] = field(default_factory=list)
    replies: list[bytes] = field(default_factory=list)
    port: int = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        env: dict[str, str] = {}
        while (line := (await reader.readline()).decode().rstrip("\n")) != "":
            key, _, value = line.partition(": ")
            env[key] = value
        self.envs.append(env)
        writer.write(f"{GET_LANGUAGE}\n".encode())
        await writer.drain()
        self.replies.append(await reader.readline())
        writer.write(f"{self.route_commands[len(self.envs) - 1]}\n".encode())
        await writer.drain()
        await reader.readline()
        writer.close()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[LanguageAsker]:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(server.sockets[0].getsockname()[1])
        try:
            yield self
        finally:
            server.close()
            await server.wait_closed()


def route_command(session: tr.AgiSession) -> str:
    [command] = [c for c in session.commands if c.startswith("SET VARIABLE")]
    return command


async def receive(
    section: tr.Section, headers: list[tuple[str, str]]
) -> tuple[LanguageAsker, list[str], str]:
    """One call into the shipped callrouter-inbound on the captured channel, on the wire."""
    [session] = section.sessions()[-1:]
    asker = LanguageAsker([route_command(session)])
    script = CallerScript(dial=session.env["agi_dnid"], channel=normalise(session.env["agi_channel"]))
    if session.env["agi_type"] == "Local":
        script = CallerScript(dial=session.env["agi_arg_1"], channel=session.env["agi_channel"])
    async with asker.running():
        record = await place_call("127.0.0.1", asker.port, script, headers=headers, asterisk=Asterisk())
    return asker, record.log, record.variables.get(cv.FROM_LANGUAGE, "")


@pytest.mark.parametrize("section", RECEIVED, ids=[s.label[:8] for s in RECEIVED])
async def test_the_route_reads_the_language_as_captured(section: tr.Section) -> None:
    asker, log, value = await receive(section, x_headers(section, "SIP"))

    [session] = section.sessions()
    assert [env.get(f"agi_arg_{n}") for env in asker.envs for n in (1, 2, 3, 4)] == session.args
    assert asker.replies == language_replies(section)
    assert f"{cv.FROM_LANGUAGE}={value}" == set_data(section.executed(), cv.FROM_LANGUAGE)[-1]
    assert [line for line in log if line.startswith(("ERROR", "WARNING"))] == section.errors()


async def test_a_real_hop_carries_the_language() -> None:
    """hop (e): centre A's dial (the emulated INVITE, built by the shipped handler) arrives at
    centre B, whose route asks for the language and gets ``cy``, as the capture's second
    FastAGI connection did."""
    section = BY_TAG["hop (e)"]
    first, second = section.sessions()
    recorder = Recorder([first])
    pbx = sending_pbx(recorder, trunk="loop")
    channel = pbx.new_channel("PJSIP/sipp-0000000d", caller_num=CALLER[0], caller_name=CALLER[1])
    await pbx.run(channel, "lab", service(section))
    [attempt] = pbx.dials
    assert attempt.invite is not None
    assert attempt.invite.user == second.env["agi_dnid"]

    b_side = tr.Section("B", [line for line in section.lines if "FastAGI connection 1" not in line])
    asker, _, value = await receive(b_side, list(attempt.invite.headers))
    assert value == "cy"
    assert asker.replies == language_replies(section)[1:] == [b"200 result=1 (cy)\n"]
    assert asker.envs[0]["agi_arg_3"] == channel.uniqueid  # A's Linkedid, as in the capture


# --- the controller's reading of each captured reply --------------------------------------------

WELSH_COUNCIL = ChoiceSpec(
    languages=("cy", "en"),
    keys=(("1", "cy"), ("2", "en")),
    prompt="language",
    timeout_s=5,
    tries=2,
    default="cy",
)
TAKEN = {"recv (a)": "cy", "recv (i)": "cy", "recv (k)": "cy", "hop (e)": "cy"}
REFUSED = {"recv (d)": "too_long", "recv (e)": "not_listed", "recv (f)": "too_long", "recv (g)": "too_long"}


@pytest.mark.parametrize("tag", [t for t in BY_TAG if t.startswith(("recv", "hop"))])
def test_the_controller_takes_only_a_listed_language(tag: str) -> None:
    """The controller (FastAGI) and the fail-static script (classic AGI, over pyst2) read each
    captured reply to the same value, the value's own parentheses included, and take it only
    when it is one of the council's languages."""
    captured = language_replies(BY_TAG[tag])[-1].decode()
    reply = parse_reply_line(captured.rstrip("\n"))
    assert reply.result == "1"
    value = reply.value or ""
    classic = ClassicChannel(
        stdin=io.StringIO(f"agi_request: route-fallback\n\n{captured}"), stdout=io.StringIO()
    )
    assert classic.get_variable(cv.FROM_LANGUAGE) == value
    language, reason = read_hop_language(WELSH_COUNCIL, value)
    assert (language, reason) == (TAKEN.get(tag), REFUSED.get(tag))
