"""The decision cache answers exactly what ``decide()`` answers, at any instant, for any input.

The property tests play calls at random instants, mostly moving forward in small steps (so the
cache answers from its entries) and now and then back, across the boundaries a decision depends
on: whole seconds (a closed call's trace names the second), toggles expiring, snapshots turning
stale, opening hours, a topic announcement's window, a closure and a change of the clocks."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from routing.core.decide import Call, decide
from routing.core.decision_cache import DecisionCache, next_second, valid_until, whole_seconds
from routing.core.live import NO_TOGGLES, UNKNOWN_LIVE_STATE, LiveState, QueueSnapshot, Toggle, Toggles
from tests.core.plans import compiled, london
from tests.core.test_decide import EX

# Instants where the example plan's answer changes: 17:30 closing, a closure's start, the end
# of a topic announcement's window, the clocks going back (2026-10-25) and forward (2027-03-28).
EDGES = [
    london("2026-11-24 17:29:58"),
    london("2026-12-24 11:59:59"),
    london("2026-12-18 23:59:59"),
    datetime(2026, 10, 25, 0, 59, 58, tzinfo=UTC),
    datetime(2027, 3, 28, 0, 59, 58, tzinfo=UTC),
    london("2026-11-24 10:00"),
]
# the councils' numbers (in several forms) more often than others; keys that reach queues
# (whose overflow reads live state) more often than others
DIALLED = ["01632 960001", "01632960001", "+441632960100", "01632 960100", "01632 960999", "999", "x"]
DIALLED += DIALLED[:4]
DIGITS: list[tuple[str, ...] | None] = [None, (), ("1",), ("2",), ("4", "1"), ("9",), ("",), ("1",), ("2",)]
QUEUES = ["hdc-revenues", "hdc-waste", "cbc-general", "cbc-assist"]


def near(base: datetime, low_ms: int, high_ms: int) -> st.SearchStrategy[datetime]:
    """An instant ``low_ms``..``high_ms`` from ``base`` on a 50 ms grid, or a microsecond off it
    (calls are played on the same grid: boundaries fall right between, on and after calls)."""
    return st.tuples(st.integers(low_ms // 50, high_ms // 50), st.sampled_from([-1, 0, 1])).map(
        lambda t: base + timedelta(milliseconds=t[0] * 50, microseconds=t[1])
    )


def snapshots(base: datetime) -> st.SearchStrategy[dict[str, QueueSnapshot]]:
    one = st.builds(
        QueueSnapshot,
        queue=st.sampled_from(QUEUES),
        waiting=st.integers(0, 12),
        longest_wait_s=st.floats(0, 900),
        logged_in=st.integers(0, 6),
        available=st.integers(0, 6),
        observed_at=st.one_of(near(base, -3_000, 2_000), near(base, -32_000, -28_000)),
    )
    return st.dictionaries(st.sampled_from(QUEUES), one, max_size=4)


def live_states(base: datetime) -> st.SearchStrategy[LiveState]:
    return st.builds(
        LiveState,
        queues=snapshots(base),
        partners=st.dictionaries(
            st.sampled_from(["harborough", "charnwood"]), one_snapshot(base), max_size=2
        ),
        overflowing=st.frozensets(st.sampled_from(["harborough/revenues", "charnwood/general"])),
        max_age_s=st.sampled_from([0.0, 0.5, 1.0, 2.5, 30.0]),
    )


def one_snapshot(base: datetime) -> st.SearchStrategy[QueueSnapshot]:
    return st.builds(
        QueueSnapshot,
        queue=st.just("partner"),
        waiting=st.integers(0, 5),
        longest_wait_s=st.floats(0, 600),
        logged_in=st.integers(0, 5),
        available=st.integers(0, 5),
        observed_at=near(base, -3_000, 1_000),
    )


def toggle_sets(base: datetime) -> st.SearchStrategy[Toggles]:
    toggle = st.builds(
        Toggle,
        reason=st.just("flood"),
        by=st.just("sam"),
        expires_at=near(base, -1_000, 3_000),
        service=st.sampled_from([None, "revenues", "general", "bin-collection-change"]),
    )
    per_tenant = st.dictionaries(st.sampled_from(["harborough", "charnwood"]), toggle, max_size=2)
    return st.builds(Toggles, emergency=per_tenant, closure=per_tenant, announcement=per_tenant)


Calls = list[tuple[int, bool, int, int, int, int]]


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[LiveState], list[Toggles], Calls, datetime]:
    base = draw(st.sampled_from(EDGES))
    lives = [*draw(st.lists(live_states(base), min_size=1, max_size=2)), UNKNOWN_LIVE_STATE]
    toggles = [*draw(st.lists(toggle_sets(base), min_size=1, max_size=2)), NO_TOGGLES]
    # (step in microseconds, whether the inputs change, then which number, digits, live state
    # and toggles): mostly the same inputs again a little later, as the cache sees them
    step = st.sampled_from([0, 1, 50_000, 50_000, 100_000, 100_000, 150_000, 450_000, 999_999, -1, -250_000])
    calls = draw(
        st.lists(
            st.tuples(
                step,
                st.sampled_from([False, False, False, True]),
                st.integers(0, len(DIALLED) - 1),
                st.integers(0, len(DIGITS) - 1),
                st.integers(0, len(lives) - 1),
                st.integers(0, len(toggles) - 1),
            ),
            min_size=10,
            max_size=60,
        )
    )
    return lives, toggles, calls, base


@settings(max_examples=400, deadline=None)
@given(scenarios(), st.sampled_from(["London", "UTC"]))
def test_the_cache_answers_what_decide_answers(
    scenario: tuple[list[LiveState], list[Toggles], Calls, datetime], zone: str
) -> None:
    lives, toggles, calls, base = scenario
    cache = DecisionCache()
    now = base if zone == "London" else base.astimezone(UTC)
    number, digits, live, toggle = calls[0][2:]
    for step, change, *drawn in calls:
        now += timedelta(microseconds=step)
        if change:
            number, digits, live, toggle = drawn
        call = Call(DIALLED[number], caller="01632960123", digits=DIGITS[digits])
        assert cache.decide(call, EX, lives[live], toggles[toggle], now) == decide(
            call, EX, lives[live], toggles[toggle], now
        )


def test_a_repeated_call_within_the_second_is_answered_from_the_cache() -> None:
    cache = DecisionCache()
    at = london("2026-11-24 10:00:00.250")
    call = Call("01632 960001")
    first = cache.decide(call, EX, UNKNOWN_LIVE_STATE, NO_TOGGLES, at)
    again = cache.decide(call, EX, UNKNOWN_LIVE_STATE, NO_TOGGLES, at + timedelta(milliseconds=700))
    assert again is first
    assert (cache.hits, cache.misses) == (1, 1)
    cache.decide(
        call, EX, UNKNOWN_LIVE_STATE, NO_TOGGLES, at + timedelta(milliseconds=750)
    )  # the next second
    cache.decide(
        call, EX, UNKNOWN_LIVE_STATE, NO_TOGGLES, at - timedelta(microseconds=1)
    )  # the clock set back
    cache.decide(call, EX, UNKNOWN_LIVE_STATE, Toggles(), at + timedelta(milliseconds=760))  # other toggles
    assert (cache.hits, cache.misses) == (1, 4)


def test_the_window_ends_when_a_toggle_expires_or_a_snapshot_turns_stale() -> None:
    at = datetime(2026, 11, 24, 10, 0, 0, 100_000, tzinfo=UTC)
    assert (
        valid_until(UNKNOWN_LIVE_STATE, NO_TOGGLES, at)
        == next_second(at)
        == at.replace(microsecond=0, second=1)
    )
    soon = Toggle("flood", "sam", at + timedelta(milliseconds=300))
    gone = Toggle("flood", "sam", at - timedelta(milliseconds=1))
    assert (
        valid_until(UNKNOWN_LIVE_STATE, Toggles(emergency={"a": soon}, closure={"b": gone}), at)
        == soon.expires_at
    )
    snap = QueueSnapshot("q", 1, 5.0, 2, 1, at - timedelta(seconds=29, milliseconds=500))
    live = LiveState(queues={"q": snap}, max_age_s=30)
    assert valid_until(live, NO_TOGGLES, at) == snap.observed_at + timedelta(seconds=30, milliseconds=-1)
    stale = LiveState(queues={"q": snap}, max_age_s=29)
    assert valid_until(stale, NO_TOGGLES, at) == next_second(at)
    endless = LiveState(queues={"q": snap}, max_age_s=float("inf"))
    assert valid_until(endless, NO_TOGGLES, at) == next_second(at)


def test_a_plan_with_instants_between_seconds_is_never_cached() -> None:
    half = compiled(
        closures=[{"from": "2026-12-24 12:00:00.5", "until": "2026-12-24 17:30", "reason": "early"}]
    )
    assert whole_seconds(EX)
    assert not whole_seconds(half)
    cache = DecisionCache()
    for ms in (0, 250, 499, 500, 501, 999):
        at = london("2026-12-24 12:00") + timedelta(milliseconds=ms)
        call = Call("01632 960001")
        assert cache.decide(call, half, UNKNOWN_LIVE_STATE, NO_TOGGLES, at) == decide(
            call, half, UNKNOWN_LIVE_STATE, NO_TOGGLES, at
        )
    assert (len(cache), cache.hits) == (0, 0)


def test_the_cache_holds_a_bounded_number_of_dialled_strings() -> None:
    cache = DecisionCache(max_entries=8)
    at = london("2026-11-24 10:00")
    for n in range(100):
        cache.decide(Call(f"0163296{n:04d}"), EX, UNKNOWN_LIVE_STATE, NO_TOGGLES, at)
        assert len(cache) <= 8


AROUND_US = [-600_000, -2_000, -1_000, -999, -1, 0, 1, 999, 1_000, 2_000, 400_000]


def play_around(
    boundary: datetime, live: LiveState, toggles: Toggles, digits: tuple[str, ...] | None
) -> None:
    """Calls on one cache a little before, on and after ``boundary``: each answer as decide's."""
    cache = DecisionCache()
    call = Call("01632 960001", digits=digits)
    for offset in AROUND_US:
        at = boundary + timedelta(microseconds=offset)
        assert cache.decide(call, EX, live, toggles, at) == decide(call, EX, live, toggles, at), offset


