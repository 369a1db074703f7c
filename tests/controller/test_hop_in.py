"""The route's partner-header arguments, checked (``ivr.contract.read_hop``) and reported.

The values come from the network (another centre's INVITE), URI-encoded by the dialplan
(``agi_inbound_partner_headers.txt``): they are never trusted."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from ivr import channel_vars as cv
from ivr.contract import HOP_VALUE_MAX, HopIn, read_hop
from ivr.controller import PlanHolder
from records import facts as rf
from tests.controller.conftest import EXAMPLE, HARBOROUGH, Rig

PLAN = PlanHolder.load(EXAMPLE).current  # this centre: charnwood; partner: harborough
LINKEDID = "1795970000.7"
BAD_CALL = ((cv.HEADER_LINKEDID, "malformed"),)
LONG_CALL = ((cv.HEADER_LINKEDID, "too_long"),)


@pytest.mark.parametrize(
    ("centre", "call", "expected"),
    [
        ("", "", HopIn()),
        ("harborough", LINKEDID, HopIn("harborough", LINKEDID)),
        ("harborough", "", HopIn("harborough", None)),
        ("harborough", "1" * 20 + "." + "2" * 20, HopIn("harborough", "1" * 20 + "." + "2" * 20)),
        ("harborough", "1" * 21 + ".2", HopIn("harborough", None, BAD_CALL)),
        ("harborough", "1" * 40 + "." + "2" * 40, HopIn("harborough", None, LONG_CALL)),
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
