"""Fold IVR facts and AMI events into contact records (pure: no I/O, time passed in).

One :class:`RecordBuilder` per controller. Feed it the controller's facts
(:meth:`RecordBuilder.feed_ivr`) and every AMI event as Asterisk sends it, a dict of
headers with its receive time (:meth:`RecordBuilder.feed_ami`); ask it now and then which
records are ready (:meth:`RecordBuilder.due`). Events are correlated by the call's
**Linkedid**: every leg of a call (the caller, the advisers rung, a back-office Local
channel, a partner dial) carries the caller's Uniqueid as Linkedid, so one call, even one
that crosses to a partner centre, makes one record.

When a record is final. The call ends when the **caller's channel** (Uniqueid equal to the
Linkedid) hangs up. Agent-side events can follow in the same millisecond (the agent's
``Hangup`` and the ``CallDisposition`` UserEvent raised by the agent's hangup handler come
after the caller's ``Hangup``), so a record is due ``grace_s`` after that hang-up, as
version 1. Anything that changes the record later (a disposition sent after the call, a
survey answer) makes the next version, due ``grace_s`` after the change; an event that
changes nothing makes no version. A call whose end is never seen (AMI lost) is closed
``max_call_s`` after the builder first saw it, with ``complete`` false. A finished call is kept
``keep_s`` for late changes, then forgotten; kept calls are held compactly, one ``bytes`` each,
and brought back to full state only when a late fact or event arrives for one of them (see
:class:`FinishedCalls`). A call seen only as channels (no tenant, no queue, no IVR fact: an
adviser's internal call) makes no record.

Times: an AMI event's ``Timestamp`` header (``timestampevents = yes`` in manager.conf) is
Asterisk's own clock and wins; otherwise the receive time passed in is used.

Queue outcomes. Asterisk sends ``QueueCallerAbandon`` for a caller who hung up, for a queue
timeout and for ``QueueWithdrawCaller`` alike (README 2.3). A caller who hung up sent a
``HangupRequest`` on their channel first: ``abandoned``. Otherwise the dialplan's
``QUEUESTATUS`` decides (``WITHDRAW``: ``withdrawn``, to the partner), reported by the
controller's overflow route (:class:`records.facts.QueueStatusSeen`) or a ``QueueOutcome``
UserEvent; without it the caller left because the queue timed out: ``timed_out``.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import hmac
import marshal
import math
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from itertools import takewhile
from operator import attrgetter
from typing import Any, cast, get_args

from records.facts import (
    AnnouncementPlayed,
    CallArrived,
    CallbackOffered,
    CallbackReported,
    DispositionGiven,
    InvalidKey,
    IvrAbandoned,
    IvrFact,
    KeyPressed,
    LanguageChosen,
    MenuEntered,
    MenuTimeout,
    PaymentHandedOff,
    PaymentStarted,
    QueueStatusSeen,
    RouteDecided,
    SurveyAnswered,
    WaitAbandoned,
)
from records.model import (
    CALLER_MAX,
    LANGUAGE_CODE,
    LIST_MAX,
    SCHEMA_VERSION,
    TEXT_MAX,
    Adviser,
    Announcement,
    Answered,
    Callback,
    CallbackNumberKind,
    Caller,
    CallLanguage,
    ContactRecord,
    DecisionKind,
    Disposition,
    DispositionKind,
    HangUp,
    Hop,
    HopFrom,
    HungUpBy,
    Ivr,
    LanguageHow,
    MenuVisit,
    Payment,
    QueueOutcome,
    QueueVisit,
    RoutingDecision,
    SurveyScore,
    Transfer,
    TransferResult,
)
from routing.core import numbers
from routing.core.linkedid import FIX, LINKEDID
from routing.masking import mask_number

MIN_KEY_BYTES = 16
_CARD_LIKE = re.compile(r"[0-9]{13,}")
_DTMF_KEY = re.compile(r"^[0-9*#]$")
_LOCAL_TARGET = re.compile(r"^Local/([^@/;]+)@([^/;]+)-[0-9a-f]+;1$")
_WITHHELD = {"", "<unknown>", "anonymous", "unknown", "withheld", "restricted"}
_DISPOSITIONS: dict[str, DispositionKind] = {
    "resolved": "resolved",
    "back_office": "back_office",
    "back-office": "back_office",
    "avoidable": "avoidable",
    "complaint": "complaint",
}
_LANGUAGE = re.compile(LANGUAGE_CODE)
_TEXT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def caller_hash(key: bytes, number: str) -> str:
    """HMAC-SHA256 of ``number`` (in E.164 when it parses) with ``key``, base64url unpadded.

    Base64 rather than hex: a hex digest can hold a run of 13 decimal digits, which a card
    scanner would flag."""
    canonical = numbers.try_normalise(number) or number
    digest = hmac.new(key, canonical.encode("utf-8"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _utc(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


@dataclass
class _Visit:
    queue: str
    joined_at: float
    position: int | None
    left_at: float | None = None
    wait_s: float | None = None
    rings: int = 0
    outcome: QueueOutcome = "unknown"
    caller_hung_up: bool = False
    waited_before_s: float = 0.0  # the wait loop: time since the first join when the caller rejoined


@dataclass
class _Transfer:
    kind: str
    at: float
    to: str
    context: str | None
    result: TransferResult
    channel: str | None = None


@dataclass
class _Call:
    """What is known of one call so far (mutable; the builder's private state)."""

    id: str
    first_seen: float
    arrived_at: float | None = None
    tenant: str | None = None
    dialled: str | None = None
    caller: str | None = None
    caller_channel: str | None = None
    contact: bool = False  # a council's call (a tenant, a queue or an IVR fact seen)
    menus: list[tuple[str, float, list[str]]] = field(default_factory=list)
    invalid: int = 0
    timeouts: int = 0
    announcements: list[tuple[str, bool]] = field(default_factory=list)
    at_payment: bool = False
    ivr_abandoned: str | None = None
    decisions: list[tuple[float, DecisionKind, str, tuple[str, ...]]] = field(default_factory=list)
    visits: list[_Visit] = field(default_factory=list)
    agent_legs: dict[str, tuple[str, str]] = field(default_factory=dict)  # channel -> interface, name
    adviser_channel: str | None = None
    answered: tuple[float, str, str | None, str | None, str | None] | None = None  # at, centre, id, name, q
    connected_at: float | None = None
    talk_s: float | None = None
    talk_bridge: str | None = None
    talk_end: float | None = None
    complete_reason: str | None = None
    hold_since: float | None = None
    hold_s: float = 0.0
    transfers: list[_Transfer] = field(default_factory=list)
    hops: list[tuple[str, float, bool | None]] = field(default_factory=list)
    outbound_channel: str | None = None
    first_request: str | None = None  # "caller" or "adviser": who hung up first
    hangup: tuple[float, HungUpBy, int, str] | None = None
    payment: tuple[str, bool, bool] | None = None
    survey: SurveyScore | None = None
    language: tuple[str, LanguageHow, str | None] | None = None
    callback_offer: tuple[bool, CallbackNumberKind | None] | None = None  # offered: (accepted, number kind)
    disposition: tuple[DispositionKind, str | None, str | None, str | None, float] | None = None
    problems: list[str] = field(default_factory=list)
    hop_from: tuple[str, str | None] | None = None
    callback: str | None = None  # the record's callback sub-object, as JSON (CallbackReported)
    # scheduling, on the builder's clock (receive times; an event's Timestamp is Asterisk's)
    ended_at: float | None = None  # when the builder learnt that the caller had gone
    changed_at: float = 0.0  # when the builder last took a fact or event of this call
    dirty: bool = True  # taken something since the last record was built
    version: int = 0
    closed_by_age: bool = False
    emitted: ContactRecord | None = None  # the last version handed out (not in the kept form)

    def visit(self) -> _Visit | None:
        return self.visits[-1] if self.visits else None

    def problem(self, text: str) -> None:
        if len(self.problems) < LIST_MAX and text not in self.problems:
            self.problems.append(text)


_VISIT_FIELDS = tuple(f.name for f in fields(_Visit))
_TRANSFER_FIELDS = tuple(f.name for f in fields(_Transfer))
_KEPT_FIELDS = tuple(f.name for f in fields(_Call) if f.name != "emitted")
_kept_values = attrgetter(*_KEPT_FIELDS)
_visit_values = attrgetter(*_VISIT_FIELDS)
_transfer_values = attrgetter(*_TRANSFER_FIELDS)
_VISITS = _KEPT_FIELDS.index("visits")
_TRANSFERS = _KEPT_FIELDS.index("transfers")


def _freeze(call: _Call) -> bytes:
    """A call's state (all but the record last emitted) as one ``bytes``: :func:`_thaw` undoes it.

    ``marshal`` of plain values (str, float, int, bool, None, tuples, lists, dicts of them):
    the fastest and most compact of the standard serialisers for this (about 8 us and 560
    bytes for an answered queue call; ``pickle``: 7 us and 1,190 bytes, as it names every
    field). Its format may change between Python versions; these bytes never leave the process.
    """
    values = list(_kept_values(call))
    values[_VISITS] = [_visit_values(v) for v in call.visits]
    values[_TRANSFERS] = [_transfer_values(t) for t in call.transfers]
    return marshal.dumps(tuple(values))


def _thaw(state: bytes) -> _Call:
    values = list(marshal.loads(state))  # noqa: S302 - only ever bytes _freeze made in this process
    values[_VISITS] = [_Visit(*v) for v in values[_VISITS]]
    values[_TRANSFERS] = [_Transfer(*t) for t in values[_TRANSFERS]]
    return _Call(**dict(zip(_KEPT_FIELDS, values, strict=True)))


@dataclass(frozen=True, slots=True)
class Held:
    """A call the builder holds, as :meth:`RecordBuilder.held` tells it: its council (None while
    unknown), the last version handed out (0: none yet) and its disposition (kind, team, reason)."""

    tenant: str | None
    version: int
    disposition: tuple[DispositionKind, str | None, str | None] | None
    callback: str | None = None  # the callback sub-object it holds, as JSON

    def version_with(self, disposition: tuple[str, str | None, str | None]) -> int:
        """The version that will carry ``disposition`` once given: the next one if it changes
        the record (or none was handed out yet), else the last one, which holds it already."""
        if self.version == 0 or self.disposition != disposition:
            return self.version + 1
        return self.version

    def version_with_callback(self, callback: str) -> int:
        """The same for a callback sub-object (JSON)."""
        if self.version == 0 or self.callback != callback:
            return self.version + 1
        return self.version


class FinishedCalls:
    """Finished calls kept for late changes, each as one ``bytes``, with the time it may go.

    Why: a finished call held as objects is about 45 objects the garbage collector tracks (the
    call's lists and tuples, its last record's models); an hour of calls at 50 calls/s is
    180,000 calls, 8 million objects, and every full collection walked them all: about 4 s,
    a pause of the event loop that serves calls (``benchmarks/records_bench.py``). Two dicts
    of ``str`` to ``bytes`` and to ``float`` hold nothing the collector tracks, so CPython
    leaves them untracked: the 180,000 kept calls add about 2 ms to a full collection (the
    heap of their deadlines), on top of what the process's own objects cost.

    Not ``gc.freeze()`` (it hides only the objects that exist when it is called, and calls
    finish every second) nor higher collection thresholds (they space full collections out,
    each as long): neither is needed now, the benchmark leaves them nothing in the builder to save.
    """

    def __init__(self) -> None:
        self._state: dict[str, bytes] = {}
        self._until: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._state)

    def put(self, call: _Call, until: float) -> None:
        """Keep ``call`` until ``until`` (the caller drops its own reference to it)."""
        self._state[call.id] = _freeze(call)
        self._until[call.id] = until

    def take(self, call_id: str) -> _Call | None:
        """The call, back in full (no longer kept here), or None if it is not kept."""
        state = self._state.pop(call_id, None)
        if state is None:
            return None
        del self._until[call_id]
        return _thaw(state)

    def peek(self, call_id: str) -> _Call | None:
        """A copy of the call, in full; it stays kept."""
        state = self._state.get(call_id)
        return None if state is None else _thaw(state)

    def expire(self, call_id: str, now: float) -> None:
        """Forget the call if its time is up at ``now``."""
        until = self._until.get(call_id)
        if until is not None and until <= now:
            del self._state[call_id], self._until[call_id]

    def clear(self) -> None:
        self._state.clear()
        self._until.clear()


