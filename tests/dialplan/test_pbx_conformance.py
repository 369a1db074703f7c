"""The emulated PBX against the Asterisk 22.10.1 dial captures: the same dialplan lines give
the same DIALSTATUS, HANGUPCAUSE, ERROR lines, INVITE Request-URI, To and headers, and the same
variables on a pre-dial handler's leg, directly and through a Local hop."""

from __future__ import annotations

import re

import pytest

from emulator.extensions import Dialplan
from emulator.pbx import Channel, Pbx, Pjsip
from tests.dialplan import transcripts as tr

CALLER = ("01632960123", "Jane Resident")  # the sipp UAC of the captures


def contact(name: str) -> str:
    """The trunk's AOR contact, as the scenario line gives it."""
    match = re.search(r"aor contact (sip:[^,)\s]+)", tr.scenario(name))
    assert match, "the scenario names the trunk's contact"
    return match.group(1)


def caller(pbx: Pbx) -> Channel:
    return pbx.new_channel("PJSIP/sipp-00000015", caller_num=CALLER[0], caller_name=CALLER[1])


def normalise(text: str) -> str:
    """Channel names without their sequence numbers."""
    return re.sub(r"((?:PJSIP|Local)/[^\s,;\"]+?)-[0-9a-f]{8}", r"\1-N", text)


def fields(data: str) -> dict[str, str]:
    """``Name,K: v,K2: v2`` (UserEvent data) as a dict."""
    pairs = (item.partition(":") for item in data.split(",")[1:])
    return {key: value.removeprefix(" ") for key, _, value in pairs}


# --- PJSIP dial-string forms (dial_pjsip_trunk_forms.txt) -------------------------------------

DIALS = [e for e in tr.executed(tr.TRUNK_FORMS) if e.app == "Dial" and e.context == "probe"]


def test_the_capture_has_the_four_forms() -> None:
    assert len(DIALS) == 4
    assert set(tr.results(tr.TRUNK_FORMS)) == {d.data.split(",")[0] for d in DIALS}


@pytest.mark.parametrize("dial", DIALS, ids=[d.data.split(",")[0] for d in DIALS])
async def test_pjsip_dial_string_forms(dial: tr.Executed) -> None:
    """endpoint/number fails at once (CHANUNAVAIL, cause 3, no channel, the two ERROR lines);
    number@endpoint, endpoint/sip:URI and endpoint alone send the INVITE the far end received."""
    pbx = Pbx(
        Dialplan.parse(f"[{dial.context}]\nexten => {dial.exten},1,{dial.app}({dial.data})\n"),
        {},
        pjsip=Pjsip({"pstn": contact(tr.TRUNK_FORMS)}),
    )
    channel = caller(pbx)
    await pbx.run(channel, dial.context, dial.exten)

    status, dial_string = tr.results(tr.TRUNK_FORMS)[dial.data.split(",")[0]]
    [attempt] = pbx.dials
    assert channel.get("DIALSTATUS") == status
    assert attempt.dial_string == dial_string
    if dial_string is None:
        logged = tr.executed(tr.TRUNK_FORMS)
        outcome = next(fields(e.data) for e in logged if e.data.startswith("DialOutcome"))
        assert outcome["DIALSTATUS"] == status
        assert channel.get("HANGUPCAUSE") == outcome["HANGUPCAUSE"]
        assert attempt.invite is None
        assert [line.removeprefix("ERROR ") for line in pbx.log if line.startswith("ERROR")] == tr.errors(
            tr.TRUNK_FORMS
        )
        return
    answered = [d for d in DIALS if tr.results(tr.TRUNK_FORMS)[d.data.split(",")[0]][1] is not None]
    far_end = tr.invites(tr.TRUNK_FORMS)[answered.index(dial)]
    assert attempt.invite is not None
    assert attempt.invite.request_uri == far_end.request_uri
    assert attempt.invite.to == far_end.header("To")
    assert (far_end.header("From") or "").startswith(attempt.invite.from_ + ";tag=")


# --- Pre-dial handler variables (dial_predial_handler_variables.txt) --------------------------

# [cr-predial] and [cr-hop] as the capture's "# Dialplan:" line and HopLeg event describe them.
HANDLER = """
[cr-predial]
exten => s,1,Set(PJSIP_HEADER(add,X-Handler)=ran)
 same => n,Set(PJSIP_HEADER(add,X-T1)=${CR_TENANT})
 same => n,Set(PJSIP_HEADER(add,X-T2)=${CR_TENANT2})
 same => n,Set(PJSIP_HEADER(add,X-T3)=${CR_TENANT3})
 same => n,Set(PJSIP_HEADER(add,X-Arg1)=${ARG1})
 same => n,Set(PJSIP_HEADER(add,X-Arg2)=${ARG2})
 same => n,UserEvent(PreDial,Chan: ${CHANNEL},CR_TENANT: ${CR_TENANT},CR_TENANT2: ${CR_TENANT2},\
CR_TENANT3: ${CR_TENANT3},ARG1: ${ARG1},ARG2: ${ARG2})
 same => n,Return()
[cr-hop]
exten => hop,1,UserEvent(HopLeg,Chan: ${CHANNEL},CR_TENANT: ${CR_TENANT},CR_TENANT2: ${CR_TENANT2},\
CR_TENANT3: ${CR_TENANT3})
"""


