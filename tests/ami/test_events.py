"""Conversion of real Asterisk 22 AMI events (capture excerpts) into domain events."""

from __future__ import annotations

import pytest

from routing.live.events import (
    AgentCalled,
    AgentComplete,
    AgentConnect,
    AgentRingNoAnswer,
    CallerAbandoned,
    CallerJoined,
    CallerLeft,
    DeviceState,
    Hangup,
    MemberAdded,
    MemberPaused,
    MemberRemoved,
    MemberStatus,
    device_state,
    is_dtmf,
    member_event,
    to_queue_event,
)
from tests.ami.helpers import fixture_messages


def convert(name: str) -> list[object]:
    events = (to_queue_event(h, ts=100.0 + i) for i, h in enumerate(fixture_messages(name)))
    return [e for e in events if e is not None]


def test_queue_timeout_is_reported_as_abandon_then_leave() -> None:
    events = convert("queue_timeout.txt")
    kinds = [type(e).__name__ for e in events]
    assert kinds.index("CallerAbandoned") + 1 == kinds.index("CallerLeft")
    abandon = next(e for e in events if isinstance(e, CallerAbandoned))
    assert (abandon.queue, abandon.uniqueid, abandon.hold_time_s) == ("council-revenues", "1795533358.28", 8)
    assert abandon.original_position == 1
    no_answers = [e for e in events if isinstance(e, AgentRingNoAnswer)]
    assert [e.ring_time_ms for e in no_answers] == [5000, 1000]
    assert sum(isinstance(e, AgentCalled) for e in events) == 2


def test_join_carries_the_caller_and_position() -> None:
    join = next(e for e in convert("queue_timeout.txt") if isinstance(e, CallerJoined))
    assert join == CallerJoined(
        queue="council-revenues",
        uniqueid="1795533358.28",
        channel="PJSIP/sipp-0000001a",
        caller_id_num="01632960123",
        caller_id_name="Jane Resident",
        position=1,
        count=1,
        ts=join.ts,
    )


def test_answered_call_sequence_and_member_states() -> None:
    events = convert("queue_answered_call.txt")
    leave = next(e for e in events if isinstance(e, CallerLeft))
    assert (leave.count, leave.position) == (0, 1)
    connect = next(e for e in events if isinstance(e, AgentConnect))
    assert (connect.hold_time_s, connect.ring_time_s, connect.interface) == (2, 2, "PJSIP/agent1")
    complete = next(e for e in events if isinstance(e, AgentComplete))
    assert (complete.talk_time_s, complete.reason) == (6, "caller")
    statuses = [(e.status, e.in_call) for e in events if isinstance(e, MemberStatus)]
    assert statuses == [
        (DeviceState.RINGING, False),
        (DeviceState.INUSE, True),
        (DeviceState.NOT_INUSE, False),
    ]
    hangups = [e for e in events if isinstance(e, Hangup)]
    assert [(h.cause, h.cause_txt) for h in hangups] == [(16, "Normal Clearing")] * 2


def test_member_management_events() -> None:
    events = convert("queue_member_management.txt")
    added = next(e for e in events if isinstance(e, MemberAdded))
    assert (added.interface, added.name, added.membership, added.penalty) == (
        "PJSIP/agent2",
        "Agent Two",
        "dynamic",
        1,
    )
    pauses = [(e.interface, e.paused, e.paused_reason) for e in events if isinstance(e, MemberPaused)]
    assert pauses[0] == ("PJSIP/agent1", True, "lunch")
    assert ("PJSIP/agent2", False, "") in pauses
    penalty = [e for e in events if isinstance(e, MemberStatus)]
    assert [e.penalty for e in penalty] == [3, 3]  # QueueMemberPenalty, QueueMemberRinginuse
    removed = next(e for e in events if isinstance(e, MemberRemoved))
    assert removed.interface == "PJSIP/agent2"


@pytest.mark.parametrize(
    ("status", "paused", "in_call", "logged_in", "available"),
    [
        ("1", "0", "0", True, True),  # AST_DEVICE_NOT_INUSE
        ("0", "0", "0", True, True),  # AST_DEVICE_UNKNOWN: app_queue rings it too
        ("1", "1", "0", True, False),  # paused
        ("2", "0", "1", True, False),  # in use, in a queue call
        ("1", "0", "1", True, False),  # in call but device says free (wrap-up race)
        ("6", "0", "0", True, False),  # ringing
        ("3", "0", "0", True, False),  # busy
        ("8", "0", "0", True, False),  # on hold
        ("5", "0", "0", False, False),  # unavailable: not logged in
        ("4", "0", "0", False, False),  # invalid
    ],
)
def test_member_availability_by_device_state(
    status: str, paused: str, in_call: str, logged_in: bool, available: bool
) -> None:
    headers = {
        "Event": "QueueMemberStatus",
        "Queue": "q",
        "Interface": "PJSIP/a",
        "Status": status,
        "Paused": paused,
        "InCall": in_call,
    }
    event = member_event(MemberStatus, headers, 1.0)
    assert (event.logged_in, event.available) == (logged_in, available)


def test_dtmf_events_are_recognised_and_never_converted() -> None:
    messages = fixture_messages("dtmf_events.txt")
    assert len(messages) == 24
    assert all(is_dtmf(m["Event"]) for m in messages)
    assert all(to_queue_event(m, 1.0) is None for m in messages)


def test_list_items_and_noise_give_none() -> None:
    status = fixture_messages("queue_status_summary_withdraw.txt")
    entries = [m for m in status if m.get("Event") == "QueueEntry"]
    assert entries
    assert all(to_queue_event(m, 1.0) is None for m in entries)
    assert to_queue_event({"Event": "VarSet", "Variable": "X"}, 1.0) is None
    assert to_queue_event({"Event": "QueueCallerJoin"}, 1.0) is None  # malformed: no Queue


def test_unknown_status_code_is_unknown() -> None:
    assert device_state("42") is DeviceState.UNKNOWN
    assert device_state("x") is DeviceState.UNKNOWN