class RecordBuilder:
    """Contact records from IVR facts and AMI events, by Linkedid (see the module doc)."""

    def __init__(
        self,
        centre: str,
        caller_hash_key: bytes,
        *,
        avoidable_reasons: Callable[[str | None], Collection[str]] = lambda _tenant: (),
        grace_s: float = 2.0,
        max_call_s: float = 6 * 3600.0,
        keep_s: float = 3600.0,
    ) -> None:
        if len(caller_hash_key) < MIN_KEY_BYTES:
            raise ValueError(f"the caller hash key must be at least {MIN_KEY_BYTES} bytes")
        self.centre = centre
        self._key = caller_hash_key
        self._avoidable = avoidable_reasons
        self.grace_s = grace_s
        self.max_call_s = max_call_s
        self.keep_s = keep_s
        self._calls: dict[str, _Call] = {}  # in progress, or finished and not yet settled
        self._finished = FinishedCalls()  # settled, kept for late changes
        self._timers: list[tuple[float, str]] = []  # (when to look at a call again, its id)
        # Calls whose end is not seen yet -> when the age limit closes them, in the order first
        # seen. Not in the heap: there a call's age deadline stayed max_call_s (6 hours) after
        # the call ended, a million dead entries that cost memory and every full collection.
        self._open: dict[str, float] = {}
        self._restarted: set[str] = set()  # open calls replayed from a journal (see restarted())
        self.restart_problem = ""

    def __len__(self) -> int:
        """Calls held (in progress, or finished and kept for late changes)."""
        return len(self._calls) + len(self._finished)

    # --- IVR facts ---------------------------------------------------------------------

    def feed_ivr(self, fact: IvrFact) -> None:
        """Take one fact from the controller (one that is not well formed is refused: ValueError)."""
        _check(fact)
        call = self._call(fact.call_id, fact.at, received=fact.at)
        call.contact = True
        call.changed_at = max(call.changed_at, fact.at)
        call.dirty = True
        if call.ended_at is not None:
            self._timer(call.changed_at + self.grace_s, call.id)
        _FACTS[type(fact)](self, call, fact)

    def _arrived(self, call: _Call, fact: CallArrived) -> None:
        call.arrived_at = fact.at if call.arrived_at is None else min(call.arrived_at, fact.at)
        call.dialled = fact.dialled
        call.tenant = fact.tenant if fact.tenant is not None else call.tenant
        if fact.caller is not None:
            call.caller = fact.caller
        if fact.from_centre is not None:
            call.hop_from = (fact.from_centre, fact.from_call)

    def _decided(self, call: _Call, fact: RouteDecided) -> None:
        if len(call.decisions) < LIST_MAX:
            call.decisions.append((fact.at, fact.kind, fact.destination, fact.reasons))
        if fact.partner_centre is not None and len(call.hops) < LIST_MAX:
            call.hops.append((fact.partner_centre, fact.at, None))

    def _menu_entered(self, call: _Call, fact: MenuEntered) -> None:
        call.at_payment = False
        if len(call.menus) < LIST_MAX:
            call.menus.append((fact.menu, fact.at, []))

    def _invalid(self, call: _Call, fact: InvalidKey) -> None:
        call.invalid += 1

    def _timeout(self, call: _Call, fact: MenuTimeout) -> None:
        call.timeouts += 1

    def _announcement(self, call: _Call, fact: AnnouncementPlayed) -> None:
        if len(call.announcements) < LIST_MAX:
            call.announcements.append((fact.prompt, fact.skipped))

    def _payment_started(self, call: _Call, fact: PaymentStarted) -> None:
        call.at_payment = True
        call.payment = (fact.line, False, False)

    def _payment_handed_off(self, call: _Call, fact: PaymentHandedOff) -> None:
        call.at_payment = True
        call.payment = (fact.line, fact.reference_captured, fact.handed_off)

    def _queue_status_seen(self, call: _Call, fact: QueueStatusSeen) -> None:
        self._queue_status(call, fact.status)

    def _survey(self, call: _Call, fact: SurveyAnswered) -> None:
        call.survey = fact.score

    def _language(self, call: _Call, fact: LanguageChosen) -> None:
        call.language = (fact.language, fact.how, fact.key)

    def _callback_offered(self, call: _Call, fact: CallbackOffered) -> None:
        if call.callback_offer is None or not call.callback_offer[0]:  # a callback once taken stays taken
            kind = cast(CallbackNumberKind | None, fact.number_kind)  # checked by _check
            call.callback_offer = (fact.accepted, kind if fact.accepted else None)
        visit = call.visit()
        if fact.accepted and visit is not None and visit.outcome != "answered" and not visit.caller_hung_up:
            visit.outcome = "callback"  # left the queue keeping their place, to be called back

    def _wait_abandoned(self, call: _Call, fact: WaitAbandoned) -> None:
        visit = call.visit()
        if visit is None or visit.outcome == "answered":
            self._ivr_abandoned(call, IvrAbandoned(fact.call_id, fact.at, "wait"))
            return
        visit.caller_hung_up, visit.outcome = True, "abandoned"
        visit.wait_s = max(visit.wait_s or 0.0, fact.at - visit.joined_at)
        if call.ended_at is None:
            self._ended(call, fact.at)
            self._timer(fact.at + self.grace_s, call.id)

    def _ivr_abandoned(self, call: _Call, fact: IvrAbandoned) -> None:
        call.ivr_abandoned = fact.where
        if call.ended_at is None:
            self._ended(call, fact.at)  # the caller is gone; AMI's Hangup, if it comes, adds the cause
            self._timer(fact.at + self.grace_s, call.id)

    def _disposition_given(self, call: _Call, fact: DispositionGiven) -> None:
        self._disposition(call, fact.kind, team=fact.team, reason=fact.reason, by=fact.by, at=fact.at)

    def _callback_reported(self, call: _Call, fact: CallbackReported) -> None:
        call.callback = fact.callback  # checked by _check: a Callback sub-object

    def _key_pressed(self, call: _Call, fact: KeyPressed) -> None:
        if call.at_payment:
            return  # never keep what is typed at a payment prompt
        if not _DTMF_KEY.match(fact.key):
            call.problem("a menu key that is not one DTMF key was dropped")
            return
        if not call.menus or call.menus[-1][0] != fact.menu:
            if len(call.menus) >= LIST_MAX:
                return
            call.menus.append((fact.menu, fact.at, []))
        keys = call.menus[-1][2]
        if len(keys) < LIST_MAX:
            keys.append(fact.key)

    # --- AMI events ----------------------------------------------------------------------

    def feed_ami(self, event: Mapping[str, str], now: float) -> str | None:
        """Take one AMI event (headers as Asterisk sent them), received at ``now``. Returns the
        call it was taken for (None: not one the builder reads)."""
        name = event.get("Event", "")
        handler = _HANDLERS.get(name)
        if handler is None:
            return None  # includes DTMFBegin/DTMFEnd: key presses are never read from AMI
        linkedid = _linkedid(event)
        if not LINKEDID.fullmatch(linkedid):
            return None
        at = _event_time(event, now)
        call = self._live(linkedid)
        if call is None:
            if event.get("Uniqueid") != linkedid and name != "QueueCallerJoin":
                return None  # a leg of a call we never saw begin
            call = self._call(linkedid, at, received=now)
        call.changed_at = max(call.changed_at, now)
        call.dirty = True
        ended = call.hangup is not None
        handler(self, call, event, at)
        if not ended and call.hangup is not None:
            self._ended(call, now)
        if call.ended_at is not None:
            self._timer(max(call.ended_at, call.changed_at) + self.grace_s, call.id)
        return linkedid

    def holds(self, call_id: str) -> bool:
        """Whether the call is in progress or finished with its record not yet handed out."""
        return call_id in self._calls

    def held(self, call_id: str) -> Held | None:
        """What a disposition given over HTTP needs to know of a call this builder holds (in
        progress, or finished and kept for late changes), or None if it does not hold it."""
        call = self._calls.get(call_id) or self._finished.peek(call_id)
        if call is None or not call.contact:
            return None
        held = call.disposition[:3] if call.disposition is not None else None
        return Held(call.tenant, call.version, held, call.callback)

    def restarted(self, deadline: float, problem: str) -> int:
        """After a replay: every call whose end is not known is closed at ``deadline`` at the
        latest (unless its end is seen before), with ``problem`` in its record. Returns how many."""
        for call_id, at in self._open.items():  # a constant cap keeps _open in deadline order
            self._open[call_id] = min(at, deadline)
            self._restarted.add(call_id)
        self.restart_problem = problem
        return len(self._open)

    def _ami_newchannel(self, call: _Call, e: Mapping[str, str], at: float) -> None:
        channel = e.get("Channel", "")
        if e.get("Uniqueid") == call.id:
            call.caller_channel = channel
            call.arrived_at = at if call.arrived_at is None else min(call.arrived_at, at)
            if call.caller is None:
                call.caller = e.get("CallerIDNum")
            if call.dialled is None:
                call.dialled = e.get("Exten") or None
            return
        target = _LOCAL_TARGET.match(channel)
        if target and call.adviser_channel is not None and len(call.transfers) < LIST_MAX:
            # AMI Atxfer / the atxfer feature dials the target through a Local channel while
            # the adviser talks to the caller: an attended transfer attempt.
            call.transfers.append(_Transfer("attended", at, target[1], target[2], "attempted", channel))

    def _ami_user_event(self, call: _Call, e: Mapping[str, str], at: float) -> None:
        kind = e.get("UserEvent", "")
        if kind == "CallDisposition":
            self._ami_disposition(call, e, at)
        elif kind == "QueueOutcome":
            self._queue_status(call, e.get("QUEUESTATUS", ""))
        elif e.get("Uniqueid") == call.id and e.get("Tenant") and call.tenant is None:
            call.tenant = e["Tenant"]
            call.contact = True

    def _ami_disposition(self, call: _Call, e: Mapping[str, str], at: float) -> None:
        raw = e.get("Disposition", "").strip()
        if not raw:
            return  # the hangup handler raises it with an empty value when none was set
        word, _, detail = raw.partition(":")
        kind = _DISPOSITIONS.get(word.strip().lower())
        if kind is None:
            call.problem("a disposition that is not resolved, back_office, avoidable or complaint")
            return
        detail = detail.strip() or e.get("Team" if kind == "back_office" else "Reason", "").strip()
        channel = e.get("AgentChannel") or e.get("Channel") or ""
        leg = call.agent_legs.get(channel)
        by = e.get("Adviser") or (leg[0] if leg else None) or channel or None
        team = detail if kind == "back_office" and detail else None
        reason = detail if kind == "avoidable" and detail else None
        self._disposition(call, kind, team=team, reason=reason, by=by, at=at)

    def _disposition(
        self,
        call: _Call,
        kind: DispositionKind,
        *,
        team: str | None,
        reason: str | None,
        by: str | None,
        at: float,
    ) -> None:
        if kind == "avoidable" and reason is not None:
            listed = self._avoidable(call.tenant)
            if reason not in listed:
                call.problem("an avoidable contact reason that is not in the tenant's list")
                reason = None
        if team is not None and not _TEXT_NAME.match(team):
            call.problem("a back-office team that is not a plain name")
            team = None
        call.contact = True
        if call.disposition is not None and call.disposition[:3] == (kind, team, reason):
            return  # the same disposition sent again (hangup handler, then desktop): no change
        call.disposition = (kind, team, reason, by, at)

    def _queue_status(self, call: _Call, status: str) -> None:
        visit = call.visit()
        if visit is None or visit.outcome == "answered" or visit.caller_hung_up:
            return
        status = status.strip().upper()
        if status == "WITHDRAW":
            visit.outcome = "withdrawn"
        elif status == "TIMEOUT":
            visit.outcome = "timed_out"

    def _ami_queue_join(self, call: _Call, e: Mapping[str, str], at: float) -> None:
        call.contact = True
        if call.caller_channel is None and e.get("Uniqueid") == call.id:
            call.caller_channel = e.get("Channel")
        if call.caller is None:
            call.caller = e.get("CallerIDNum")
        visit = call.visit()
        if visit is not None and _rejoined(call, visit, e.get("Queue", "")):
            # the wait loop: one wait in slices (docs/callbacks.md) is one visit, from the first join
            visit.left_at, visit.outcome, visit.waited_before_s = (
                None,
                "unknown",
                max(0.0, at - visit.joined_at),
            )
            return
        if len(call.visits) < LIST_MAX:
            call.visits.append(_Visit(e.get("Queue", ""), at, _int(e.get("Position"))))

    def _ami_queue_leave(self, call: _Call, e: Mapping[str, str], at: float) -> None:
        visit = call.visit()
        if visit is not None and visit.left_at is None:
            visit.left_at = at

    def _ami_queue_abandon(self, call: _Call, e: Mapping[str, str], at: float) -> None:
        visit = call.visit()
        if visit is None:
            return
        visit.wait_s = _waited(visit, e.get("HoldTime"))
        if visit.caller_hung_up:
            visit.outcome = "abandoned"
        elif visit.outcome == "unknown":
            visit.outcome = "timed_out"  # until QUEUESTATUS says WITHDRAW

    def _ami_agent_called(self, call: _Call, e: Mapping[str, str], at: float) -> None:
        dest = e.get("DestChannel")
        if dest:
            call.agent_legs[dest] = (e.get("Interface", ""), e.get("MemberName", ""))

    def _ami_ring_no_answer(self, call: _Call, e: Mapping[str, str], at: float) -> None:
        visit = call.visit()
        if visit is not None:
            visit.rings += 1

    def _ami_agent_connect(self, call: _Call, e: Mapping[str, str], at: float) -> None:
        visit = call.visit()
        if visit is not None:
            visit.outcome = "answered"
            visit.wait_s = _waited(visit, e.get("HoldTime"))
            visit.left_at = visit.left_at or at
        call.adviser_channel = e.get("DestChannel") or None
        call.connected_at = at
        interface, name = e.get("Interface") or None, e.get("MemberName") or None
        call.answered = (at, self.centre, interface, name, e.get("Queue") or None)

    def _ami_agent_complete(self, call: _Call, e: Mapping[str, str], at: float) -> None:
        call.talk_s = _seconds(e.get("TalkTime"))
        call.complete_reason = e.get("Reason")
        if call.hold_since is not None:
            call.hold_s += max(0.0, at - call.hold_since)
            call.hold_since = None

    def _ami_dial_begin(self, call: _Call, e: Mapping[str, str], at: float) -> None:
        dest = e.get("DestChannel", "")
        if e.get("Uniqueid") != call.id or dest in call.agent_legs:
            return
        call.outbound_channel = dest  # a dial out of the call: a partner centre or a provider

    def _ami_dial_end(self, call: _Call, e: Mapping[str, str], at: float) -> None:
        if e.get("Uniqueid") != call.id or e.get("DestChannel") != call.outbound_channel:
            return
        if call.hops and call.hops[-1][2] is None:
            centre, hop_at, _ = call.hops[-1]
            answered = e.get("DialStatus") == "ANSWER"
            call.hops[-1] = (centre, hop_at, answered)
            if answered:
                call.answered = (at, centre, None, None, None)
                call.connected_at = at
                call.adviser_channel = call.outbound_channel  # the partner's side of the call

    def _ami_blind_transfer(self, call: _Call, e: Mapping[str, str], at: float) -> None:
        if len(call.transfers) >= LIST_MAX:
            return
        result: TransferResult = "completed" if e.get("Result") == "Success" else "failed"
        to = e.get("Extension", "")
        call.transfers.append(_Transfer("blind", at, to, e.get("Context") or None, result))
        call.adviser_channel = None

    def _ami_attended_transfer(self, call: _Call, e: Mapping[str, str], at: float) -> None:
        result: TransferResult = "completed" if e.get("Result") == "Success" else "failed"
        pending = next((t for t in reversed(call.transfers) if t.result == "attempted"), None)
        if pending is not None:
            pending.result = result
        elif len(call.transfers) < LIST_MAX:
            target = e.get("SecondTransfererExten") or e.get("DestExten") or ""
            call.transfers.append(_Transfer("attended", at, target, None, result))
        if result == "completed":
            call.adviser_channel = None

    def _ami_hold(self, call: _Call, e: Mapping[str, str], at: float) -> None:
        channel = e.get("Channel")
        if channel in (call.adviser_channel, call.caller_channel) and call.hold_since is None:
            call.hold_since = at

    def _ami_unhold(self, call: _Call, e: Mapping[str, str], at: float) -> None:
        channel = e.get("Channel")
        if channel in (call.adviser_channel, call.caller_channel) and call.hold_since is not None:
            call.hold_s += max(0.0, at - call.hold_since)
            call.hold_since = None

    def _ami_bridge_enter(self, call: _Call, e: Mapping[str, str], at: float) -> None:
        if e.get("Channel") == call.caller_channel and call.adviser_channel and call.talk_bridge is None:
            call.talk_bridge = e.get("BridgeUniqueid")

    def _ami_bridge_leave(self, call: _Call, e: Mapping[str, str], at: float) -> None:
        bridge = e.get("BridgeUniqueid")
        if e.get("Channel") == call.caller_channel and bridge and bridge == call.talk_bridge:
            call.talk_end = call.talk_end or at

    def _ami_hangup_request(self, call: _Call, e: Mapping[str, str], at: float) -> None:
        channel = e.get("Channel")
        if call.first_request is not None:
            return
        if channel == call.caller_channel:
            call.first_request = "caller"
            visit = call.visit()
            if visit is not None and visit.left_at is None:
                visit.caller_hung_up = True
        elif channel is not None and channel == call.adviser_channel:
            call.first_request = "adviser"

    def _ami_hangup(self, call: _Call, e: Mapping[str, str], at: float) -> None:
        channel = e.get("Channel", "")
        for transfer in call.transfers:
            if transfer.channel == channel and transfer.result == "attempted":
                transfer.result = "returned"  # the target hung up: the adviser has the caller back
        if channel != call.caller_channel or call.hangup is not None:
            return
        if call.hold_since is not None:
            call.hold_s += max(0.0, at - call.hold_since)
            call.hold_since = None
        cause = _int(e.get("Cause")) or 0
        call.hangup = (at, _hung_up_by(call), cause, e.get("Cause-txt", ""))
        if call.ivr_abandoned is None and call.first_request == "caller" and _in_a_menu(call):
            call.ivr_abandoned = call.menus[-1][0]  # the controller may not have said

    # --- records --------------------------------------------------------------------------

    def due(self, now: float) -> list[ContactRecord]:
        """Records ready at ``now``: each call's first version once final, later versions on change.

        Only calls whose timer has run out are looked at (a heap of deadlines): the builder
        keeps an hour of finished calls for late changes, and scanning them all on every call
        cost 100 ms at 180,000 calls (benchmarks/records_bench.py). Calls past the age limit
        are closed here too, the oldest first, their record due after the grace."""
        out: list[ContactRecord] = []
        looked: set[str] = set()
        while self._timers and self._timers[0][0] <= now:
            _, call_id = heapq.heappop(self._timers)
            if call_id in looked:
                continue
            call = self._calls.get(call_id)
            if call is None:
                self._finished.expire(call_id, now)
                continue
            looked.add(call_id)
            record = self._settle(call, now)
            if record is not None:
                out.append(record)
        self._close_aged(now)
        return out

    def _close_aged(self, now: float) -> None:
        """Close the calls whose end was not seen ``max_call_s`` after they were first seen.

        ``_open`` is in the order calls were first seen, their deadlines on the builder's clock
        (the times facts and events were received), so the look stops at the first call not
        yet due."""
        aged = list(takewhile(lambda item: item[1] <= now, self._open.items()))
        for call_id, _ in aged:
            call = self._calls[call_id]
            if call_id in self._restarted:
                call.problem(self.restart_problem)
            self._ended(call, now)
            call.closed_by_age = True
            self._timer(now + self.grace_s, call_id)

    def flush(self, now: float) -> list[ContactRecord]:
        """On shutdown: a record for every call held that has something not yet emitted.

        A call whose end was not seen is closed as at the age limit (``complete`` false): the
        controller is stopping and will not see the rest of it. Finished calls in their grace
        period get their version now. The builder is empty afterwards."""
        out: list[ContactRecord] = []
        for call in list(self._calls.values()):
            if call.contact and call.dirty:
                if call.ended_at is None:
                    call.ended_at = now  # _open is cleared below
                    call.closed_by_age = True
                record = self._changed_record(call, now)
                if record is not None:
                    out.append(record)
        self._calls.clear()
        self._finished.clear()  # kept calls have nothing new: their last version went out
        self._timers.clear()
        self._open.clear()
        self._restarted.clear()
        return out

    def _settle(self, call: _Call, now: float) -> ContactRecord | None:
        if call.ended_at is None:
            return None  # still in progress: _close_aged watches its age
        if not call.contact:
            del self._calls[call.id]
            return None
        settled = max(call.ended_at, call.changed_at) + self.grace_s
        if now < settled:
            return None  # something came in since: its own timer is queued
        record = self._changed_record(call, now) if call.dirty else None
        del self._calls[call.id]
        if now < settled + self.keep_s:
            self._finished.put(call, settled + self.keep_s)
            self._timer(settled + self.keep_s, call.id)
        return record

    def _timer(self, at: float, call_id: str) -> None:
        heapq.heappush(self._timers, (at, call_id))

    def _ended(self, call: _Call, at: float) -> None:
        call.ended_at = at  # again for an AMI Hangup after the controller's IvrAbandoned
        self._open.pop(call.id, None)
        self._restarted.discard(call.id)

    def _changed_record(self, call: _Call, now: float) -> ContactRecord | None:
        draft = _to_record(call, self.centre, self._key, call.version + 1, now)
        call.dirty = False
        if call.emitted is not None and _same(call.emitted, draft):
            return None
        call.version += 1
        call.emitted = draft
        return draft

    def record(self, call_id: str, *, version: int = 1, updated_at: float = 0.0) -> ContactRecord | None:
        """The record of a call as known now (for inspection; :meth:`due` emits them)."""
        call = self._calls.get(call_id) or self._finished.peek(call_id)
        if call is None:
            return None
        return _to_record(call, self.centre, self._key, version, updated_at or call.changed_at)

    def _live(self, call_id: str) -> _Call | None:
        """The call in full: in progress, or finished and brought back for a late change."""
        call = self._calls.get(call_id)
        if call is None:
            call = self._finished.take(call_id)
            if call is None:
                return None
            if call.emitted is None:  # the kept form has the state, not the record: rebuild it
                call.emitted = _to_record(call, self.centre, self._key, call.version, call.changed_at)
            self._calls[call_id] = call
        return call

    def _call(self, call_id: str, at: float, *, received: float) -> _Call:
        call = self._live(call_id)
        if call is None:
            call = self._calls[call_id] = _Call(call_id, first_seen=at)
            # on the builder's clock, so that _open stays in time order whatever an event's
            # Timestamp says
            self._open[call_id] = received + self.max_call_s
        return call


