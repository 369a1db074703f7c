"""The decision engine: precedence, menus, overflow with hysteresis, partners, totality."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from routing.core.decide import Call, CompiledPlan, decide, describe, resolve_destination
from routing.core.live import NO_TOGGLES, UNKNOWN_LIVE_STATE, LiveState, QueueSnapshot, Toggle, Toggles
from routing.core.plan import QueueDest
from routing.plan_file import load_plan
from tests.core.plans import NUMBER, compiled, london

EXAMPLE = Path(__file__).parents[2] / "examples" / "plan.yaml"
OPEN = london("2026-11-24 10:00")
CLOSED = london("2026-11-24 18:00")


def example() -> CompiledPlan:
    result = load_plan(EXAMPLE)
    assert result.ok
    assert result.plan is not None
    return CompiledPlan.compile(result.plan)


EX = example()


def toggle(hours: float = 1, service: str | None = None, at: datetime = OPEN) -> Toggle:
    return Toggle(
        reason="flooding in Market Harborough",
        by="sam",
        expires_at=at + timedelta(hours=hours),
        service=service,
    )


def snap(queue: str, waiting: int, longest: float, available: int, logged_in: int = 4) -> QueueSnapshot:
    return QueueSnapshot(queue, waiting, longest, logged_in, available, OPEN)


def test_open_call_goes_to_the_entry_with_a_readable_trace() -> None:
    """The trace names the number, the tenant, the hours and the entry."""
    decision = decide(Call("01632 960001"), EX, UNKNOWN_LIVE_STATE, NO_TOGGLES, OPEN)
    assert describe(decision.destination) == "menu main"
    assert decision.state == "open"
    assert (decision.tenant, decision.language, decision.prompts) == ("harborough", "en", "harborough")
    assert decision.reasons[0] == "01632 960001 -> tenant harborough (Harborough District Council)"
    assert decision.reasons[1] == "2026-11-24 Tue weekly hours (tue) 08:30-17:30: open"


def test_good_friday_goes_to_the_out_of_hours_service() -> None:
    """A bank holiday diverts to the out-of-hours service and says which holiday."""
    decision = decide(Call("+441632960001"), EX, UNKNOWN_LIVE_STATE, NO_TOGGLES, london("2026-04-03 10:00"))
    assert decision.destination.type == "external"
    assert "2026-04-03 Good Friday (bank holiday): closed" in decision.reasons
    assert decision.reasons[-1].startswith("-> out-of-hours service: external 01632 960999")


def test_after_hours_goes_to_out_of_hours() -> None:
    """17:30 and later is closed; the out-of-hours service answers."""
    decision = decide(Call(NUMBER), EX, UNKNOWN_LIVE_STATE, NO_TOGGLES, CLOSED)
    assert (decision.state, describe(decision.destination)) == (
        "closed",
        "external 01632 960999 (Harborough out-of-hours service (Clover Court))",
    )


def test_emergency_toggle_beats_everything_including_closed_hours() -> None:
    """Emergency cover applies first, even out of hours, and the trace names the toggle."""
    toggles = Toggles(emergency={"harborough": toggle(at=CLOSED)})
    decision = decide(Call(NUMBER), EX, UNKNOWN_LIVE_STATE, toggles, CLOSED)
    assert decision.state == "emergency"
    assert describe(decision.destination) == "queue emergency"
    assert [p.prompt for p in decision.prelude] == ["harborough/emergency-information"]
    assert any("emergency toggle on (flooding in Market Harborough; by sam" in r for r in decision.reasons)


def test_expired_emergency_toggle_reverts_by_itself() -> None:
    """After its expiry the toggle no longer applies."""
    toggles = Toggles(emergency={"harborough": toggle(hours=1)})
    later = OPEN + timedelta(hours=1)
    assert decide(Call(NUMBER), EX, UNKNOWN_LIVE_STATE, toggles, OPEN).state == "emergency"
    assert decide(Call(NUMBER), EX, UNKNOWN_LIVE_STATE, toggles, later).state == "open"


def test_closure_toggle_sends_open_hours_calls_out_of_hours() -> None:
    """A manual closure (e.g. evacuation) diverts like out-of-hours."""
    toggles = Toggles(closure={"harborough": toggle()})
    decision = decide(Call(NUMBER), EX, UNKNOWN_LIVE_STATE, toggles, OPEN)
    assert decision.state == "closed"
    assert decision.destination.type == "external"
    assert any(r.startswith("closure toggle on") for r in decision.reasons)


def test_service_scoped_emergency_applies_only_to_that_queue() -> None:
    """An emergency toggle for one service covers that queue's callers only."""
    toggles = Toggles(emergency={"harborough": toggle(service="waste")})
    waste = decide(Call(NUMBER, digits=("2",)), EX, UNKNOWN_LIVE_STATE, toggles, OPEN)
    revenues = decide(Call(NUMBER, digits=("1",)), EX, UNKNOWN_LIVE_STATE, toggles, OPEN)
    assert describe(waste.destination) == "queue emergency"
    assert describe(revenues.destination) == "queue revenues"


