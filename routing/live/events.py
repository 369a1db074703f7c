"""Pure conversion of AMI events into typed queue events (no I/O, no clock).

Input is one AMI message as a mapping of header name to value, exactly as Asterisk
22 sends it (``{"Event": "QueueCallerJoin", "Privilege": "agent,all", ...}``), plus
``ts``: when the controller received it (Unix seconds). AMI events carry no time of
their own, so every domain event is stamped with ``ts`` and the store uses it to
order updates (later wins).

What Asterisk sends for a queued call (captures of Asterisk 22.10.1, app_queue):

* join: ``QueueCallerJoin`` (Queue, Position, Count, and the caller's channel block);
* an agent is rung: ``AgentCalled``, then ``QueueMemberStatus`` with Status 6 (ringing);
* answered: ``QueueCallerLeave`` (Count now excludes the caller), ``AgentConnect``
  (HoldTime, RingTime in seconds), ``QueueMemberStatus`` Status 2 InCall 1, and at the
  end ``AgentComplete`` (HoldTime, TalkTime, Reason) and ``QueueMemberStatus`` Status 1;
* the caller hangs up while waiting: ``QueueCallerAbandon`` then ``QueueCallerLeave``;
* the Queue() timeout expires: ``AgentRingNoAnswer`` (RingTime in **milliseconds**),
  then ``QueueCallerAbandon`` **and** ``QueueCallerLeave``: Asterisk reports a timeout
  as an abandon, so ``CallerAbandoned`` does not mean the caller hung up;
* ``QueueWithdrawCaller``: after the current ring attempt and the retry pause,
  ``QueueCallerAbandon`` then ``QueueCallerLeave`` as for a timeout.

So a caller stops waiting exactly at ``QueueCallerLeave``; the store ignores
``CallerAbandoned`` for the waiting count. ``DTMFBegin``/``DTMFEnd`` are never
converted: :func:`is_dtmf` lets the AMI callback drop them on arrival.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import IntEnum
from functools import partial
from typing import TypeVar

Headers = Mapping[str, str]


class DeviceState(IntEnum):
    """``Status`` of QueueMember* events: Asterisk's ``AST_DEVICE_*`` values."""

    UNKNOWN = 0
    NOT_INUSE = 1
    INUSE = 2
    BUSY = 3
    INVALID = 4
    UNAVAILABLE = 5
    RINGING = 6
    RINGINUSE = 7
    ONHOLD = 8


LOGGED_OUT_STATES = frozenset({DeviceState.INVALID, DeviceState.UNAVAILABLE})
"""States app_queue does not count as logged in (QueueSummary ``LoggedIn``)."""

FREE_STATES = frozenset({DeviceState.NOT_INUSE, DeviceState.UNKNOWN})
"""States app_queue rings a member in (its ``member_status_available``): an unknown
device state counts as free, as Asterisk itself treats it."""


def device_state(value: str) -> DeviceState:
    """The numeric ``Status`` header as a DeviceState (unknown codes -> UNKNOWN)."""
    try:
        return DeviceState(int(value))
    except ValueError:
        return DeviceState.UNKNOWN


def is_dtmf(event_name: str) -> bool:
    """True for ``DTMFBegin``/``DTMFEnd``: keypresses are never kept or converted."""
    return event_name.startswith("DTMF")


# --- domain events ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallerJoined:
    """``QueueCallerJoin``: a caller started waiting in ``queue`` at ``ts``."""

    queue: str
    uniqueid: str
    channel: str
    caller_id_num: str
    caller_id_name: str
    position: int
    count: int
    ts: float


@dataclass(frozen=True, slots=True)
class CallerLeft:
    """``QueueCallerLeave``: the caller stopped waiting (answered, abandoned, timed out,
    withdrawn); ``count`` is the number still waiting."""

    queue: str
    uniqueid: str
    position: int
    count: int
    ts: float


@dataclass(frozen=True, slots=True)
class CallerAbandoned:
    """``QueueCallerAbandon``: hang-up, queue timeout or withdraw; always followed by
    ``QueueCallerLeave``. ``hold_time_s`` is whole seconds waited."""

    queue: str
    uniqueid: str
    position: int
    original_position: int
    hold_time_s: int
    ts: float


