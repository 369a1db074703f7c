"""Which queued callbacks to dial now (pure: time and live state passed in, no I/O).

One queue has one order: live callers in Asterisk's queue (scored by the time they joined) and
callbacks (scored by the time their call joined: the place the caller kept). A callback is dialled
when it reaches the front of that order: no live caller who joined earlier is still waiting.
Dialling puts the callback's adviser leg into Asterisk's queue at the callback's place (``Queue()``
position: ahead of every live caller, behind the callbacks already there that joined earlier), where
app_queue gives it the next adviser who frees up, as it would a caller at the head of the queue.

Why not wait for a free adviser first: app_queue hands an adviser who frees up to the head of
the queue at once, so while live callers wait no adviser is ever seen free, and a callback that
waited for one would be passed by every live caller who joined after it. So a callback enters the
queue when it is at the front, and at most as many callbacks are in the queue at once as advisers
are logged in (more would only wait there longer).

Rules, first match wins, for one queue at an instant ``now``:

1. **Closed** by the tenant's calendar (weekly hours, bank holiday, dated closure): nothing is
   dialled; every pending callback is handled by the queue's ``at_closing``: ``next_morning``
   moves its next attempt to the next opening instant (it keeps its place), ``cancel`` ends it
   with outcome ``cancelled_at_closing``. A callback being dialled is left to finish.
2. **Held** (nothing dialled, nothing changed): a supervisor's closure toggle (it ends by
   itself; the callbacks wait for it rather than be treated as at closing time), an emergency
   toggle on the tenant or on this queue (every adviser is on the emergency; the plan's
   emergency cover is for new calls, and a callback is not a new call), the queue's peak
   overflow in its overflowing state (new callers are being sent elsewhere because the advisers
   cannot keep up; an adviser's ring to a caller who may not answer costs up to ``ring_s`` at the
   worst moment; the callbacks keep their place and go as soon as it ends), live state unknown
   (stale or missing: never dial blind), or no adviser logged in to the queue.
3. **Open**: callbacks whose ``next_at`` has come (``initial_delay_s`` after the request,
   ``retry_delay_s`` after a failed attempt) and that no live caller still waiting joined before
   are dialled in join order, while fewer callbacks than advisers logged in are in the queue.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from routing.core.callback import CallbackState
from routing.core.live import Toggles
from routing.core.plan import CallbackPolicy
from routing.core.schedule import Calendar, timeline

LOOKAHEAD_DAYS = 15  # a closure longer than two weeks leaves callbacks pending, not rescheduled


@dataclass(frozen=True, slots=True)
class QueuedCallback:
    """One callback as the decision sees it."""

    callback_id: str
    joined_at: float  # its place in the order (epoch seconds)
    next_at: float  # not dialled before this (epoch seconds)
    state: CallbackState  # pending or dialling (ended callbacks have left the order)


@dataclass(frozen=True, slots=True)
class QueueView:
    """A queue with callbacks, at one instant. ``logged_in`` (advisers logged in to the queue) is
    ``None`` when live state is unknown (stale or missing)."""

    tenant_id: str
    queue: str  # the plan's queue name
    policy: CallbackPolicy
    callbacks: Sequence[QueuedCallback]
    live_joins: Sequence[float]  # join times of the live callers waiting
    logged_in: int | None
    overflowing: bool = False


Held = Literal["closure toggle", "emergency", "overflow", "live state unknown", "no adviser logged in"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to do now: callbacks to dial (in order) with the queue position each enters at,
    callbacks to move to a later time (id, epoch seconds), callbacks to cancel, and the reason
    nothing is dialled when one applies."""

    dial: tuple[str, ...] = ()
    positions: tuple[int, ...] = ()
    reschedule: tuple[tuple[str, float], ...] = ()
    cancel: tuple[str, ...] = ()
    held: Held | None = None
    why: list[str] = field(default_factory=list)


def next_opening(calendar: Calendar, now: datetime) -> datetime | None:
    """The first instant after ``now`` when the tenant opens (within two weeks), or ``None``."""
    start = calendar.wall_clock(now).date()
    for transition in timeline(calendar, start, start + timedelta(days=LOOKAHEAD_DAYS)):
        if transition.state.open and transition.at > now:
            return transition.at
    return None


def _toggle_on(
    toggles: Toggles, kind: Literal["emergency", "closure"], tenant: str, queue: str, now: datetime
) -> bool:
    toggle = getattr(toggles, kind).get(tenant)
    return toggle is not None and toggle.service in (None, queue) and toggle.active(now)


def _at_closing(view: QueueView, calendar: Calendar, now: datetime) -> Verdict:
    pending = [c for c in view.callbacks if c.state == "pending"]
    cause = calendar.state_at(now).cause
    if view.policy.at_closing == "cancel":
        return Verdict(cancel=tuple(c.callback_id for c in pending), why=[cause, "at closing: cancel"])
    opening = next_opening(calendar, now)
    if opening is None:
        return Verdict(why=[cause, "no opening within two weeks: left pending"])
    at = opening.timestamp()
    moved = tuple((c.callback_id, at) for c in pending if c.next_at < at)
    return Verdict(reschedule=moved, why=[cause, f"at closing: next opening {opening.isoformat()}"])


