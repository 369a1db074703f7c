"""Which callbacks to dial now: one order for callbacks and live callers, hours, toggles."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from ivr.controller import PlanHolder
from routing.core.callback_order import (
    Next,
    QueuedCallback,
    QueueView,
    Verdict,
    after_attempt,
    decide_callbacks,
    dial_outcome,
    next_opening,
)
from routing.core.live import NO_TOGGLES, Toggle, Toggles
from routing.core.plan import CallbackPolicy
from routing.core.schedule import Calendar
from tests.controller.conftest import EXAMPLE

LONDON = ZoneInfo("Europe/London")
PLAN = PlanHolder.load(EXAMPLE).current.plan
CALENDAR = Calendar(PLAN.tenants["harborough"])
TUESDAY_10AM = datetime(2026, 11, 24, 10, 0, tzinfo=LONDON)
NOW = TUESDAY_10AM.timestamp()
POLICY = CallbackPolicy()


def cb(ident: str, joined_ago: float, due_in: float = -1, state: str = "pending") -> QueuedCallback:
    return QueuedCallback(ident, NOW - joined_ago, NOW + due_in, state)  # type: ignore[arg-type]


def view(
    callbacks: list[QueuedCallback],
    live_ago: list[float] = [],  # noqa: B006 (never changed)
    logged_in: int | None = 3,
    *,
    policy: CallbackPolicy = POLICY,
    overflowing: bool = False,
) -> QueueView:
    return QueueView(
        "harborough", "revenues", policy, callbacks, [NOW - a for a in live_ago], logged_in, overflowing
    )


def decide(v: QueueView, toggles: Toggles = NO_TOGGLES, now: datetime = TUESDAY_10AM) -> Verdict:
    return decide_callbacks(v, CALENDAR, toggles, now)


def test_a_callback_ahead_of_every_live_caller_enters_the_queue_at_the_head() -> None:
    verdict = decide(view([cb("a", 600)], live_ago=[300, 100]))
    assert (verdict.dial, verdict.positions) == (("a",), (1,))


def test_a_live_caller_who_joined_earlier_goes_first() -> None:
    verdict = decide(view([cb("a", 300)], live_ago=[600]))
    assert verdict.dial == ()
    assert "a live caller who joined earlier is still waiting" in verdict.why


def test_callbacks_enter_in_join_order_behind_those_already_in_the_queue() -> None:
    """b (joined 500 s ago) is in the queue; a (900 s ago, back from a retry) goes ahead of it,
    c (300 s ago) behind it; the live caller of 200 s ago stops d (100 s ago)."""
    callbacks = [cb("b", 500, state="dialling"), cb("a", 900), cb("c", 300), cb("d", 100)]
    verdict = decide(view(callbacks, live_ago=[200], logged_in=4))
    assert (verdict.dial, verdict.positions) == (("a", "c"), (1, 3))


def test_no_more_callbacks_in_the_queue_than_advisers_logged_in() -> None:
    busy = [cb("x", 900, state="dialling"), cb("a", 600), cb("b", 500)]
    assert decide(view(busy, logged_in=1)).dial == ()
    assert decide(view(busy, logged_in=2)).dial == ("a",)
    assert decide(view(busy, logged_in=3)).dial == ("a", "b")
    assert decide(view([cb("a", 600)], logged_in=0)).held == "no adviser logged in"


def test_a_callback_not_yet_due_does_not_block_the_next_one() -> None:
    """The first in the order waits for its retry delay; the next due callback goes."""
    callbacks = [cb("retrying", 900, due_in=120), cb("a", 600)]
    assert decide(view(callbacks)).dial == ("a",)


def test_live_state_unknown_overflow_and_emergency_hold_every_callback() -> None:
    callbacks = [cb("a", 600)]
    assert decide_callbacks(view(callbacks, logged_in=None), CALENDAR, NO_TOGGLES, TUESDAY_10AM).held == (
        "live state unknown"
    )
    assert (
        decide_callbacks(view(callbacks, overflowing=True), CALENDAR, NO_TOGGLES, TUESDAY_10AM).held
        == "overflow"
    )
    until = TUESDAY_10AM + timedelta(hours=1)
    for service in (None, "revenues"):
        toggles = Toggles(emergency={"harborough": Toggle("flood", "sam", until, service)})
        verdict = decide_callbacks(view(callbacks), CALENDAR, toggles, TUESDAY_10AM)
        assert (verdict.held, verdict.dial) == ("emergency", ())
    other_queue = Toggles(emergency={"harborough": Toggle("flood", "sam", until, "waste")})
    assert decide_callbacks(view(callbacks), CALENDAR, other_queue, TUESDAY_10AM).dial == ("a",)
    expired = Toggles(emergency={"harborough": Toggle("flood", "sam", TUESDAY_10AM, None)})
    assert decide_callbacks(view(callbacks), CALENDAR, expired, TUESDAY_10AM).dial == ("a",)
    closed = Toggles(closure={"harborough": Toggle("fire drill", "sam", until, None)})
    verdict = decide_callbacks(view(callbacks), CALENDAR, closed, TUESDAY_10AM)
    assert (verdict.held, verdict.reschedule, verdict.cancel) == ("closure toggle", (), ())


def test_at_closing_next_morning_moves_pending_callbacks_to_the_next_opening() -> None:
    """Tuesday 17:30 closes; Wednesday 08:30 opens. Being-dialled callbacks are left to finish."""
    evening = datetime(2026, 11, 24, 17, 30, tzinfo=LONDON)
    stamp = evening.timestamp()
    callbacks = [
        QueuedCallback("a", stamp - 900, stamp - 10, "pending"),
        QueuedCallback("b", stamp - 600, stamp - 10, "dialling"),
    ]
    verdict = decide_callbacks(view(callbacks), CALENDAR, NO_TOGGLES, evening)
    wednesday = datetime(2026, 11, 25, 8, 30, tzinfo=LONDON).timestamp()
    assert verdict.reschedule == (("a", wednesday),)
    assert verdict.dial == ()
    assert verdict.cancel == ()
    again = [QueuedCallback("a", stamp - 900, wednesday, "pending")]
    assert decide_callbacks(view(again), CALENDAR, NO_TOGGLES, evening).reschedule == ()


def test_at_closing_cancel_ends_pending_callbacks() -> None:
    evening = datetime(2026, 11, 24, 17, 31, tzinfo=LONDON)
    stamp = evening.timestamp()
    callbacks = [QueuedCallback("a", stamp - 900, stamp + 600, "pending")]
    verdict = decide_callbacks(
        view(callbacks, policy=CallbackPolicy(at_closing="cancel")), CALENDAR, NO_TOGGLES, evening
    )
    assert verdict.cancel == ("a",)


@pytest.mark.parametrize(
    ("now", "opening"),
    [
        (datetime(2026, 11, 27, 18, 0), datetime(2026, 11, 28, 9, 0)),  # Friday -> Saturday opening
        (datetime(2026, 11, 28, 12, 0), datetime(2026, 11, 30, 8, 30)),  # Saturday noon -> Monday
        (datetime(2026, 12, 24, 12, 0), datetime(2026, 12, 29, 8, 30)),  # early close, bank holidays
    ],
)
def test_next_opening_follows_the_calendar(now: datetime, opening: datetime) -> None:
    found = next_opening(CALENDAR, now.replace(tzinfo=LONDON))
    assert found is not None
    assert found == opening.replace(tzinfo=LONDON)


@pytest.mark.parametrize(
    ("status", "answered", "outcome"),
    [
        ("ANSWER", "95", "answered"),
        ("ANSWER", "10", "answered"),
        ("ANSWER", "4", "short-answer"),
        ("ANSWER", "", "short-answer"),
        ("NOANSWER", "", "no-answer"),
        ("BUSY", "", "busy"),
        ("CONGESTION", "", "failed"),
        ("CHANUNAVAIL", "", "failed"),
    ],
)
def test_dial_outcome_from_dialstatus_and_answeredtime(status: str, answered: str, outcome: str) -> None:
    assert dial_outcome(status, answered) == outcome


@pytest.mark.parametrize(
    ("answered", "talk_s", "outcome"),
    [
        ("40", 5.0, "short-answer"),  # 35 s of ringing, then a 5 s voicemail greeting
        ("62", 60.0, "answered"),  # 2 s of ringing, then 60 s talked
        ("3", 10.0, "answered"),
        ("95", 9.9, "short-answer"),
    ],
)
def test_dial_outcome_times_the_talk_not_answeredtime_when_the_answer_was_seen(
    answered: str, talk_s: float, outcome: str
) -> None:
    assert dial_outcome("ANSWER", answered, talk_s) == outcome
    assert dial_outcome("BUSY", "", talk_s) == "busy"


def test_after_attempt_retries_then_fails_and_never_counts_an_undialled_attempt() -> None:
    policy = CallbackPolicy(max_attempts=3, retry_delay_s=300)
    assert after_attempt("answered", 0, policy, NOW) == Next("done", NOW, "answered", 1)
    assert after_attempt("no-answer", 0, policy, NOW) == Next("pending", NOW + 300, "", 1)
    assert after_attempt("short-answer", 1, policy, NOW) == Next("pending", NOW + 300, "", 2)
    assert after_attempt("busy", 2, policy, NOW) == Next("failed", NOW, "failed", 3)
    assert after_attempt("no-adviser", 2, policy, NOW) == Next("pending", NOW, "", 2)
    assert after_attempt("interrupted", 1, policy, NOW) == Next("pending", NOW, "", 1)