def test_unknown_number_takes_the_plan_fallback() -> None:
    """A number no tenant owns still gets a destination."""
    decision = decide(Call("01632 960555"), EX, UNKNOWN_LIVE_STATE, NO_TOGGLES, OPEN)
    assert (decision.state, decision.destination.type, decision.tenant) == ("unknown_number", "hangup", None)
    assert "01632 960555 -> no tenant has this number" in decision.reasons[0]


def test_topic_announcement_plays_before_the_menu_inside_its_window_only() -> None:
    """The bin-collection announcement is in the prelude from 2 Nov to 19 Dec 2026."""
    inside = decide(Call(NUMBER), EX, UNKNOWN_LIVE_STATE, NO_TOGGLES, OPEN)
    outside = decide(Call(NUMBER), EX, UNKNOWN_LIVE_STATE, NO_TOGGLES, london("2027-01-05 10:00"))
    assert [(p.prompt, p.skippable) for p in inside.prelude] == [("harborough/bin-collection-change", True)]
    assert outside.prelude == ()


def test_supervisor_can_switch_an_announcement_on_outside_its_window() -> None:
    """An announcement toggle plays it even outside its window."""
    when = london("2027-01-05 10:00")
    toggles = Toggles(announcement={"harborough": toggle(service="bins-2026", at=when)})
    decision = decide(Call(NUMBER), EX, UNKNOWN_LIVE_STATE, toggles, when)
    assert [p.prompt for p in decision.prelude] == ["harborough/bin-collection-change"]
    assert "topic announcement bins-2026 (switched on by a supervisor)" in decision.reasons


def test_menu_keys_reach_a_queue() -> None:
    """Keys are followed through the menus; the trace lists each."""
    decision = decide(Call(NUMBER, digits=("4", "#", "2")), EX, UNKNOWN_LIVE_STATE, NO_TOGGLES, OPEN)
    assert describe(decision.destination) == "queue waste"
    assert "menu main: key 4 -> menu more" in decision.reasons
    assert "menu more: back to main" in decision.reasons


def test_three_silences_take_the_timeout_destination() -> None:
    """Invalid keys and silences share max_tries; then on_timeout applies."""
    two = decide(Call(NUMBER, digits=("", "")), EX, UNKNOWN_LIVE_STATE, NO_TOGGLES, OPEN)
    three = decide(Call(NUMBER, digits=("", "9", "")), EX, UNKNOWN_LIVE_STATE, NO_TOGGLES, OPEN)
    assert describe(two.destination) == "menu main"
    assert "waiting in menu main for a key" in two.reasons
    assert describe(three.destination) == "queue revenues"
    assert "menu main: timeout, tries used up" in three.reasons


def test_unknown_live_state_takes_the_safe_default_and_says_so() -> None:
    """With no snapshot, the policy's when_unknown applies and the trace says so."""
    decision = decide(Call(NUMBER, digits=("1",)), EX, UNKNOWN_LIVE_STATE, NO_TOGGLES, OPEN)
    assert describe(decision.destination) == "queue revenues"
    assert "queue revenues (hdc-revenues): live state unknown: plan default 'stay'" in decision.reasons


def test_stale_snapshot_counts_as_unknown() -> None:
    """A snapshot older than max_age_s is not trusted."""
    old = QueueSnapshot("hdc-revenues", 50, 900, 4, 0, OPEN - timedelta(minutes=5))
    live = LiveState(queues={"hdc-revenues": old}, max_age_s=30)
    decision = decide(Call(NUMBER, digits=("1",)), EX, live, NO_TOGGLES, OPEN)
    assert describe(decision.destination) == "queue revenues"
    assert any("live state unknown" in r for r in decision.reasons)


def _revenues(waiting: int, overflowing: bool) -> tuple[str, tuple[tuple[str, bool], ...]]:
    live = LiveState(
        queues={"hdc-revenues": snap("hdc-revenues", waiting, 10, available=5)},
        overflowing=frozenset({"harborough/revenues"} if overflowing else ()),
    )
    decision = decide(Call(NUMBER, digits=("1",)), EX, live, NO_TOGGLES, OPEN)
    return describe(decision.destination), decision.latches