def predial_dialplan() -> str:
    """The callers' lines (no variables in them) and the hop's Dial, from the log lines."""
    lines = ["[probe]"]
    done = tr.executed(tr.PREDIAL)
    for e in done:
        if e.context == "probe":
            lines.append(f"exten => {e.exten},{e.priority},{e.app}({e.data})")
    hop_dial = next(e for e in done if e.context == "cr-hop" and e.app == "Dial")
    return "\n".join(lines) + HANDLER.replace("\\\n", "") + f" same => n,Dial({hop_dial.data})\n"


async def run_predial_calls() -> Pbx:
    pbx = Pbx(Dialplan.parse(predial_dialplan()), {}, pjsip=Pjsip({"pstn": "sip:127.0.0.1:5090"}))
    for exten in sorted({e.exten for e in tr.executed(tr.PREDIAL) if e.context == "probe"}):
        await pbx.run(caller(pbx), "probe", exten)
    return pbx


async def test_predial_headers_direct_and_through_a_local_hop() -> None:
    """Plain variables never reach the dialled leg (X-T1 empty, sent empty), a single _ reaches
    it directly but not through a Local hop, __ always, Gosub arguments always."""
    pbx = await run_predial_calls()
    far_end = tr.invites(tr.PREDIAL)
    assert len(far_end) == 2  # call 1 direct, call 2 through Local/hop@cr-hop
    sent = [d.invite for d in pbx.dials if d.invite is not None]
    assert [i.request_uri for i in sent] == [i.request_uri for i in far_end]
    for invite, received in zip(sent, far_end, strict=True):
        assert [h for h in invite.headers if h[0].startswith("X-")] == [
            h for h in received.headers if h[0].startswith("X-")
        ]
        assert invite.to == received.header("To")


async def test_handler_and_hop_lines_run_as_logged() -> None:
    """Every priority of the handler and of the Local ;2 leg ran with the data Asterisk logged
    (after substitution), on the channel it logged (names without their numbers). The handler's
    Return() is logged as "Internal Gosub(...) complete", not as an Executing line."""
    pbx = await run_predial_calls()
    logged = [
        (e.context, e.exten, e.app, normalise(e.channel), normalise(e.data))
        for e in tr.executed(tr.PREDIAL)
        if e.context in ("cr-predial", "cr-hop")
    ]
    ran = [
        (e.context, e.exten, e.app, normalise(e.channel), normalise(e.data))
        for e in pbx.events
        if e.context in ("cr-predial", "cr-hop") and e.app != "Return"
    ]
    assert ran == logged


async def test_user_events_show_the_variables_each_leg_had() -> None:
    """The HopLeg/PreDial UserEvents of the capture, field by field."""
    pbx = await run_predial_calls()
    emitted = [(e.data.split(",")[0], fields(e.data)) for e in pbx.events if e.app == "UserEvent"]
    captured = [
        (name, {k: v for k, v in headers.items() if k in fields_of(name)})
        for name, headers in tr.user_events(tr.PREDIAL)
    ]
    assert [name for name, _ in captured] == ["PreDial", "HopLeg", "PreDial"]
    by_name = {name: [normalise_fields(f) for n, f in emitted if n == name] for name, _ in captured}
    for name, headers in captured:
        assert normalise_fields(headers) in by_name[name]


def fields_of(name: str) -> set[str]:
    arguments = {"ARG1", "ARG2"} if name == "PreDial" else set()
    return {"Chan", "CR_TENANT", "CR_TENANT2", "CR_TENANT3"} | arguments


def normalise_fields(headers: dict[str, str]) -> dict[str, str]:
    return {k: normalise(v) for k, v in headers.items()}


def test_excerpts_are_verbatim_lines_of_the_transcripts() -> None:
    """The fixture excerpts hold nothing the capture does not (checked when it is present)."""
    for name in (tr.TRUNK_FORMS, tr.PREDIAL):
        full = tr.SHARED / name
        excerpt = (tr.EXCERPTS / name).read_text().splitlines()
        assert excerpt[0].startswith("# Excerpt:")
        if not full.exists():
            pytest.skip(f"{full} is not beside the repository")
        assert set(excerpt[1:]) <= set(full.read_text().splitlines())