@dataclass(frozen=True, slots=True)
class MemberEvent:
    """The member record every ``QueueMember*`` event carries (same headers for Status,
    Added, Removed, Pause, Penalty and Ringinuse)."""

    queue: str
    interface: str
    name: str
    state_interface: str
    membership: str
    status: DeviceState
    paused: bool
    paused_reason: str
    in_call: bool
    penalty: int
    calls_taken: int
    ts: float

    @property
    def logged_in(self) -> bool:
        """Counted in QueueSummary ``LoggedIn``: device neither invalid nor unavailable."""
        return self.status not in LOGGED_OUT_STATES

    @property
    def available(self) -> bool:
        """Free for a call now: logged in, not paused, not in a call, device free."""
        return self.logged_in and not self.paused and not self.in_call and self.status in FREE_STATES


@dataclass(frozen=True, slots=True)
class MemberStatus(MemberEvent):
    """``QueueMemberStatus`` (device state change), also ``QueueMemberPenalty`` and
    ``QueueMemberRinginuse``, which carry the same full record."""


@dataclass(frozen=True, slots=True)
class MemberAdded(MemberEvent):
    """``QueueMemberAdded`` (QueueAdd or a dynamic login; Membership ``dynamic``)."""


@dataclass(frozen=True, slots=True)
class MemberRemoved(MemberEvent):
    """``QueueMemberRemoved`` (QueueRemove; static members cannot be removed)."""


@dataclass(frozen=True, slots=True)
class MemberPaused(MemberEvent):
    """``QueueMemberPause``: ``paused`` and ``paused_reason`` changed (Status does not)."""


@dataclass(frozen=True, slots=True)
class AgentCalled:
    """``AgentCalled``: a member's device starts ringing for the caller ``uniqueid``."""

    queue: str
    uniqueid: str
    interface: str
    member_name: str
    ts: float


@dataclass(frozen=True, slots=True)
class AgentConnect:
    """``AgentConnect``: answered; ``hold_time_s``/``ring_time_s`` in whole seconds."""

    queue: str
    uniqueid: str
    interface: str
    member_name: str
    hold_time_s: int
    ring_time_s: int
    ts: float


@dataclass(frozen=True, slots=True)
class AgentComplete:
    """``AgentComplete``: the answered call ended; ``reason`` is who hung up (``caller``,
    ``agent``, ``transfer``)."""

    queue: str
    uniqueid: str
    interface: str
    member_name: str
    hold_time_s: int
    talk_time_s: int
    reason: str
    ts: float


@dataclass(frozen=True, slots=True)
class AgentRingNoAnswer:
    """``AgentRingNoAnswer``: a ring attempt timed out; ``ring_time_ms`` is in
    milliseconds (unlike AgentConnect's RingTime, which is seconds)."""

    queue: str
    uniqueid: str
    interface: str
    member_name: str
    ring_time_ms: int
    ts: float


@dataclass(frozen=True, slots=True)
class Hangup:
    """``Hangup`` of any channel (callers and agent legs alike)."""

    uniqueid: str
    channel: str
    cause: int
    cause_txt: str
    ts: float


QueueEvent = (
    CallerJoined
    | CallerLeft
    | CallerAbandoned
    | MemberStatus
    | MemberAdded
    | MemberRemoved
    | MemberPaused
    | AgentCalled
    | AgentConnect
    | AgentComplete
    | AgentRingNoAnswer
    | Hangup
)


# --- conversion ------------------------------------------------------------------------

M = TypeVar("M", bound=MemberEvent)


def _int(value: str | None, default: int = 0) -> int:
    try:
        return int(value) if value else default
    except ValueError:
        return default


def _caller_joined(h: Headers, ts: float) -> CallerJoined:
    return CallerJoined(
        queue=h["Queue"],
        uniqueid=h["Uniqueid"],
        channel=h.get("Channel", ""),
        caller_id_num=h.get("CallerIDNum", ""),
        caller_id_name=h.get("CallerIDName", ""),
        position=_int(h.get("Position")),
        count=_int(h.get("Count")),
        ts=ts,
    )


def _caller_left(h: Headers, ts: float) -> CallerLeft:
    return CallerLeft(
        queue=h["Queue"],
        uniqueid=h["Uniqueid"],
        position=_int(h.get("Position")),
        count=_int(h.get("Count")),
        ts=ts,
    )