def test_overflow_hysteresis_enters_at_six_and_leaves_below_three() -> None:
    """Enter at waiting >= 6; once overflowing, stay until waiting < 3."""
    assert _revenues(5, overflowing=False) == ("queue revenues", (("harborough/revenues", False),))
    assert _revenues(6, overflowing=False) == ("queue charnwood_assist", (("harborough/revenues", True),))
    assert _revenues(4, overflowing=True) == ("queue charnwood_assist", (("harborough/revenues", True),))
    assert _revenues(3, overflowing=True) == ("queue charnwood_assist", (("harborough/revenues", True),))
    assert _revenues(2, overflowing=True) == ("queue revenues", (("harborough/revenues", False),))


def test_no_adviser_logged_in_overflows() -> None:
    """no_adviser: true overflows when nobody is logged in."""
    live = LiveState(queues={"hdc-revenues": snap("hdc-revenues", 0, 0, available=0, logged_in=0)})
    decision = decide(Call(NUMBER, digits=("1",)), EX, live, NO_TOGGLES, OPEN)
    assert describe(decision.destination) == "queue charnwood_assist"
    assert any("no adviser logged in" in r for r in decision.reasons)


def _charnwood(partner: QueueSnapshot | None) -> str:
    live = LiveState(
        queues={"cbc-general": snap("cbc-general", 12, 30, available=0)},
        partners={"harborough": partner} if partner else {},
    )
    return describe(decide(Call("01632 960100", digits=("1",)), EX, live, NO_TOGGLES, OPEN).destination)


def test_partner_with_capacity_receives_overflow() -> None:
    """Overflow to a partner centre needs its fresh published state to show a free adviser."""
    assert _charnwood(snap("harborough", 0, 0, available=2)) == (
        "external centre harborough (Harborough customer services team)"
    )


def test_partner_full_or_silent_receives_no_overflow() -> None:
    """A full, stale or missing partner gets nothing; the caller stays in the local queue."""
    stale = QueueSnapshot("harborough", 0, 0, 3, 3, OPEN - timedelta(minutes=10))
    assert _charnwood(snap("harborough", 4, 60, available=0)) == "queue general"
    assert _charnwood(stale) == "queue general"
    assert _charnwood(None) == "queue general"


def test_resolve_destination_judges_a_later_queue() -> None:
    """A destination reached at the end of a menu is judged the same way as at entry."""
    live = LiveState(queues={"hdc-waste": snap("hdc-waste", 9, 10, available=1)})
    decision = resolve_destination(
        plan=EX,
        tenant="harborough",
        dest=QueueDest(type="queue", queue="waste"),
        live=live,
        toggles=NO_TOGGLES,
        now=OPEN,
    )
    assert describe(decision.destination) == "queue charnwood_assist"


def test_tenant_without_out_of_hours_hangs_up_rather_than_failing() -> None:
    """Even a plan missing out-of-hours (a validation error) yields a destination."""
    plan = compiled(out_of_hours=None)
    decision = decide(Call(NUMBER), plan, UNKNOWN_LIVE_STATE, NO_TOGGLES, CLOSED)
    assert decision.destination.type == "hangup"


DIALLED = st.one_of(
    st.sampled_from(["01632 960001", "+441632960100", "441632960001", "01632960555", "", "anonymous"]),
    st.text(max_size=20),
)
INSTANTS = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2035, 12, 31), timezones=st.timezones()
)
DIGITS = st.none() | st.lists(st.sampled_from(["1", "2", "3", "4", "9", "*", "#", ""]), max_size=8).map(tuple)
SNAPSHOTS = st.builds(
    QueueSnapshot,
    queue=st.sampled_from(["hdc-revenues", "hdc-waste", "cbc-general"]),
    waiting=st.integers(0, 200),
    longest_wait_s=st.floats(0, 10_000),
    logged_in=st.integers(0, 50),
    available=st.integers(0, 50),
    observed_at=st.just(OPEN),
)


@settings(max_examples=300, deadline=None)
@given(dialled=DIALLED, now=INSTANTS, digits=DIGITS, snaps=st.lists(SNAPSHOTS, max_size=3))
def test_decide_is_total_and_deterministic(
    dialled: str, now: datetime, digits: tuple[str, ...] | None, snaps: list[QueueSnapshot]
) -> None:
    """Any dialled string at any instant, keys and live state yield one destination, every time."""
    live = LiveState(queues={s.queue: s for s in snaps}, max_age_s=1e12)
    first = decide(Call(dialled, digits=digits), EX, live, NO_TOGGLES, now)
    second = decide(Call(dialled, digits=digits), EX, live, NO_TOGGLES, now)
    assert first == second
    assert first.destination.type in {"queue", "menu", "payment", "external", "voicemail", "hangup"}
    assert first.reasons
