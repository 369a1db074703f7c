"""callrouter's own dialplans (dialplans/*.conf), run by the emulated PBX: what the trunk, the
partner centre and the payment provider receive, directly and through a Local hop.

The expected INVITE comes from the Asterisk capture of the working dial form (the capture
dialled the very number of the example plan's out-of-hours service)."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import pytest

from emulator.agi import CallerScript, PressAfterPrompt
from emulator.dialplan import CONTACTS, DIALPLANS, GLOBALS, Asterisk, place_call
from emulator.extensions import Dialplan
from emulator.pbx import Channel, Pbx, Pjsip
from ivr import channel_vars as cv
from routing.core.plan import ExternalDest
from routing.plan_file import load_plan
from tests.controller.conftest import EXAMPLE, HARBOROUGH, LONDON, Rig
from tests.dialplan import transcripts as tr

SATURDAY_3PM = datetime(2026, 11, 28, 15, 0, tzinfo=LONDON)  # closed: the out-of-hours service
OUT_OF_HOURS = "+441632960999"
# The capture's pstn trunk answered at this contact; the emulated one does too.
CAPTURED = Asterisk(contacts={**CONTACTS, "pstn": "sip:127.0.0.1:5090"})


def captured_invite() -> tr.SipInvite:
    """The INVITE of Dial(PJSIP/+441632960999@pstn) in the capture (its second call)."""
    forms = tr.results(tr.TRUNK_FORMS)
    answered = [data for data, (_, dial_string) in forms.items() if dial_string is not None]
    return tr.invites(tr.TRUNK_FORMS)[answered.index(f"PJSIP/{OUT_OF_HOURS}@pstn")]


async def test_out_of_hours_call_reaches_the_trunk_with_the_number_and_the_council(rig: Rig) -> None:
    """callrouter-dispatch,dial: the INVITE Asterisk 22 sends for PJSIP/<number>@pstn, with the
    dialled council and number in the headers."""
    rig.clock[0] = SATURDAY_3PM
    record = await place_call("127.0.0.1", rig.server.port, CallerScript(dial=HARBOROUGH), asterisk=CAPTURED)
    assert record.summary() == f"route (closed) -> dial {OUT_OF_HOURS}"
    [attempt] = record.dials
    assert attempt.status == "ANSWER"
    assert attempt.invite is not None
    expected = captured_invite()
    assert attempt.invite.request_uri == expected.request_uri
    assert attempt.invite.to == expected.header("To")
    assert attempt.invite.user == OUT_OF_HOURS
    assert attempt.invite.header("X-Callrouter-Tenant") == "harborough"
    assert attempt.invite.header("X-Callrouter-Dialled") == HARBOROUGH
    # the dialled leg carries the caller's Linkedid (dial_predial_handler_variables.txt)
    assert attempt.invite.header("X-Callrouter-Linkedid") == record.sessions[0].uniqueid
    assert attempt.invite.header("X-Callrouter-Centre") == "charnwood"  # CR_HOME: the plan's centre
    # Harborough has one language: settled, so it goes with the call (X-Callrouter-Language)
    assert attempt.invite.header("X-Callrouter-Language") == "en"


async def test_payment_provider_gets_the_reference(rig: Rig) -> None:
    """Key 3, then the account number: dialled on the payment endpoint with the reference."""
    script = CallerScript(dial=HARBOROUGH, steps=[PressAfterPrompt("3"), PressAfterPrompt("87654321")])
    record = await place_call("127.0.0.1", rig.server.port, script)
    assert record.summary() == "route (open) -> menu main -> payment line +441632960777"
    [attempt] = record.dials
    assert attempt.invite is not None
    assert attempt.invite.request_uri == "sip:+441632960777@127.0.0.1:5091"
    assert [h for h in attempt.invite.headers if h[0].startswith("X-")] == [
        ("X-Payment-Reference", "87654321")
    ]


async def test_partner_team_as_a_local_queue_member_gets_the_headers(rig: Rig) -> None:
    """A queue member Local/<number>@callrouter-outbound: the caller's channel dials the Local
    channel and its ;2 leg dials the trunk; CR_TENANT and CR_DIALLED get there by __."""
    partner = "+441632960400"
    asterisk = Asterisk(queue_members={"hdc-revenues": [f"Local/{partner}@callrouter-outbound"]})
    script = CallerScript(dial=HARBOROUGH, steps=[PressAfterPrompt("1")])
    record = await place_call("127.0.0.1", rig.server.port, script, asterisk=asterisk)
    assert record.summary().startswith("route (open) -> menu main -> queue hdc-revenues (continue)")
    [attempt] = record.dials
    assert attempt.caller.startswith("Local/")
    assert attempt.caller.endswith(";2")
    assert attempt.invite is not None
    assert attempt.invite.user == partner
    assert attempt.invite.header("X-Callrouter-Tenant") == "harborough"
    assert attempt.invite.header("X-Callrouter-Dialled") == HARBOROUGH
    assert attempt.invite.header("X-Callrouter-Linkedid") == record.sessions[0].uniqueid  # through ;1/;2
    assert attempt.invite.header("X-Callrouter-Centre") == "charnwood"  # __CR_HOME, through ;1/;2
    assert attempt.invite.header("X-Callrouter-Language") == "en"  # __CR_LANGUAGE, through ;1/;2


def static_pbx(trunk: str = "pstn") -> tuple[Pbx, Channel]:
    texts = [(DIALPLANS / name).read_text() for name in ("callrouter.conf", "callrouter-static.conf")]
    pbx = Pbx(
        Dialplan.parse(*texts),
        {**GLOBALS, "CR_TRUNK": trunk},
        pjsip=Pjsip(CONTACTS),
        queue_outcome=lambda queue, variables: "TIMEOUT",
    )
    return pbx, pbx.new_channel("PJSIP/sipp-00000001", caller_num="01632960123")


async def test_static_route_dials_out_of_hours_with_the_headers() -> None:
    """callrouter-static (generated): the queue times out, then the out-of-hours service."""
    pbx, channel = static_pbx()
    await pbx.run(channel, "callrouter-static", HARBOROUGH)
    [attempt] = pbx.dials
    assert attempt.invite is not None
    assert attempt.invite.user == OUT_OF_HOURS
    assert attempt.invite.header("X-Callrouter-Tenant") == "harborough"
    assert attempt.invite.header("X-Callrouter-Dialled") == HARBOROUGH
    assert attempt.invite.header("X-Callrouter-Centre") == "charnwood"  # baked in from the plan


async def test_a_trunk_setting_written_as_a_dial_string_is_refused_loudly() -> None:
    """CR_TRUNK=PJSIP/pstn: no dial at all, an ERROR line naming the setting, CHANUNAVAIL."""
    pbx, channel = static_pbx(trunk="PJSIP/pstn")
    await pbx.run(channel, "callrouter-static", HARBOROUGH)
    assert pbx.dials == []
    assert any("ERROR" in line and "'PJSIP/pstn'" in line for line in pbx.log)
    assert channel.get("DIALSTATUS") == "CHANUNAVAIL"


@pytest.mark.parametrize("target", ["sip:+441632960999@127.0.0.1", "pstn/+441632960999", ""])
async def test_a_number_that_is_a_dial_string_is_refused_loudly(target: str) -> None:
    """A target like sip:... or pstn/+44... never reaches Dial()."""
    conf = (DIALPLANS / "callrouter.conf").read_text()
    caller_context = "[t]\nexten => s,1,Gosub(callrouter-outbound,s,1(pstn,${TARGET},partner,harborough,x))\n"
    pbx = Pbx(Dialplan.parse(conf, caller_context), dict(GLOBALS), pjsip=Pjsip(CONTACTS))
    channel = pbx.new_channel("PJSIP/sipp-00000001")
    channel.set("TARGET", target)
    await pbx.run(channel, "t", "s")
    assert pbx.dials == []
    assert any("ERROR" in line and "is not a number to dial" in line for line in pbx.log)
    assert channel.get("DIALSTATUS") == "CHANUNAVAIL"


# --- the defects the emulator let through before: it must fail them now ------------------------

OLD_DIAL = """
[old]
exten => dial,1,Dial(${CR_TRUNK}/${CR_TARGET},,b(old-headers^partner^1))
[old-headers]
exten => partner,1,Set(PJSIP_HEADER(add,X-Callrouter-Tenant)=${CR_TENANT})
 same => n,Set(PJSIP_HEADER(add,X-Callrouter-Dialled)=${CR_DIALLED})
 same => n,Return()