def test_around_a_snapshot_turning_stale() -> None:
    for observed in (london("2026-11-24 10:00:00.200"), london("2026-11-24 09:59:59.999999")):
        for max_age in (0.5, 1.0, 30.0):
            snapshot = QueueSnapshot("hdc-revenues", 6, 400.0, 3, 0, observed)
            live = LiveState(queues={"hdc-revenues": snapshot}, max_age_s=max_age)
            play_around(observed + timedelta(seconds=max_age), live, NO_TOGGLES, ("1",))


def test_around_a_partner_snapshot_turning_stale() -> None:
    observed = london("2026-11-24 10:00:00.300")
    snapshot = QueueSnapshot("partner", 0, 0.0, 3, 3, observed)
    queue = QueueSnapshot("cbc-general", 9, 900.0, 3, 0, observed + timedelta(seconds=5))
    live = LiveState(queues={"cbc-general": queue}, partners={"harborough": snapshot}, max_age_s=2.0)
    cache, call = DecisionCache(), Call("01632 960100", digits=("1",))
    for offset in AROUND_US:
        at = observed + timedelta(seconds=2, microseconds=offset)
        assert cache.decide(call, EX, live, NO_TOGGLES, at) == decide(call, EX, live, NO_TOGGLES, at), offset


def test_around_a_toggle_expiring() -> None:
    expires = london("2026-11-24 10:00:00.300")
    for toggles in (
        Toggles(emergency={"harborough": Toggle("flood", "sam", expires)}),
        Toggles(closure={"harborough": Toggle("flood", "sam", expires)}),
        Toggles(announcement={"harborough": Toggle("flood", "sam", expires)}),
        Toggles(emergency={"harborough": Toggle("flood", "sam", expires, service="revenues")}),
    ):
        play_around(expires, UNKNOWN_LIVE_STATE, toggles, ("1",))
        play_around(expires, UNKNOWN_LIVE_STATE, toggles, None)