class NotALinkedid(ValueError):
    """A fact whose call id is not a Linkedid callrouter takes: its Asterisk's ``systemname``
    holds characters an id may not (:mod:`routing.core.linkedid`). The call is routed all the
    same; it has no record. ``call_id`` is the id as it came (from Asterisk: show it escaped)."""

    def __init__(self, fact: IvrFact) -> None:
        super().__init__(f"{type(fact).__name__}: call_id is not a Linkedid ({FIX})")
        self.call_id = fact.call_id


def _check(fact: IvrFact) -> None:
    """Refuse a fact that would make a record the schema refuses, before it touches any call."""
    if not math.isfinite(fact.at):
        raise ValueError(f"{type(fact).__name__}: at must be a finite time")
    if not LINKEDID.fullmatch(fact.call_id):
        raise NotALinkedid(fact)
    from_call = fact.from_call if isinstance(fact, CallArrived) else None
    if from_call is not None and not LINKEDID.fullmatch(from_call):
        raise ValueError("CallArrived: from_call must be a Linkedid (the sending centre's)")
    if isinstance(fact, RouteDecided) and fact.kind not in get_args(DecisionKind):
        raise ValueError(f"RouteDecided: unknown kind {fact.kind!r}")
    if isinstance(fact, LanguageChosen) and (
        fact.how not in get_args(LanguageHow)
        or not _LANGUAGE.match(fact.language)
        or (fact.key is not None and not _DTMF_KEY.match(fact.key))
    ):
        raise ValueError(f"LanguageChosen: not a language code, a way it was set or a key: {fact!r}")
    if isinstance(fact, SurveyAnswered) and fact.score not in get_args(SurveyScore):
        raise ValueError("SurveyAnswered: the score is 1, 0 or -1")
    if isinstance(fact, CallbackOffered) and fact.number_kind not in (None, *get_args(CallbackNumberKind)):
        raise ValueError(f"CallbackOffered: unknown number kind {fact.number_kind!r}")
    if isinstance(fact, DispositionGiven) and fact.kind not in get_args(DispositionKind):
        raise ValueError(f"DispositionGiven: unknown kind {fact.kind!r}")
    if isinstance(fact, CallbackReported):
        try:
            Callback.model_validate_json(fact.callback)
        except ValueError as exc:
            raise ValueError(f"CallbackReported: not a callback sub-object ({exc})") from None