def _caller_abandoned(h: Headers, ts: float) -> CallerAbandoned:
    return CallerAbandoned(
        queue=h["Queue"],
        uniqueid=h["Uniqueid"],
        position=_int(h.get("Position")),
        original_position=_int(h.get("OriginalPosition")),
        hold_time_s=_int(h.get("HoldTime")),
        ts=ts,
    )


def member_event(cls: type[M], h: Headers, ts: float) -> M:
    """A MemberEvent of type ``cls`` from a QueueMember* event or from a QueueStatus
    ``QueueMember`` item (which names the interface ``Location`` and the name ``Name``)."""
    return cls(
        queue=h["Queue"],
        interface=h.get("Interface") or h["Location"],
        name=h.get("MemberName", h.get("Name", "")),
        state_interface=h.get("StateInterface", ""),
        membership=h.get("Membership", ""),
        status=device_state(h.get("Status", "0")),
        paused=h.get("Paused") == "1",
        paused_reason=h.get("PausedReason", ""),
        in_call=h.get("InCall") == "1",
        penalty=_int(h.get("Penalty")),
        calls_taken=_int(h.get("CallsTaken")),
        ts=ts,
    )


def _agent_called(h: Headers, ts: float) -> AgentCalled:
    return AgentCalled(h["Queue"], h["Uniqueid"], h["Interface"], h.get("MemberName", ""), ts)


def _agent_connect(h: Headers, ts: float) -> AgentConnect:
    return AgentConnect(
        h["Queue"],
        h["Uniqueid"],
        h["Interface"],
        h.get("MemberName", ""),
        hold_time_s=_int(h.get("HoldTime")),
        ring_time_s=_int(h.get("RingTime")),
        ts=ts,
    )


def _agent_complete(h: Headers, ts: float) -> AgentComplete:
    return AgentComplete(
        h["Queue"],
        h["Uniqueid"],
        h["Interface"],
        h.get("MemberName", ""),
        hold_time_s=_int(h.get("HoldTime")),
        talk_time_s=_int(h.get("TalkTime")),
        reason=h.get("Reason", ""),
        ts=ts,
    )


def _agent_ring_no_answer(h: Headers, ts: float) -> AgentRingNoAnswer:
    return AgentRingNoAnswer(
        h["Queue"],
        h["Uniqueid"],
        h["Interface"],
        h.get("MemberName", ""),
        ring_time_ms=_int(h.get("RingTime")),
        ts=ts,
    )


def _hangup(h: Headers, ts: float) -> Hangup:
    return Hangup(
        uniqueid=h["Uniqueid"],
        channel=h.get("Channel", ""),
        cause=_int(h.get("Cause")),
        cause_txt=h.get("Cause-txt", ""),
        ts=ts,
    )


CONVERTERS: Mapping[str, Callable[[Headers, float], QueueEvent]] = {
    "QueueCallerJoin": _caller_joined,
    "QueueCallerLeave": _caller_left,
    "QueueCallerAbandon": _caller_abandoned,
    "QueueMemberStatus": partial(member_event, MemberStatus),
    "QueueMemberPenalty": partial(member_event, MemberStatus),
    "QueueMemberRinginuse": partial(member_event, MemberStatus),
    "QueueMemberAdded": partial(member_event, MemberAdded),
    "QueueMemberRemoved": partial(member_event, MemberRemoved),
    "QueueMemberPause": partial(member_event, MemberPaused),
    "AgentCalled": _agent_called,
    "AgentConnect": _agent_connect,
    "AgentComplete": _agent_complete,
    "AgentRingNoAnswer": _agent_ring_no_answer,
    "Hangup": _hangup,
}
"""AMI ``Event`` name -> converter. Every other event (VarSet, Newexten, Dial*, ...) is
of no use to queue state and converts to None."""


def to_queue_event(headers: Headers, ts: float) -> QueueEvent | None:
    """The domain event for one AMI event, or None when it carries no queue state.

    Events that belong to an action's reply (they carry an ``ActionID``, such as the
    QueueStatus list) are not live events and also give None; malformed events missing
    a required header give None rather than an error."""
    converter = CONVERTERS.get(headers.get("Event", ""))
    if converter is None or "ActionID" in headers:
        return None
    try:
        return converter(headers, ts)
    except KeyError:
        return None