def test_around_the_calendar_changing() -> None:
    for edge in (
        london("2026-11-24 17:30"),  # closing time
        london("2026-11-24 18:00:01"),  # a closed call's trace names the second
        london("2026-12-24 12:00"),  # a closure
        london("2026-12-19 00:00"),  # a topic announcement's window ends
        datetime(2026, 10, 25, 1, 0, tzinfo=UTC),  # the clocks go back
        datetime(2027, 3, 28, 1, 0, tzinfo=UTC),  # the clocks go forward
    ):
        play_around(edge, UNKNOWN_LIVE_STATE, NO_TOGGLES, None)
        play_around(edge.astimezone(UTC), UNKNOWN_LIVE_STATE, NO_TOGGLES, None)


def test_a_replaced_plan_is_not_kept_alive_by_the_cache() -> None:
    """``serve`` frees a replaced plan once nothing holds it (``callrouter.service.retire``)."""
    old, new = compiled(), compiled()
    cache, at = DecisionCache(), london("2026-11-24 10:00")
    cache.decide(Call("01632 960001"), old, UNKNOWN_LIVE_STATE, NO_TOGGLES, at)
    held = sys.getrefcount(old)
    del cache
    assert sys.getrefcount(old) == held
    cache = DecisionCache()
    first = cache.decide(Call("01632 960001"), old, UNKNOWN_LIVE_STATE, NO_TOGGLES, at)
    assert cache.decide(Call("01632 960001"), new, UNKNOWN_LIVE_STATE, NO_TOGGLES, at) is not first
    assert (cache.hits, cache.misses) == (0, 2)