def _rejoined(call: _Call, visit: _Visit, queue: str) -> bool:
    """A join that continues the last visit: the same queue, left by a slice's timeout or a key
    (the wait loop), the caller still on the line, no routing decision since they left."""
    if visit.queue != queue or visit.left_at is None or visit.caller_hung_up:
        return False
    if visit.outcome not in ("timed_out", "unknown"):
        return False
    return not call.decisions or call.decisions[-1][0] <= visit.left_at


def _waited(visit: _Visit, hold_time: str | None) -> float | None:
    """The visit's wait: Asterisk's HoldTime for this join, plus the earlier slices of the wait."""
    seconds = _seconds(hold_time)
    return None if seconds is None else seconds + visit.waited_before_s


def _in_a_menu(call: _Call) -> bool:
    """Whether the caller is still in a menu: one entered after the last decision, nothing since."""
    if not call.menus or call.visits or call.outbound_channel is not None or call.payment is not None:
        return False
    return not call.decisions or call.decisions[-1][0] <= call.menus[-1][1]


def _hung_up_by(call: _Call) -> HungUpBy:
    if call.first_request == "caller":
        return "caller"
    if call.first_request == "adviser":
        return "adviser"
    if call.complete_reason == "caller":
        return "caller"
    if call.complete_reason == "agent":
        return "adviser"
    return "centre"  # the dialplan, a back office or Asterisk ended the call


