"""What the IVR controller knows about a call, as small typed facts (pure).

Each fact names the call by its Linkedid (``call_id``: for the inbound caller's channel,
on which the controller's FastAGI session runs, the Linkedid is the channel's own
``agi_uniqueid``) and carries the time it happened (``at``, Unix seconds). The controller
reports facts; :class:`records.builder.RecordBuilder` folds them with the AMI events.

There is deliberately no fact for digits typed at a payment or reference prompt: only menu
keys are reported, and the builder drops any key reported while the caller is at a payment
prompt.
"""

from __future__ import annotations

from dataclasses import dataclass

from records.model import DecisionKind, DispositionKind, LanguageHow, SurveyScore
from routing.core.decide import Decision
from routing.core.plan import ExternalDest


@dataclass(frozen=True, slots=True)
class CallArrived:
    """The controller's first sight of the call: dialled number, caller, the council.

    ``from_centre`` (and ``from_call``, its Linkedid there, when the sending centre passes it)
    when another centre sent the call here: a hop in."""

    call_id: str
    at: float
    dialled: str
    caller: str | None
    tenant: str | None
    from_centre: str | None = None
    from_call: str | None = None


@dataclass(frozen=True, slots=True)
class RouteDecided:
    """A routing decision with its reasons; ``partner_centre`` when it sends the call there."""

    call_id: str
    at: float
    kind: DecisionKind
    destination: str
    reasons: tuple[str, ...]
    partner_centre: str | None = None


@dataclass(frozen=True, slots=True)
class LanguageChosen:
    """The call's language (the caller's choice, the default, or the tenant's only one)."""

    call_id: str
    at: float
    language: str
    how: LanguageHow
    key: str | None = None


@dataclass(frozen=True, slots=True)
class MenuEntered:
    call_id: str
    at: float
    menu: str


@dataclass(frozen=True, slots=True)
class KeyPressed:
    """A valid menu key (one of ``0-9 * #``)."""

    call_id: str
    at: float
    menu: str
    key: str


@dataclass(frozen=True, slots=True)
class InvalidKey:
    call_id: str
    at: float
    menu: str


@dataclass(frozen=True, slots=True)
class MenuTimeout:
    call_id: str
    at: float
    menu: str


@dataclass(frozen=True, slots=True)
class AnnouncementPlayed:
    call_id: str
    at: float
    prompt: str
    skipped: bool = False


@dataclass(frozen=True, slots=True)
class PaymentStarted:
    """The caller is at a payment line (keys typed from here on are never recorded)."""

    call_id: str
    at: float
    line: str


@dataclass(frozen=True, slots=True)
class PaymentHandedOff:
    """The outcome of a payment hand-off: whether a reference was captured (never its digits)."""

    call_id: str
    at: float
    line: str
    reference_captured: bool
    handed_off: bool


@dataclass(frozen=True, slots=True)
class QueueStatusSeen:
    """``QUEUESTATUS`` as the dialplan passed it after ``Queue()`` (TIMEOUT, WITHDRAW, FULL...)."""

    call_id: str
    at: float
    status: str


@dataclass(frozen=True, slots=True)
class SurveyAnswered:
    call_id: str
    at: float
    score: SurveyScore


@dataclass(frozen=True, slots=True)
class CallbackOffered:
    """The queued callback was offered (at entry, during the wait, or on the caller's key);
    ``accepted`` when a callback was left, with the kind of number (``mobile``...), never the
    number itself."""

    call_id: str
    at: float
    accepted: bool
    number_kind: str | None = None


@dataclass(frozen=True, slots=True)
class WaitAbandoned:
    """The caller hung up between two slices of a queue's wait (an announcement, the callback
    offer, their number): an abandon in that queue, not in the IVR."""

    call_id: str
    at: float


@dataclass(frozen=True, slots=True)
class IvrAbandoned:
    """The caller hung up in the IVR (``where``: the menu, or what was playing)."""

    call_id: str
    at: float
    where: str


@dataclass(frozen=True, slots=True)
class DispositionGiven:
    """An adviser's disposition from another channel than AMI (e.g. an HTTP API)."""

    call_id: str
    at: float
    kind: DispositionKind
    team: str | None = None
    reason: str | None = None
    by: str | None = None


@dataclass(frozen=True, slots=True)
class CallbackReported:
    """A queued callback taken on this call has ended (or has news): ``callback`` is the record's
    ``callback`` sub-object as JSON (``records.model.Callback``; ``records.callback``). Sent by
    the dialler through the dispositions stream, so the call's owner makes the next version."""

    call_id: str
    at: float
    callback: str


IvrFact = (
    CallArrived
    | RouteDecided
    | LanguageChosen
    | MenuEntered
    | KeyPressed
    | InvalidKey
    | MenuTimeout
    | AnnouncementPlayed
    | PaymentStarted
    | PaymentHandedOff
    | QueueStatusSeen
    | SurveyAnswered
    | CallbackOffered
    | WaitAbandoned
    | IvrAbandoned
    | DispositionGiven
    | CallbackReported
)

SURVEY_KEYS: dict[str, SurveyScore] = {"1": 1, "2": 0, "3": -1}
"""GovMetric's Good / Average / Poor keys as the record's score."""


def decision_kind(decision: Decision) -> DecisionKind:
    """The record's kind of a routing decision: the engine's state, refined by its trace.

    A closed decision whose trace names a bank holiday is ``holiday``; an open one whose
    trace sends the call to an overflow destination is ``overflow``."""
    if decision.state != "open":
        if decision.state == "closed" and any("(bank holiday)" in r for r in decision.reasons):
            return "holiday"
        return decision.state
    if any(r.startswith(("-> overflow to", "-> withdrawn for overflow")) for r in decision.reasons):
        return "overflow"
    return "open"


def route_decided(call_id: str, at: float, decision: Decision, destination: str) -> RouteDecided:
    """The fact for a decision of the engine (``destination``: how the controller describes it)."""
    dest = decision.destination
    partner = dest.centre if isinstance(dest, ExternalDest) else None
    return RouteDecided(call_id, at, decision_kind(decision), destination, decision.reasons, partner)