"""


async def test_the_old_dial_line_fails_as_on_asterisk() -> None:
    """Dial(${CR_TRUNK}/${CR_TARGET}) with CR_TRUNK=PJSIP/pstn: CHANUNAVAIL, cause 3, no INVITE."""
    pbx = Pbx(Dialplan.parse(OLD_DIAL), {"CR_TRUNK": "PJSIP/pstn"}, pjsip=Pjsip(CONTACTS))
    channel = pbx.new_channel("PJSIP/sipp-00000001")
    channel.set(cv.TARGET, OUT_OF_HOURS)
    await pbx.run(channel, "old", "dial")
    assert (channel.get("DIALSTATUS"), channel.get("HANGUPCAUSE")) == ("CHANUNAVAIL", "3")
    assert pbx.dials[0].invite is None


async def test_the_old_headers_arrive_empty() -> None:
    """Plain CR_TENANT/CR_DIALLED read on the dialled leg: both headers empty, as captured
    (here with a dial string that works: PJSIP/<number>@pstn)."""
    pbx = Pbx(Dialplan.parse(OLD_DIAL), {"CR_TRUNK": "PJSIP"}, pjsip=Pjsip(CONTACTS))
    channel = pbx.new_channel("PJSIP/sipp-00000001")
    for name, value in (
        (cv.TARGET, f"{OUT_OF_HOURS}@pstn"),
        (cv.TENANT, "harborough"),
        ("CR_DIALLED", HARBOROUGH),
    ):
        channel.set(name, value)
    await pbx.run(channel, "old", "dial")
    invite = pbx.dials[0].invite
    assert invite is not None
    assert invite.headers == (("X-Callrouter-Tenant", ""), ("X-Callrouter-Dialled", ""))


# --- settings and contract ---------------------------------------------------------------------


def readme_globals() -> dict[str, str]:
    text = (DIALPLANS / "README.md").read_text()
    block = re.search(r"\[globals\]\n(.*?)\n\n", text, re.S)
    assert block, "dialplans/README.md shows the [globals] to add"
    return dict(line.split("=", 1) for line in block.group(1).splitlines())


def test_the_emulator_uses_the_documented_globals() -> None:
    """What the README tells an engineer to write is what the tests dial with."""
    documented = readme_globals()
    assert documented.pop("CR_AGI").startswith("agi://")
    assert documented == dict(GLOBALS)


def test_trunk_settings_are_endpoint_names_everywhere() -> None:
    """No shipped file or doc shows a trunk setting as a dial string."""
    for path in [*DIALPLANS.iterdir(), *(Path(__file__).parents[2] / "docs").glob("*.md")]:
        for line in path.read_text().splitlines():
            match = re.search(r"\bCR_(?:PAYMENT_)?TRUNK=(\S+)", line)
            if match:
                assert re.fullmatch(r"[A-Za-z0-9_.-]+", match.group(1)), f"{path.name}: {line}"


def test_every_number_the_plan_dials_is_e164() -> None:
    """CR_TARGET of a dial or payment is an E.164 number, never a dial string: the dialplan
    puts it in PJSIP/<number>@<endpoint>."""
    plan = load_plan(EXAMPLE).plan
    assert plan is not None
    numbers = [c.number for c in plan.centres.values() if c.number]
    for tenant in plan.tenants.values():
        numbers += [line.number for line in tenant.payment_lines.values()]
        if isinstance(tenant.out_of_hours, ExternalDest) and tenant.out_of_hours.number:
            numbers.append(tenant.out_of_hours.number)
    assert numbers
    assert all(re.fullmatch(r"\+[1-9]\d{6,14}", n) for n in numbers), numbers