def _same(a: ContactRecord, b: ContactRecord) -> bool:
    return a.model_copy(update={"version": 0, "updated_at": b.updated_at}) == b.model_copy(
        update={"version": 0}
    )


def _to_record(call: _Call, centre: str, key: bytes, version: int, updated_at: float) -> ContactRecord:
    number = call.caller.strip()[:CALLER_MAX] if call.caller else None
    withheld = number is None or number.lower() in _WITHHELD
    if withheld:
        number = None
    masked = mask_number(number) if number else None

    def text(value: str | None) -> str:
        cleaned = value or ""
        if number and masked and number in cleaned:
            cleaned = cleaned.replace(number, masked)
        cleaned = _CARD_LIKE.sub("[digits removed]", cleaned)
        return cleaned[:TEXT_MAX]

    def opt(value: str | None) -> str | None:
        return None if value is None else text(value)

    answered = None
    if call.answered is not None:
        at, by_centre, adviser_id, name, queue = call.answered
        answered = Answered(
            at=_utc(at),
            by=Adviser(centre=text(by_centre), id=opt(adviser_id), name=opt(name)),
            queue=opt(queue),
        )
    talk_s = call.talk_s
    if talk_s is None and call.connected_at is not None:
        end = call.talk_end or (call.hangup[0] if call.hangup else None)
        talk_s = round(max(0.0, end - call.connected_at), 3) if end is not None else None
    handled_by = centre
    if call.answered is not None:
        handled_by = call.answered[1]
    abandoned_in = call.ivr_abandoned
    return ContactRecord(
        schema_version=SCHEMA_VERSION,
        id=call.id,
        version=version,
        updated_at=_utc(updated_at),
        complete=not call.closed_by_age,
        tenant=opt(call.tenant),
        dialled=opt(call.dialled),
        arrived_at=_utc(call.arrived_at if call.arrived_at is not None else call.first_seen),
        centre=text(handled_by),
        caller=Caller(
            number=number,
            hash=caller_hash(key, number) if number else None,
            withheld=withheld,
        ),
        ivr=Ivr(
            menus=[MenuVisit(menu=text(m), at=_utc(t), keys=list(keys)) for m, t, keys in call.menus],
            invalid=call.invalid,
            timeouts=call.timeouts,
            announcements=[Announcement(prompt=text(p), skipped=s) for p, s in call.announcements],
            abandoned=abandoned_in is not None,
            abandoned_in=opt(abandoned_in),
        ),
        language=(
            CallLanguage(code=call.language[0], how=call.language[1], key=call.language[2])
            if call.language is not None
            else None
        ),
        decisions=[
            RoutingDecision(
                at=_utc(t), kind=kind, destination=text(dest), reasons=[text(r) for r in reasons[:LIST_MAX]]
            )
            for t, kind, dest, reasons in call.decisions
        ],
        queues=[
            QueueVisit(
                queue=text(v.queue),
                joined_at=_utc(v.joined_at),
                left_at=_utc(v.left_at) if v.left_at is not None else None,
                position=v.position if v.position and v.position >= 1 else None,
                wait_s=v.wait_s,
                unanswered_rings=v.rings,
                outcome=v.outcome,
            )
            for v in call.visits
        ],
        answered=answered,
        talk_s=talk_s,
        hold_s=round(call.hold_s, 3),
        transfers=[
            Transfer(
                kind="blind" if t.kind == "blind" else "attended",
                at=_utc(t.at),
                to=text(t.to),
                context=opt(t.context),
                result=t.result,
            )
            for t in call.transfers
        ],
        hops=[Hop(centre=text(c), at=_utc(t), answered=a) for c, t, a in call.hops],
        hop_from=(
            HopFrom(centre=text(call.hop_from[0]), id=opt(call.hop_from[1])) if call.hop_from else None
        ),
        hangup=(
            HangUp(
                at=_utc(call.hangup[0]),
                by=call.hangup[1],
                cause=call.hangup[2],
                cause_text=text(call.hangup[3]),
            )
            if call.hangup is not None
            else None
        ),
        payment=(
            Payment(
                line=text(call.payment[0]), reference_captured=call.payment[1], handed_off=call.payment[2]
            )
            if call.payment is not None
            else None
        ),
        survey=call.survey,
        callback=_callback(call),
        disposition=(
            Disposition(
                kind=call.disposition[0],
                team=opt(call.disposition[1]),
                reason=opt(call.disposition[2]),
                by=opt(call.disposition[3]),
                at=_utc(call.disposition[4]),
            )
            if call.disposition is not None
            else None
        ),
        problems=[text(p) for p in call.problems],
    )


