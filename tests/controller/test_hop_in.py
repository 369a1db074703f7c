"""The route's partner-header arguments, checked (``ivr.contract.read_hop``) and reported.

The values come from the network (another centre's INVITE), URI-encoded by the dialplan
(``agi_inbound_partner_headers.txt``): they are never trusted."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from ivr import channel_vars as cv
from ivr.contract import HOP_VALUE_MAX, HopIn, read_hop, unpack
from ivr.controller import PlanHolder
from records import facts as rf
from tests.controller.conftest import EXAMPLE, HARBOROUGH, Rig

PLAN = PlanHolder.load(EXAMPLE).current  # this centre: charnwood; partner: harborough
LINKEDID = "1795970000.7"
BAD_CALL = ((cv.HEADER_LINKEDID, "malformed"),)
LONG_CALL = ((cv.HEADER_LINKEDID, "too_long"),)
LONGEST_NAMED = "h" * 64 + "-" + "1" * 19 + "." + "2" * 10  # LINKEDID_MAX characters


@pytest.mark.parametrize(
    ("centre", "call", "expected"),
    [
        ("", "", HopIn()),
        ("harborough", LINKEDID, HopIn("harborough", LINKEDID)),
        ("harborough", "", HopIn("harborough", None)),
        ("harborough", "1" * 19 + "." + "2" * 10, HopIn("harborough", "1" * 19 + "." + "2" * 10)),
        ("harborough", "1" * 20 + ".2", HopIn("harborough", None, BAD_CALL)),
        ("harborough", "1." + "2" * 11, HopIn("harborough", None, BAD_CALL)),
        ("harborough", LINKEDID + "%0A", HopIn("harborough", None, BAD_CALL)),
        ("harborough", "1" * 60 + "." + "2" * 40, HopIn("harborough", None, LONG_CALL)),
        # an Asterisk with systemname set (asterisk.conf): <systemname>-<seconds>.<sequence>
        ("harborough", "harborough-ast1-" + LINKEDID, HopIn("harborough", "harborough-ast1-" + LINKEDID)),
        ("harborough", LONGEST_NAMED, HopIn("harborough", LONGEST_NAMED)),
        ("harborough", "x" + LONGEST_NAMED, HopIn("harborough", None, LONG_CALL)),
        ("harborough", "x" * 65 + "-" + LINKEDID, HopIn("harborough", None, BAD_CALL)),
        ("harborough", "ast%201-" + LINKEDID, HopIn("harborough", None, BAD_CALL)),  # a space
        ("harborough", "..-" + LINKEDID, HopIn("harborough", None, BAD_CALL)),
        ("harborough", "a%2Fb-" + LINKEDID, HopIn("harborough", None, BAD_CALL)),
        ("harborough", "1795970000.7%2Cevil", HopIn("harborough", None, BAD_CALL)),
        ("harborough", "1795970000", HopIn("harborough", None, BAD_CALL)),
        ("harborough", "-1.2", HopIn("harborough", None, BAD_CALL)),
        ("charnwood", LINKEDID, HopIn(refused=((cv.HEADER_CENTRE, "own_centre"),))),
        ("nowhere", LINKEDID, HopIn(refused=((cv.HEADER_CENTRE, "unknown_centre"),))),
        ("Harborough", LINKEDID, HopIn(refused=((cv.HEADER_CENTRE, "malformed"),))),
        ("h" * (HOP_VALUE_MAX + 1), "", HopIn(refused=((cv.HEADER_CENTRE, "too_long"),))),
        ("", LINKEDID, HopIn(refused=((cv.HEADER_CENTRE, "missing"),))),
        ("a%2Cb", "x%22", HopIn(refused=((cv.HEADER_CENTRE, "malformed"), *BAD_CALL))),
    ],
)  # fmt: skip
def test_read_hop(centre: str, call: str, expected: HopIn) -> None:
    assert read_hop(PLAN, centre, call) == expected


async def test_the_route_reports_the_hop_in_its_first_fact(rig: Rig) -> None:
    """``route,<dialled>,<centre>,<linkedid>``: CallArrived carries the sending centre and its
    Linkedid; the call is routed as any other."""
    facts: list[rf.IvrFact] = []
    rig.controller.facts = facts.append
    call = await rig.call("route", HARBOROUGH, "harborough", LINKEDID, dial=HARBOROUGH)
    assert call.variables.get(cv.ROUTE)
    arrived = next(f for f in facts if isinstance(f, rf.CallArrived))
    assert (arrived.from_centre, arrived.from_call) == ("harborough", LINKEDID)


async def test_a_refused_value_is_logged_bounded_and_masked(
    rig: Rig, logs: Callable[[], list[dict[str, Any]]]
) -> None:
    facts: list[rf.IvrFact] = []
    rig.controller.facts = facts.append
    hostile = "4929123456781234%2C" * 10
    await rig.call("route", HARBOROUGH, "harborough", hostile, dial=HARBOROUGH)
    arrived = next(f for f in facts if isinstance(f, rf.CallArrived))
    assert (arrived.from_centre, arrived.from_call) == ("harborough", None)
    [warning] = [line for line in logs() if line["event"] == "call.hop_header_refused"]
    assert warning["header"] == cv.HEADER_LINKEDID
    assert warning["reason"] == "too_long"
    assert warning["length"] == len(hostile)
    assert len(warning["sample"]) <= 24
    assert "4929" not in str(logs())
    [routed] = [line for line in logs() if line["event"] == "call.routed"]
    assert routed["hop_from"] == "harborough"


# --- X-Callrouter-Dialled: the council the caller dialled at the sending centre --------------

CHARNWOOD = "01632960100"  # this centre's own council: the number a partner's overflow arrives on
HARBOROUGH_E164 = "+441632960001"


def dialled_refused(reason: str) -> HopIn:
    return HopIn("harborough", LINKEDID, ((cv.HEADER_DIALLED, reason),))


def no_centre(centre_reason: str) -> HopIn:
    return HopIn(refused=((cv.HEADER_CENTRE, centre_reason), (cv.HEADER_DIALLED, "no_centre")))


@pytest.mark.parametrize(
    ("centre", "dialled", "expected"),
    [
        ("harborough", "%2B441632960001", HopIn("harborough", LINKEDID, (), HARBOROUGH_E164)),
        ("harborough", "01632960001", HopIn("harborough", LINKEDID, (), HARBOROUGH_E164)),
        ("harborough", "%2B441632969999", dialled_refused("unknown_number")),
        ("harborough", "%2B44163296000%2C1", dialled_refused("malformed")),
        ("harborough", "9" * (HOP_VALUE_MAX + 1), dialled_refused("too_long")),
        ("", "%2B441632960001", no_centre("missing")),
        ("nowhere", "%2B441632960001", no_centre("unknown_centre")),
    ],
)  # fmt: skip
def test_read_hop_dialled(centre: str, dialled: str, expected: HopIn) -> None:
    """Taken only from a known partner, and only when it is one of this plan's council numbers."""
    assert read_hop(PLAN, centre, LINKEDID, dialled) == expected


