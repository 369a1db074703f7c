"""Pure parsing of the ``QueueStatus`` action's reply into a reconcile picture.

What Asterisk 22 sends for ``Action: QueueStatus`` (with or without ``Queue:``):

* ``Response: Success`` / ``ActionID`` / ``EventList: start`` /
  ``Message: Queue status will follow``;
* per queue one ``QueueParams`` (Queue, Max, Strategy, Calls, Holdtime, TalkTime,
  Completed, Abandoned, ServiceLevel, ServicelevelPerf, ServicelevelPerf2, Weight,
  ActionID), then one ``QueueMember`` per member (Queue, Name, Location,
  StateInterface, Membership, Penalty, CallsTaken, LastCall, LastPause, LoginTime,
  InCall, Status, Paused, PausedReason, Wrapuptime, ActionID), then one ``QueueEntry``
  per waiting caller (Queue, Position, Channel, Uniqueid, CallerIDNum, CallerIDName,
  ConnectedLineNum, ConnectedLineName, Wait, Priority, ActionID);
* ``QueueStatusComplete`` with ``ActionID``, ``EventList: Complete`` and ``ListItems``
  (the number of items above). An unknown queue gives ``ListItems: 0``, not an error.

``Wait`` is whole seconds, so a caller's join time is known to within a second.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from routing.live.events import MemberStatus, member_event

Headers = Mapping[str, str]

QUEUE_STATUS_ITEMS = frozenset({"QueueParams", "QueueMember", "QueueEntry"})


@dataclass(frozen=True, slots=True)
class QueuedCaller:
    """One ``QueueEntry``: a caller waiting for ``wait_s`` whole seconds."""

    uniqueid: str
    channel: str
    position: int
    wait_s: int
    caller_id_num: str
    caller_id_name: str


@dataclass(frozen=True, slots=True)
class QueuePicture:
    """Everything QueueStatus said about one queue."""

    queue: str
    calls: int
    members: tuple[MemberStatus, ...] = ()
    callers: tuple[QueuedCaller, ...] = ()


@dataclass(frozen=True, slots=True)
class QueueStatusPicture:
    """The whole QueueStatus reply, received complete at ``observed_at`` (Unix s)."""

    queues: Mapping[str, QueuePicture]
    observed_at: float
    action_id: str = ""


class IncompleteQueueStatus(ValueError):
    """The reply's item count differs from ``ListItems``: some items were lost."""


def _int(value: str | None) -> int:
    try:
        return int(value) if value else 0
    except ValueError:
        return 0


def _entry(h: Headers) -> QueuedCaller:
    return QueuedCaller(
        uniqueid=h["Uniqueid"],
        channel=h.get("Channel", ""),
        position=_int(h.get("Position")),
        wait_s=_int(h.get("Wait")),
        caller_id_num=h.get("CallerIDNum", ""),
        caller_id_name=h.get("CallerIDName", ""),
    )


@dataclass
class _Draft:
    queue: str
    calls: int = 0
    members: list[MemberStatus] = field(default_factory=list)
    callers: list[QueuedCaller] = field(default_factory=list)

    def freeze(self) -> QueuePicture:
        return QueuePicture(self.queue, self.calls, tuple(self.members), tuple(self.callers))


class QueueStatusAssembler:
    """Collects one QueueStatus reply item by item, in stream order."""

    def __init__(self, action_id: str) -> None:
        self.action_id = action_id
        self._drafts: dict[str, _Draft] = {}
        self._items = 0

    def add(self, h: Headers, ts: float) -> QueueStatusPicture | None:
        """Feed one list event; returns the picture on ``QueueStatusComplete``.

        Raises IncompleteQueueStatus when ``ListItems`` disagrees with what arrived. An item
        missing a header it needs (``Queue``; a member's ``Location``, a caller's
        ``Uniqueid``) is not counted, so the reply it came in is incomplete."""
        name = h.get("Event", "")
        if name == "QueueStatusComplete":
            return self._complete(h, ts)
        if name in QUEUE_STATUS_ITEMS and self._add_item(name, h, ts):
            self._items += 1
        return None

    def _add_item(self, name: str, h: Headers, ts: float) -> bool:
        queue = h.get("Queue")
        try:
            member = member_event(MemberStatus, h, ts) if name == "QueueMember" else None
            caller = _entry(h) if name == "QueueEntry" else None
        except KeyError:
            return False
        if queue is None:
            return False
        draft = self._drafts.setdefault(queue, _Draft(queue))
        if member is not None:
            draft.members.append(member)
        elif caller is not None:
            draft.callers.append(caller)
        else:
            draft.calls = _int(h.get("Calls"))
        return True

    def _complete(self, h: Headers, ts: float) -> QueueStatusPicture:
        expected = _int(h.get("ListItems"))
        if expected != self._items:
            raise IncompleteQueueStatus(f"ListItems {expected}, received {self._items}")
        queues = {name: draft.freeze() for name, draft in self._drafts.items()}
        return QueueStatusPicture(queues, observed_at=ts, action_id=self.action_id)


def parse_queue_status(messages: Iterable[Headers], ts: float) -> QueueStatusPicture:
    """The picture from a complete QueueStatus reply (response first, Complete last)."""
    assembler: QueueStatusAssembler | None = None
    for h in messages:
        if assembler is None:
            assembler = QueueStatusAssembler(h.get("ActionID", ""))
        picture = assembler.add(h, ts)
        if picture is not None:
            return picture
    raise IncompleteQueueStatus("no QueueStatusComplete in the reply")