def decide_callbacks(view: QueueView, calendar: Calendar, toggles: Toggles, now: datetime) -> Verdict:
    """The callbacks of ``view`` to dial, move or cancel at aware instant ``now``."""
    if not calendar.state_at(now).open:
        return _at_closing(view, calendar, now)
    if _toggle_on(toggles, "closure", view.tenant_id, view.queue, now):
        return Verdict(held="closure toggle")
    if _toggle_on(toggles, "emergency", view.tenant_id, view.queue, now):
        return Verdict(held="emergency")
    if view.overflowing:
        return Verdict(held="overflow")
    if view.logged_in is None:
        return Verdict(held="live state unknown")
    if view.logged_in <= 0:
        return Verdict(held="no adviser logged in")
    stamp = now.timestamp()
    in_queue = sorted(c.joined_at for c in view.callbacks if c.state == "dialling")
    slots = view.logged_in - len(in_queue)
    first_live = min(view.live_joins, default=None)
    due = sorted(
        (c.joined_at, c.callback_id) for c in view.callbacks if c.state == "pending" and c.next_at <= stamp
    )
    chosen: list[str] = []
    positions: list[int] = []
    why = [f"{view.logged_in} adviser(s) logged in, {len(in_queue)} callback(s) in the queue"]
    for joined, ident in due:
        if first_live is not None and first_live <= joined:  # a live caller first on a tie: it is here
            why.append("a live caller who joined earlier is still waiting")
            break
        if slots <= 0:
            why.append("as many callbacks in the queue as advisers logged in")
            break
        ahead = sum(1 for t in in_queue if t < joined)
        chosen.append(ident)
        positions.append(ahead + 1)
        in_queue = sorted([*in_queue, joined])
        slots -= 1
    return Verdict(dial=tuple(chosen), positions=tuple(positions), why=why)


# --- after an attempt ---------------------------------------------------------------------

AttemptOutcome = Literal[
    "answered", "short-answer", "no-answer", "busy", "failed", "no-adviser", "interrupted"
]
"""How one dial ended. The caller's side: ``answered`` (the caller talked for at least
``SHORT_ANSWER_S``), ``short-answer`` (answered and gone within it: an answering machine or a
voicemail greeting, or a caller who hung up at once), ``no-answer``, ``busy``, ``failed`` (the line
could not be reached: congestion, unavailable). Before the caller was dialled: ``no-adviser``
(no adviser answered the callback's queue call in time, or the originate failed) and
``interrupted`` (the dialler stopped during the attempt and nobody saw how it ended)."""

CALLER_DIALLED: frozenset[str] = frozenset({"answered", "short-answer", "no-answer", "busy", "failed"})
SHORT_ANSWER_S = 10


def dial_outcome(dial_status: str, answered_s: str, talk_s: float | None = None) -> AttemptOutcome:
    """The caller's side of an attempt from the dialplan's ``DIALSTATUS`` and the seconds talked.

    ``talk_s``: from the caller's answer (the ``;1`` leg's ``DialEnd`` ``ANSWER``) to the
    ``CallbackOutcome`` event. Without it (``DialEnd`` not seen), ``ANSWEREDTIME`` (whole seconds,
    empty when not answered: ``dial_pjsip_trunk_forms.txt``), which on the ``;1`` leg counts from
    the adviser's answer and so includes the caller's ringing (``callback_originate.txt``)."""
    status = dial_status.strip().upper()
    if status == "ANSWER":
        if talk_s is not None:
            return "answered" if talk_s >= SHORT_ANSWER_S else "short-answer"
        seconds = int(answered_s) if answered_s.strip().isdigit() else 0
        return "answered" if seconds >= SHORT_ANSWER_S else "short-answer"
    if status in ("NOANSWER", "CANCEL"):
        return "no-answer"
    if status == "BUSY":
        return "busy"
    return "failed"


@dataclass(frozen=True, slots=True)
class Next:
    """Where a callback goes after an attempt: its state, when it is next due, its outcome once
    ended, and the caller attempts counted so far."""

    state: CallbackState
    next_at: float
    outcome: str
    attempts: int


def after_attempt(outcome: AttemptOutcome, attempts_before: int, policy: CallbackPolicy, now: float) -> Next:
    """Answered: done. The caller not reached: another attempt ``retry_delay_s`` later, up to
    ``max_attempts``, then failed. Not dialled at all (``no-adviser``, ``interrupted``): due again
    at once, keeping its place and its attempts (the caller was never called, or it is not known
    that they were: dialled again once)."""
    if outcome not in CALLER_DIALLED:
        return Next("pending", now, "", attempts_before)
    attempts = attempts_before + 1
    if outcome == "answered":
        return Next("done", now, "answered", attempts)
    if attempts >= policy.max_attempts:
        return Next("failed", now, "failed", attempts)
    return Next("pending", now + policy.retry_delay_s, "", attempts)