def _callback(call: _Call) -> Callback | None:
    """The record's callback: what the IVR recorded of the offer and, once the dialler has
    reported, its attempts and outcome (the offer's number kind kept)."""
    offer = call.callback_offer
    offered = Callback(offered=True, accepted=offer[0], number_kind=offer[1]) if offer is not None else None
    if call.callback is None:
        return offered
    reported = Callback.model_validate_json(call.callback)
    if offered is not None and reported.number_kind is None:
        reported = reported.model_copy(update={"number_kind": offered.number_kind})
    return reported


def _linkedid(event: Mapping[str, str]) -> str:
    """The call an event belongs to: its Linkedid, or a prefixed one (transfers, dial ends)."""
    direct = event.get("Linkedid")
    if direct:
        return direct
    for header in ("TransfereeLinkedid", "OrigTransfererLinkedid", "TransfererLinkedid", "DestLinkedid"):
        value = event.get(header)
        if value:
            return value
    return ""


def _event_time(event: Mapping[str, str], now: float) -> float:
    stamp = _float(event.get("Timestamp"))
    return stamp if stamp is not None else now


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _float(value: str | None) -> float | None:
    """A finite number from a header, or None."""
    try:
        number = float(value) if value is not None else None
    except ValueError:
        return None
    return number if number is not None and math.isfinite(number) else None


