"""The fake AMI server's model of app_queue: queues, members, waiting callers.

Each operation changes the model and returns the events Asterisk 22 sends for it, in
the order of the captures (only the events that matter to queue state plus the
``Hangup``; channel noise such as VarSet/Newexten can be added with :meth:`noise`).
QueueStatus answers from the same model, so replies agree with the events emitted.
Pure: the caller passes ``now`` (Unix seconds).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from emulator.ami_wire import (
    Channel,
    MemberRecord,
    Message,
    agent_event,
    channel_event,
    list_complete,
    member_event,
    queue_entry_item,
    queue_member_item,
    queue_params,
    with_action_id,
)
from routing.core.linkedid import make_uniqueid

NOT_INUSE, INUSE, RINGING = 1, 2, 6


@dataclass(slots=True)
class Caller:
    """A caller waiting in a queue (or connected to an agent after it)."""

    channel: Channel
    queue: str
    joined_at: float
    original_position: int
    agent: Channel | None = None
    interface: str = ""
    withdraw_info: str | None = None
    connected_at: float = 0.0


@dataclass(slots=True)
class Queue:
    name: str
    members: dict[str, MemberRecord] = field(default_factory=dict)
    waiting: list[Caller] = field(default_factory=list)
    completed: int = 0
    abandoned: int = 0


class QueueModel:
    """Queues and calls; the source of truth the fake AMI server reports."""

    def __init__(self, epoch: int = 1795533300, system_name: str = "") -> None:
        self.system_name = system_name  # asterisk.conf systemname: "" (unset) or the ids' prefix
        self.queues: dict[str, Queue] = {}
        self.connected: dict[str, Caller] = {}
        self._epoch = epoch
        self._seq = 0

    # --- identities ------------------------------------------------------------------

    def next_uniqueid(self) -> str:
        """A fresh Asterisk-like Uniqueid (``[<systemname>-]<epoch>.<sequence>``)."""
        self._seq += 1
        return make_uniqueid(self._epoch + self._seq // 10, self._seq, self.system_name)

    def new_channel(self, tech: str, name: str, num: str) -> Channel:
        """A fresh channel with Asterisk-like name and Uniqueid."""
        uid = self.next_uniqueid()
        return Channel(f"{tech}-{self._seq:08x}", uid, caller_id_num=num, caller_id_name=name)

    def queue(self, name: str) -> Queue:
        """The queue, created empty if new (as a queues.conf entry)."""
        return self.queues.setdefault(name, Queue(name))

    def find_caller(self, uniqueid: str) -> Caller | None:
        """A waiting or connected caller by Uniqueid."""
        for q in self.queues.values():
            for c in q.waiting:
                if c.channel.uniqueid == uniqueid:
                    return c
        return self.connected.get(uniqueid)

    def find_by_channel(self, channel: str) -> Caller | None:
        """A waiting or connected caller by channel name."""
        for c in [*self.connected.values(), *(c for q in self.queues.values() for c in q.waiting)]:
            if c.channel.name == channel:
                return c
        return None

    # --- members ---------------------------------------------------------------------

    def add_member(
        self, queue: str, interface: str, name: str, now: float, membership: str = "dynamic"
    ) -> list[Message]:
        """QueueAdd: ``QueueMemberAdded``."""
        m = MemberRecord(queue, interface, name, membership=membership, login_time=int(now))
        self.queue(queue).members[interface] = m
        return [member_event("QueueMemberAdded", m)]

    def remove_member(self, queue: str, interface: str) -> list[Message]:
        """QueueRemove: ``QueueMemberRemoved``."""
        m = self.queue(queue).members.pop(interface)
        return [member_event("QueueMemberRemoved", m)]

    def pause_member(self, interface: str, paused: bool, reason: str, now: float) -> list[Message]:
        """QueuePause (in every queue of the interface): ``QueueMemberPause`` each."""
        out: list[Message] = []
        for m in self._members_of(interface):
            m.paused, m.paused_reason = paused, reason if paused else ""
            m.last_pause = int(now) if paused else m.last_pause
            out.append(member_event("QueueMemberPause", m))
        return out

    def set_status(self, interface: str, status: int, in_call: bool | None = None) -> list[Message]:
        """A device state change: ``QueueMemberStatus`` in every queue of the interface."""
        out: list[Message] = []
        for m in self._members_of(interface):
            m.status = status
            m.in_call = m.in_call if in_call is None else in_call
            out.append(member_event("QueueMemberStatus", m))
        return out

    def _members_of(self, interface: str) -> list[MemberRecord]:
        return [q.members[interface] for q in self.queues.values() if interface in q.members]

    # --- callers ---------------------------------------------------------------------

    def join(self, queue: str, ch: Channel, now: float, position: int = 0) -> list[Message]:
        """Queue(): ``QueueCallerJoin`` with Position and Count. ``position`` (Queue()'s 9th
        argument; 0: none) enters the caller there, as app_queue's ``join_queue`` does when no
        caller has a higher priority (every caller here has priority 0)."""
        q = self.queue(queue)
        at = min(position, len(q.waiting) + 1) if position > 0 else len(q.waiting) + 1
        caller = Caller(ch, queue, now, original_position=at)
        q.waiting.insert(at - 1, caller)
        extra = [("Queue", queue), ("Position", str(at)), ("Count", str(len(q.waiting)))]
        return [channel_event("QueueCallerJoin", "agent,all", ch, *extra)]

    def _leave(self, caller: Caller) -> Message:
        q = self.queues[caller.queue]
        pos = q.waiting.index(caller) + 1
        q.waiting.remove(caller)
        extra = [("Queue", q.name), ("Position", str(pos)), ("Count", str(len(q.waiting)))]
        return channel_event("QueueCallerLeave", "agent,all", caller.channel, *extra)

    def _abandon(self, caller: Caller, now: float) -> Message:
        q = self.queues[caller.queue]
        q.abandoned += 1
        extra = [
            ("Queue", q.name),
            ("Position", str(q.waiting.index(caller) + 1)),
            ("OriginalPosition", str(caller.original_position)),
            ("HoldTime", str(int(now - caller.joined_at))),
        ]
        return channel_event("QueueCallerAbandon", "agent,all", caller.channel, *extra)

    def abandon(self, uniqueid: str, now: float) -> list[Message]:
        """The caller hangs up while waiting: HangupRequest (no Cause: the caller's BYE), Abandon,
        Leave, Hangup (cause 0), as ``ami_queue_caller_abandon.txt``."""
        caller = self._waiting(uniqueid)
        request = channel_event("HangupRequest", "call,all", caller.channel)
        hangup = channel_event("Hangup", "call,all", caller.channel, ("Cause", "0"), ("Cause-txt", "Unknown"))
        return [request, self._abandon(caller, now), self._leave(caller), hangup]

    def time_out(self, uniqueid: str, now: float) -> list[Message]:
        """Queue() timeout (or an executed QueueWithdrawCaller): Abandon then Leave;
        the caller's dialplan continues, so no Hangup here."""
        caller = self._waiting(uniqueid)
        return [self._abandon(caller, now), self._leave(caller)]

    def exit_with_key(self, uniqueid: str) -> list[Message]:
        """A digit took the caller out of Queue() to the queue's context (app_queue
        ``valid_exit``): ``QueueCallerLeave`` only; ``record_abandoned`` is not called on that
        path (queue_exec's ``qe.valid_digits``), so no ``QueueCallerAbandon``."""
        return [self._leave(self._waiting(uniqueid))]

    def position(self, uniqueid: str) -> int:
        """The waiting caller's place (1 = next), as ``QUEUEPOSITION`` reports it on leaving."""
        caller = self._waiting(uniqueid)
        return self.queues[caller.queue].waiting.index(caller) + 1

    def _waiting(self, uniqueid: str) -> Caller:
        caller = self.find_caller(uniqueid)
        if caller is None or caller.agent is not None:
            raise KeyError(f"no caller {uniqueid} waiting")
        return caller

    def answer(self, uniqueid: str, interface: str, agent: Channel, now: float) -> list[Message]:
        """An agent answers: AgentCalled, Status 6, Leave, AgentConnect, Status 2 InCall 1."""
        caller = self._waiting(uniqueid)
        m = self.queues[caller.queue].members[interface]
        hold = str(int(now - caller.joined_at))
        called = agent_event(
            "AgentCalled",
            caller.channel,
            agent,
            ("Queue", caller.queue),
            ("Interface", interface),
            ("MemberName", m.name),
        )
        out = [called, *self.set_status(interface, RINGING), self._leave(caller)]
        connect = agent_event(
            "AgentConnect",
            caller.channel,
            agent,
            ("Queue", caller.queue),
            ("Interface", interface),
            ("MemberName", m.name),
            ("HoldTime", hold),
            ("RingTime", "0"),
        )
        caller.agent, caller.interface, caller.connected_at = agent, interface, now
        self.connected[uniqueid] = caller
        return [*out, connect, *self.set_status(interface, INUSE, in_call=True)]

    def complete(self, uniqueid: str, now: float, reason: str = "caller", cause: int = 16) -> list[Message]:
        """The answered call ends: AgentComplete (HoldTime: the wait before the answer,
        TalkTime: since the answer, whole seconds, as ``ami_queue_answered_call.txt``), both
        Hangups (Cause 16, or the cause the call ended with: 17 when a callback's caller was
        busy, ``callback_originate.txt``), Status 1 InCall 0."""
        joined, connected = self.connected[uniqueid].joined_at, self.connected[uniqueid].connected_at
        hold_s, talk_s = int(connected - joined), int(now - connected)
        caller, done = self._agent_complete(uniqueid, now, reason, hold_s=hold_s, talk_s=talk_s)
        assert caller.agent is not None
        text = {16: "Normal Clearing", 17: "User busy"}.get(cause, "Unknown")
        headers = (("Cause", str(cause)), ("Cause-txt", text))
        hangups = [channel_event("Hangup", "call,all", ch, *headers) for ch in (caller.channel, caller.agent)]
        return [done, *hangups, *self.set_status(caller.interface, NOT_INUSE, in_call=False)]

    def agent_hangs_up(self, uniqueid: str, now: float) -> tuple[list[Message], list[Message]]:
        """The adviser ends an answered call (``ami_queue_call_disposition.txt``): before the
        adviser's hangup handlers run, their ``HangupRequest`` (no Cause) and ``AgentComplete``
        (``Reason: agent``); after them, their ``Hangup`` (16) and ``QueueMemberStatus`` 1.
        With Queue() option c the caller's dialplan goes on: no Hangup of the caller here."""
        joined, connected = self.connected[uniqueid].joined_at, self.connected[uniqueid].connected_at
        hold_s, talk_s = int(connected - joined), int(now - connected)
        caller, done = self._agent_complete(uniqueid, now, "agent", hold_s=hold_s, talk_s=talk_s)
        assert caller.agent is not None
        request = channel_event("HangupRequest", "call,all", caller.agent)
        cause = (("Cause", "16"), ("Cause-txt", "Normal Clearing"))
        hangup = channel_event("Hangup", "call,all", caller.agent, *cause)
        return [request, done], [hangup, *self.set_status(caller.interface, NOT_INUSE, in_call=False)]

    def _agent_complete(
        self, uniqueid: str, now: float, reason: str, *, hold_s: int, talk_s: int
    ) -> tuple[Caller, Message]:
        """The connected call ``uniqueid`` ends: counted, and its ``AgentComplete``."""
        caller = self.connected.pop(uniqueid)
        assert caller.agent is not None
        q = self.queues[caller.queue]
        q.completed += 1
        m = q.members[caller.interface]
        m.calls_taken, m.last_call = m.calls_taken + 1, int(now)
        done = agent_event(
            "AgentComplete",
            caller.channel,
            caller.agent,
            ("Queue", q.name),
            ("Interface", caller.interface),
            ("MemberName", m.name),
            ("HoldTime", str(hold_s)),
            ("TalkTime", str(talk_s)),
            ("Reason", reason),
        )
        return caller, done

    # --- QueueStatus -------------------------------------------------------------------

    def queue_status(self, action_id: str | None, now: float, only: str | None) -> list[Message]:
        """The QueueStatus list items and ``QueueStatusComplete`` (no Response)."""
        items: list[Message] = []
        for q in self.queues.values():
            if only is None or q.name == only:
                items += self._queue_items(q, now)
        items = [with_action_id(m, action_id) for m in items]
        return [*items, list_complete("QueueStatusComplete", action_id, len(items))]

    def _queue_items(self, q: Queue, now: float) -> list[Message]:
        items = [queue_params(q.name, len(q.waiting), q.completed, q.abandoned)]
        items += [queue_member_item(m) for m in q.members.values()]
        for pos, c in enumerate(q.waiting, start=1):
            items.append(queue_entry_item(q.name, pos, c.channel, int(now - c.joined_at)))
        return items

    # --- replayed captures -------------------------------------------------------------

    def absorb(self, h: Mapping[str, str], now: float) -> None:
        """Follow a replayed event so later QueueStatus replies agree with it."""
        name = h.get("Event", "")
        if name == "QueueCallerJoin":
            ch = Channel(h["Channel"], h["Uniqueid"], h.get("CallerIDNum", ""), h.get("CallerIDName", ""))
            self.queue(h["Queue"]).waiting.append(Caller(ch, h["Queue"], now, int(h["Position"])))
        elif name == "QueueCallerLeave":
            q = self.queue(h["Queue"])
            q.waiting = [c for c in q.waiting if c.channel.uniqueid != h["Uniqueid"]]
        elif name == "QueueMemberRemoved":
            self.queue(h["Queue"]).members.pop(h["Interface"], None)
        elif name.startswith("QueueMember"):
            self.queue(h["Queue"]).members[h["Interface"]] = _member_from(h)


def _member_from(h: Mapping[str, str]) -> MemberRecord:
    return MemberRecord(
        queue=h["Queue"],
        interface=h["Interface"],
        name=h.get("MemberName", ""),
        membership=h.get("Membership", "static"),
        penalty=int(h.get("Penalty", "0")),
        calls_taken=int(h.get("CallsTaken", "0")),
        last_call=int(h.get("LastCall", "0")),
        last_pause=int(h.get("LastPause", "0")),
        login_time=int(h.get("LoginTime", "0")),
        in_call=h.get("InCall") == "1",
        status=int(h.get("Status", "1")),
        paused=h.get("Paused") == "1",
        paused_reason=h.get("PausedReason", ""),
        ringinuse=h.get("Ringinuse") == "1",
        wrapuptime=int(h.get("Wrapuptime", "0")),
    )
