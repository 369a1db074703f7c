"""The expected wait of a queued caller, and what may be said about it (pure: no I/O, no clock).

The estimate (docs/callbacks.md, "Expected wait"): a caller at place ``k`` in the queue's one
order (live callers and pending callbacks that joined earlier both count, each once:
:func:`callbacks_ahead`) is answered once
``k - available`` of the calls ahead have been answered, counting the advisers free now.
Advisers finish calls at ``logged_in / handle`` calls a second, ``handle`` being the mean of the
queue's recent handle times (AMI ``AgentComplete`` TalkTime, kept per queue by the AMI writer).
So the expected wait is ``(k - available) * handle / logged_in``; its upper bound takes the
slowest recent handle times instead of the mean (the ``UPPER_QUANTILE`` of the samples).

Nothing is estimated (``unknown``) without advisers logged in or with fewer than
``MIN_SAMPLES`` handle times: a figure said to a caller must be one the estimate can back.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

MIN_SAMPLES = 5
"""Recent handle times needed before any figure is given."""
UPPER_QUANTILE = 0.8
"""The handle time behind the upper bound: the slowest fifth of recent calls."""


@dataclass(frozen=True, slots=True)
class WaitInputs:
    """What the estimate reads: the caller's place (1 = next), pending callbacks that joined
    before the caller, advisers logged in and free now, recent handle times (seconds)."""

    position: int
    callbacks_ahead: int
    logged_in: int
    available: int
    handle_times_s: Sequence[float]


@dataclass(frozen=True, slots=True)
class WaitEstimate:
    """``expected_s`` and ``upper_s`` (None: ``unknown``, with the ``reason``)."""

    expected_s: float | None
    upper_s: float | None
    reason: str = ""

    @property
    def known(self) -> bool:
        return self.expected_s is not None


def _quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def estimate_wait(inputs: WaitInputs) -> WaitEstimate:
    """The expected wait of the caller described by ``inputs`` (see the module doc)."""
    if inputs.logged_in <= 0:
        return WaitEstimate(None, None, "no advisers logged in")
    samples = [t for t in inputs.handle_times_s if t > 0]
    if len(samples) < MIN_SAMPLES:
        return WaitEstimate(None, None, f"{len(samples)} recent handle times (needs {MIN_SAMPLES})")
    place = max(1, inputs.position) + max(0, inputs.callbacks_ahead)
    ahead = max(0, place - max(0, inputs.available))
    handle = sum(samples) / len(samples)
    slow = max(handle, _quantile(samples, UPPER_QUANTILE))
    return WaitEstimate(ahead * handle / inputs.logged_in, ahead * slow / inputs.logged_in)


@dataclass(frozen=True, slots=True)
class HeldPlace:
    """A callback holding its place in a queue's order: its call's join time, and whether it is
    being dialled (its adviser leg sent into the queue)."""

    joined_at: float
    dialling: bool


def callbacks_ahead(callbacks: Iterable[HeldPlace], joined_at: float) -> int:
    """How many callbacks count as callers ahead of one who joined at ``joined_at``, on top of
    their place among the callers in the queue: those that joined earlier and are not being
    dialled. A callback being dialled is not counted: its adviser leg (``Local/...;2``) is a caller
    in the queue, so it is in the caller's ``QUEUEPOSITION`` and in the queue's waiting count
    already, and once an adviser answers it is not waiting at all. (For the instant between the
    ``Originate`` and its leg joining the queue it is counted nowhere.)"""
    return sum(1 for c in callbacks if c.joined_at < joined_at and not c.dialling)


def new_caller_inputs(
    waiting: int, callbacks: int, logged_in: int, available: int, handle_times_s: Sequence[float]
) -> WaitInputs:
    """The inputs for a caller about to join behind ``waiting`` callers and ``callbacks``."""
    return WaitInputs(waiting + 1, callbacks, logged_in, available, handle_times_s)


Said = Literal["minutes", "more_than", "nothing"]


@dataclass(frozen=True, slots=True)
class WaitWords:
    """What a caller is told: ``minutes`` (about ``minutes`` minutes), ``more_than`` (more
    than ``minutes`` minutes), or ``nothing`` about the wait."""

    said: Said
    minutes: int = 0


def wait_words(estimate: WaitEstimate, max_figure_s: int) -> WaitWords:
    """Never a figure the estimate cannot back: when even the upper bound is above
    ``max_figure_s`` the caller hears "more than N minutes" (N = max_figure_s in whole
    minutes); a figure is the upper bound rounded up to a minute; nothing when unknown."""
    if estimate.upper_s is None:
        return WaitWords("nothing")
    cap = max(1, max_figure_s // 60)
    if estimate.upper_s > max_figure_s:
        return WaitWords("more_than", cap)
    return WaitWords("minutes", min(cap, max(1, math.ceil(estimate.upper_s / 60))))


def offer_due(estimate: WaitEstimate, offer_above_s: int) -> bool:
    """Offer the callback when the expected wait is above the threshold; an unknown wait is
    not a reason to offer (``offer_above_s`` 0 offers always, known or not)."""
    if offer_above_s <= 0:
        return True
    return estimate.expected_s is not None and estimate.expected_s > offer_above_s


# --- the wait loop: what to do between two Queue() slices --------------------------------


@dataclass(frozen=True, slots=True)
class WaitClock:
    """A waiting caller's times (whole epoch seconds): first joined the queue, when the plan's
    queue timeout ends the wait, last announcement and last offer (0: none yet)."""

    joined: int
    deadline: int
    announced: int = 0
    offered: int = 0


@dataclass(frozen=True, slots=True)
class WaitStep:
    """What the controller does now: ``timed_out`` (the queue's timeout passed: the after-queue
    route, as QUEUESTATUS=TIMEOUT), else ``announce`` and/or ``offer``, then rejoin for
    ``slice_s`` seconds."""

    timed_out: bool
    announce: bool
    offer: bool
    slice_s: int


MIN_SLICE_S = 5
"""The shortest Queue() slice: a caller is never taken in and out of the queue faster."""


def wait_step(
    *,
    event: Literal["entry", "slice", "key"],
    key: str,
    clock: WaitClock,
    now: int,
    estimate: WaitEstimate,
    offer_above_s: int | None,
    offer_key: str,
    offer_every_s: int | None,
    announce_every_s: int | None,
) -> WaitStep:
    """The step at ``event`` (``entry``: before the first slice; ``slice``: a slice ended;
    ``key``: the caller pressed ``key`` while waiting). ``offer_above_s`` None: the queue has no
    callback; ``announce_every_s`` None: no announcements.

    The callback is offered at entry when the estimate is above ``offer_above_s``, again every
    ``offer_every_s`` while it stays above, and at once when the caller presses ``offer_key``.
    Announcements come at entry and every ``announce_every_s``. Slices are as long as the next
    thing due (never past the deadline, never shorter than :data:`MIN_SLICE_S`)."""
    remaining = clock.deadline - now
    if remaining <= 0 and event != "key":
        return WaitStep(timed_out=True, announce=False, offer=False, slice_s=0)
    first = event == "entry"
    announce = announce_every_s is not None and (first or now - clock.announced >= announce_every_s)
    offer = False
    if offer_above_s is not None:
        if event == "key":
            offer = key == offer_key
        elif offer_due(estimate, offer_above_s):
            offer = first or (offer_every_s is not None and now - clock.offered >= offer_every_s)
    if event == "key":
        announce = False  # a key asks for the offer, not for the announcement again
    intervals = [i for i in (announce_every_s, offer_every_s if offer_above_s is not None else None) if i]
    slice_s = min([max(remaining, 0), *intervals]) if intervals else max(remaining, 0)
    return WaitStep(False, announce, offer, max(MIN_SLICE_S, slice_s))