def _seconds(value: str | None) -> float | None:
    number = _float(value)
    return None if number is None else max(0.0, number)


_FACTS: dict[type, Callable[[RecordBuilder, _Call, Any], None]] = {
    CallArrived: RecordBuilder._arrived,
    RouteDecided: RecordBuilder._decided,
    MenuEntered: RecordBuilder._menu_entered,
    KeyPressed: RecordBuilder._key_pressed,
    InvalidKey: RecordBuilder._invalid,
    MenuTimeout: RecordBuilder._timeout,
    AnnouncementPlayed: RecordBuilder._announcement,
    PaymentStarted: RecordBuilder._payment_started,
    PaymentHandedOff: RecordBuilder._payment_handed_off,
    QueueStatusSeen: RecordBuilder._queue_status_seen,
    SurveyAnswered: RecordBuilder._survey,
    LanguageChosen: RecordBuilder._language,
    CallbackOffered: RecordBuilder._callback_offered,
    WaitAbandoned: RecordBuilder._wait_abandoned,
    IvrAbandoned: RecordBuilder._ivr_abandoned,
    DispositionGiven: RecordBuilder._disposition_given,
    CallbackReported: RecordBuilder._callback_reported,
}

_Handler = Callable[[RecordBuilder, _Call, Mapping[str, str], float], None]
_HANDLERS: dict[str, _Handler] = {
    "Newchannel": RecordBuilder._ami_newchannel,
    "UserEvent": RecordBuilder._ami_user_event,
    "QueueCallerJoin": RecordBuilder._ami_queue_join,
    "QueueCallerLeave": RecordBuilder._ami_queue_leave,
    "QueueCallerAbandon": RecordBuilder._ami_queue_abandon,
    "AgentCalled": RecordBuilder._ami_agent_called,
    "AgentRingNoAnswer": RecordBuilder._ami_ring_no_answer,
    "AgentConnect": RecordBuilder._ami_agent_connect,
    "AgentComplete": RecordBuilder._ami_agent_complete,
    "DialBegin": RecordBuilder._ami_dial_begin,
    "DialEnd": RecordBuilder._ami_dial_end,
    "BlindTransfer": RecordBuilder._ami_blind_transfer,
    "AttendedTransfer": RecordBuilder._ami_attended_transfer,
    "Hold": RecordBuilder._ami_hold,
    "Unhold": RecordBuilder._ami_unhold,
    "BridgeEnter": RecordBuilder._ami_bridge_enter,
    "BridgeLeave": RecordBuilder._ami_bridge_leave,
    "HangupRequest": RecordBuilder._ami_hangup_request,
    "Hangup": RecordBuilder._ami_hangup,
}
