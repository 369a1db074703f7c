"""Property tests of the pure AMI conversions over arbitrary header sets.

Documented outcomes: :func:`to_queue_event` gives a typed event or None ("malformed events
missing a required header give None rather than an error"); a QueueStatus reply assembles
into a picture, or raises :class:`IncompleteQueueStatus` when items are missing. Nothing else
may escape: both run inside the AMI callback, which must never raise."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from routing.live.events import CONVERTERS, to_queue_event
from routing.live.queue_status import (
    QUEUE_STATUS_ITEMS,
    IncompleteQueueStatus,
    QueueStatusAssembler,
    parse_queue_status,
)
from tests.fuzz.strategies import LINE_TEXT
from tests.fuzz.test_ami_wire import HEADER_NAMES

EVENT_NAMES = [*CONVERTERS, *QUEUE_STATUS_ITEMS, "QueueStatusComplete", "VarSet", "DTMFEnd"]
FIELD_NAMES = [*HEADER_NAMES, "Name", "MemberName", "Penalty", "CallsTaken", "HoldTime", "Wait", "Calls"]
VALUE = st.one_of(
    st.sampled_from(["0", "1", "2", "6", "-1", "99", "1e3", "٣", "9" * 5000, "council-revenues"]),
    LINE_TEXT,
)
HEADERS = st.builds(
    lambda event, fields: {"Event": event, **fields},
    st.sampled_from(EVENT_NAMES),
    st.dictionaries(
        st.one_of(st.sampled_from(FIELD_NAMES), st.sampled_from(HEADER_NAMES), LINE_TEXT), VALUE, max_size=6
    ),
)


@given(HEADERS, st.floats(allow_nan=False, allow_infinity=False))
def test_any_event_converts_or_gives_none(headers: dict[str, str], ts: float) -> None:
    event = to_queue_event(headers, ts)
    if event is None:
        return
    assert event.ts == ts
    for name in ("queue", "uniqueid", "interface", "channel"):
        value = getattr(event, name, "")
        assert value in headers.values() or value == ""


@given(st.lists(HEADERS, max_size=5), st.integers(min_value=0, max_value=10))
@example([{"Event": "QueueMember", "Queue": "q"}], 1)  # no Location: a KeyError escaped
@example([{"Event": "QueueParams"}], 1)  # no Queue
def test_any_queue_status_reply_assembles_or_is_incomplete(items: list[dict[str, str]], listed: int) -> None:
    reply = [{"Response": "Success", "ActionID": "a"}, *items]
    reply.append({"Event": "QueueStatusComplete", "ActionID": "a", "ListItems": str(listed)})
    try:
        picture = parse_queue_status(reply, 1.0)
    except IncompleteQueueStatus:
        return
    assert sum(len(q.members) + len(q.callers) for q in picture.queues.values()) <= len(items)
    assert len(picture.queues) <= len(items)


@given(st.lists(HEADERS, max_size=5))
def test_the_assembler_fed_item_by_item_never_raises_anything_else(items: list[dict[str, str]]) -> None:
    assembler = QueueStatusAssembler("a")
    for headers in items:
        try:
            assembler.add(headers, 1.0)
        except IncompleteQueueStatus:
            assembler = QueueStatusAssembler("a")
