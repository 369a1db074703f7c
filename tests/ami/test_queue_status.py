"""Parsing the QueueStatus reply of the capture into a reconcile picture."""

from __future__ import annotations

import pytest

from routing.live.events import DeviceState
from routing.live.queue_status import IncompleteQueueStatus, QueueStatusAssembler, parse_queue_status
from tests.ami.helpers import fixture_messages


def reply(action_id: str) -> list[dict[str, str]]:
    return [
        m for m in fixture_messages("queue_status_summary_withdraw.txt") if m.get("ActionID") == action_id
    ]


def test_single_queue_reply_with_two_waiting_callers() -> None:
    picture = parse_queue_status(reply("q-2"), ts=1000.0)
    queue = picture.queues["council-revenues"]
    assert picture.action_id == "q-2"
    assert queue.calls == 2
    assert [(c.uniqueid, c.position, c.wait_s) for c in queue.callers] == [
        ("1795533385.31", 1, 3),
        ("1795533387.33", 2, 1),
    ]
    (member,) = queue.members
    assert (member.interface, member.name, member.status) == (
        "PJSIP/agent1",
        "Agent One",
        DeviceState.RINGING,
    )
    assert (member.logged_in, member.available) == (True, False)


def test_all_queues_reply_includes_empty_queue() -> None:
    picture = parse_queue_status(reply("q-3"), ts=1000.0)
    assert set(picture.queues) == {"probe-queue", "council-revenues"}
    assert picture.queues["probe-queue"].callers == ()


def test_unknown_queue_gives_an_empty_picture() -> None:
    assert parse_queue_status(reply("q-6"), ts=1.0).queues == {}


def test_a_lost_item_is_detected_by_list_items() -> None:
    items = reply("q-2")
    del items[2]  # one QueueMember / QueueEntry missing
    with pytest.raises(IncompleteQueueStatus):
        parse_queue_status(items, ts=1.0)


def test_assembler_returns_the_picture_only_on_complete() -> None:
    assembler = QueueStatusAssembler("q-2")
    results = [assembler.add(m, 5.0) for m in reply("q-2")]
    assert all(r is None for r in results[:-1])
    assert results[-1] is not None
    assert results[-1].observed_at == 5.0


def test_an_item_without_its_required_headers_makes_the_reply_incomplete() -> None:
    # Found by fuzzing: a QueueMember without Location (or any item without Queue) raised
    # KeyError out of the assembler, and so out of the AMI callback that must never raise.
    for broken in ({"Event": "QueueMember", "Queue": "q"}, {"Event": "QueueParams"}, {"Event": "QueueEntry"}):
        assembler = QueueStatusAssembler("a")
        assert assembler.add({**broken, "ActionID": "a"}, 1.0) is None
        with pytest.raises(IncompleteQueueStatus, match="ListItems 1, received 0"):
            assembler.add({"Event": "QueueStatusComplete", "ActionID": "a", "ListItems": "1"}, 1.0)
