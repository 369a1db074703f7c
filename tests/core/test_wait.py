"""The expected-wait estimate and what a caller may be told about it."""

from __future__ import annotations

import pytest

from routing.core.wait import (
    MIN_SAMPLES,
    WaitEstimate,
    WaitInputs,
    estimate_wait,
    new_caller_inputs,
    offer_due,
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
