"""The expected-wait estimate and what a caller may be told about it."""

from __future__ import annotations

from typing import Literal

import pytest

from routing.core.wait import (
    MIN_SAMPLES,
    MIN_SLICE_S,
    HeldPlace,
    WaitClock,
    WaitEstimate,
    WaitInputs,
    WaitStep,
    callbacks_ahead,
    estimate_wait,
    new_caller_inputs,
    offer_due,
    wait_step,
    wait_words,
)

FIVE_MINUTES = [300.0] * 10


def test_no_advisers_logged_in_is_unknown() -> None:
    estimate = estimate_wait(WaitInputs(3, 0, 0, 0, FIVE_MINUTES))
    assert not estimate.known
    assert "no advisers" in estimate.reason


def test_too_few_handle_times_is_unknown() -> None:
    estimate = estimate_wait(WaitInputs(3, 0, 2, 0, [300.0] * (MIN_SAMPLES - 1)))
    assert not estimate.known
    assert "needs" in estimate.reason


def test_callers_ahead_share_the_advisers() -> None:
    """Place 6 with 2 advisers, none free, 5-minute calls: 6 answers ahead at 2 per 5 minutes."""
    estimate = estimate_wait(WaitInputs(6, 0, 2, 0, FIVE_MINUTES))
    assert estimate.expected_s == pytest.approx(900.0)
    assert estimate.upper_s == pytest.approx(900.0)


def test_free_advisers_answer_at_once() -> None:
    assert estimate_wait(WaitInputs(1, 0, 3, 2, FIVE_MINUTES)).expected_s == 0.0


def test_pending_callbacks_count_as_callers_ahead() -> None:
    without = estimate_wait(WaitInputs(2, 0, 1, 0, FIVE_MINUTES))
    with_callbacks = estimate_wait(WaitInputs(2, 3, 1, 0, FIVE_MINUTES))
    assert without.expected_s == pytest.approx(600.0)
    assert with_callbacks.expected_s == pytest.approx(1500.0)


def test_upper_bound_takes_the_slow_calls() -> None:
    times = [100.0] * 7 + [600.0] * 3
    estimate = estimate_wait(WaitInputs(4, 0, 1, 0, times))
    assert estimate.expected_s == pytest.approx(4 * 250.0)
    assert estimate.upper_s is not None
    assert estimate.upper_s > estimate.expected_s


def test_new_caller_joins_behind_everyone() -> None:
    assert new_caller_inputs(4, 1, 2, 0, FIVE_MINUTES) == WaitInputs(5, 1, 2, 0, FIVE_MINUTES)


def test_words_say_minutes_rounded_up() -> None:
    assert wait_words(WaitEstimate(100.0, 130.0), 600) == wait_words(WaitEstimate(1.0, 179.0), 600)
    assert wait_words(WaitEstimate(100.0, 130.0), 600).minutes == 3


def test_words_never_say_an_unbacked_figure() -> None:
    words = wait_words(WaitEstimate(500.0, 700.0), 600)
    assert (words.said, words.minutes) == ("more_than", 10)


def test_words_say_nothing_when_unknown() -> None:
    assert wait_words(WaitEstimate(None, None, "no advisers"), 600).said == "nothing"


def test_offer_above_threshold_only() -> None:
    assert offer_due(WaitEstimate(400.0, 500.0), 300)
    assert not offer_due(WaitEstimate(200.0, 500.0), 300)
    assert not offer_due(WaitEstimate(None, None), 300)
    assert offer_due(WaitEstimate(None, None), 0)


# --- the wait loop's step ----------------------------------------------------------------------

ABOVE = WaitEstimate(900.0, 1200.0)
BELOW = WaitEstimate(60.0, 120.0)
NOW = 10_000


def step(
    event: Literal["entry", "slice", "key"] = "slice",
    *,
    key: str = "",
    clock: WaitClock | None = None,
    estimate: WaitEstimate = ABOVE,
    offer: int | None = 300,
    announce: int | None = 60,
) -> WaitStep:
    return wait_step(
        event=event,
        key=key,
        clock=clock or WaitClock(NOW - 200, NOW + 700, NOW - 60, NOW - 120),
        now=NOW,
        estimate=estimate,
        offer_above_s=offer,
        offer_key="1",
        offer_every_s=120,
        announce_every_s=announce,
    )


def test_entry_announces_and_offers_above_the_threshold() -> None:
    s = step("entry", clock=WaitClock(NOW, NOW + 900))
    assert (s.timed_out, s.announce, s.offer, s.slice_s) == (False, True, True, 60)


def test_entry_below_the_threshold_is_not_offered() -> None:
    assert not step("entry", clock=WaitClock(NOW, NOW + 900), estimate=BELOW).offer


def test_due_again_after_the_intervals() -> None:
    s = step()
    assert (s.announce, s.offer) == (True, True)
    s = step(clock=WaitClock(NOW - 200, NOW + 700, NOW - 30, NOW - 30))
    assert (s.announce, s.offer) == (False, False)


def test_the_offer_key_offers_whatever_the_estimate_and_announces_nothing() -> None:
    s = step("key", key="1", estimate=BELOW)
    assert (s.announce, s.offer) == (False, True)
    assert not step("key", key="5").offer


def test_no_callback_no_offer_and_no_announcements_no_announce() -> None:
    s = step(offer=None, announce=None)
    assert (s.announce, s.offer, s.slice_s) == (False, False, 700)


def test_the_deadline_ends_the_wait_and_bounds_the_slice() -> None:
    assert step(clock=WaitClock(NOW - 900, NOW)).timed_out
    assert step(clock=WaitClock(NOW - 890, NOW + 10)).slice_s == 10
    assert step(clock=WaitClock(NOW - 899, NOW + 1)).slice_s == MIN_SLICE_S


def test_a_callback_being_dialled_is_not_counted_again_as_a_callback_ahead() -> None:
    """Its adviser leg is in the queue (in the caller's position, in the waiting count) or with an
    adviser: only the callbacks still pending that joined earlier are added."""
    held = [
        HeldPlace(100.0, dialling=True),
        HeldPlace(200.0, dialling=False),
        HeldPlace(400.0, dialling=False),
    ]
    assert callbacks_ahead(held, 300.0) == 1
    assert callbacks_ahead(held, 100.0) == 0  # joined at the same time: not ahead
    assert callbacks_ahead(held, 500.0) == 2
    assert callbacks_ahead([], 500.0) == 0


def test_a_new_caller_behind_a_callback_being_dialled_counts_it_once() -> None:
    """One adviser, 5-minute calls. Waiting: a callback's adviser leg and a live caller; a callback
    pending behind them. A new caller is fourth: answered at the fourth call that ends, 20 minutes,
    not 25."""
    held = [HeldPlace(100.0, dialling=True), HeldPlace(250.0, dialling=False)]
    inputs = new_caller_inputs(2, callbacks_ahead(held, 300.0), 1, 0, FIVE_MINUTES)
    assert estimate_wait(inputs).expected_s == pytest.approx(1200.0)