async def test_an_overflowed_call_is_answered_in_the_dialled_councils_name(rig: Rig) -> None:
    """Harborough's caller, overflowed by the partner centre to a number of this centre's own
    council: the route brands the call for Harborough (tenant, prompts, language) and the
    record's first fact says the caller dialled Harborough's number."""
    facts: list[rf.IvrFact] = []
    rig.controller.facts = facts.append
    call = await rig.call("route", CHARNWOOD, "harborough", LINKEDID, "%2B441632960001", dial=CHARNWOOD)
    route = unpack(call.variables[cv.ROUTE])
    assert route[cv.TENANT] == "harborough"
    assert route[cv.PROMPTS] == PLAN.plan.tenants["harborough"].prompts
    arrived = next(f for f in facts if isinstance(f, rf.CallArrived))
    assert (arrived.dialled, arrived.tenant) == (HARBOROUGH_E164, "harborough")
    assert arrived.from_centre == "harborough"


async def test_a_dialled_number_from_no_partner_changes_nothing(
    rig: Rig, logs: Callable[[], list[dict[str, Any]]]
) -> None:
    """Without a known sending centre the header is refused (logged) and the call is answered
    for the number it arrived on."""
    call = await rig.call("route", CHARNWOOD, "", "", "%2B441632960001", dial=CHARNWOOD)
    assert unpack(call.variables[cv.ROUTE])[cv.TENANT] == "charnwood"
    events = [line for line in logs() if line["event"] == "call.hop_header_refused"]
    refused = [(line["header"], line["reason"]) for line in events]
    assert (cv.HEADER_DIALLED, "no_centre") in refused
