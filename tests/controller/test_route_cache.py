"""The route entry's caches (the decision, and ``CR_ROUTE`` packed for it) change nothing a
call sees: repeated calls get what the first got, and a reloaded plan, a toggle or the clock
moving past a boundary are seen at once, over the emulator as Asterisk would run them."""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path

from routing.core.decide import Call
from routing.core.live import NO_TOGGLES, UNKNOWN_LIVE_STATE
from routing.plan_file import load_plan
from tests.controller.conftest import EXAMPLE, HARBOROUGH, Rig, fields


async def test_repeated_calls_are_routed_alike_and_from_the_cache(rig: Rig) -> None:
    first = await rig.call("route", HARBOROUGH, dial=HARBOROUGH)
    again = await rig.call("route", HARBOROUGH, dial=HARBOROUGH)
    assert fields(again)["CR_ROUTE"] == fields(first)["CR_ROUTE"]
    assert (fields(first)["CR_ACTION"], fields(first)["CR_TARGET"]) == ("menu", "main")
    assert rig.controller._decisions.hits >= 1


async def test_the_clock_passing_closing_time_is_seen_at_once(rig: Rig) -> None:
    rig.clock[0] = rig.clock[0].replace(hour=17, minute=29, second=59, microsecond=999_000)
    before = await rig.call("route", HARBOROUGH, dial=HARBOROUGH)
    rig.clock[0] += timedelta(milliseconds=1)  # 17:30:00, closing time
    after = await rig.call("route", HARBOROUGH, dial=HARBOROUGH)
    assert (fields(before)["CR_REASON"], fields(after)["CR_REASON"]) == ("open", "closed")


async def test_a_reloaded_plan_is_used_by_the_next_call(rig: Rig, tmp_path: Path) -> None:
    first = await rig.call("route", HARBOROUGH, dial=HARBOROUGH)
    assert fields(first)["CR_REASON"] == "open"
    edited = tmp_path / "plan.yaml"  # Harborough's line now closes at 09:30 (the clock says 10:00)
    edited.write_text(
        EXAMPLE.read_text().replace('weekdays: ["08:30-17:30"]', 'weekdays: ["08:30-09:30"]', 1)
    )
    rig.controller.plans.path = edited
    assert rig.controller.plans.reload().ok
    second = await rig.call("route", HARBOROUGH, dial=HARBOROUGH)
    assert fields(second)["CR_REASON"] == "closed"


def test_the_packed_route_is_for_its_own_plan_and_keeps_no_plan_alive(rig: Rig) -> None:
    controller = rig.controller
    plan = controller.plans.current
    decision = controller._decisions.decide(
        Call(HARBOROUGH), plan, UNKNOWN_LIVE_STATE, NO_TOGGLES, rig.clock[0]
    )
    packed = controller._route_value(plan, decision, None)
    assert controller._route_value(plan, decision, None) is packed
    assert controller._route_value(plan, decision, "after_queue") != packed
    result = load_plan(EXAMPLE)
    assert result.plan is not None
    other = type(plan).compile(result.plan.model_copy(update={"centre": "harborough"}))
    held = sys.getrefcount(other)
    assert controller._route_value(other, decision, None) != packed
    assert sys.getrefcount(other) == held
