"""Finished calls kept for late changes: held as objects the garbage collector never walks.

The builder keeps each finished call ``keep_s`` (an hour) so that a late disposition can make
version 2: 180,000 calls at 50 calls/s. Held as live objects they were about 45 tracked objects
each, and every full collection walked them all (half a second, a pause of the event loop that
serves calls: ``benchmarks/records_bench.py``). These tests check the structure, not a timing:
how many objects the collector tracks per kept call, and that a kept call comes back whole.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from records.builder import RecordBuilder
from records.facts import CallArrived, DispositionGiven, IvrAbandoned, KeyPressed, MenuEntered, RouteDecided
from tests.records.support import ami_events, builder, epoch_of, feed

SOURCE = "ami_queue_answered_call.txt"
CALLS = 2_000
GRACE = 2.0
AFTER = GRACE + 1.0  # a moment after a version is due


def answered_calls(count: int) -> Iterator[tuple[str, float, list[tuple[float, dict[str, str]]]]]:
    """The recorded answered queue call, ``count`` times under its own Linkedid (made one at a time)."""
    events = [e for e in ami_events(SOURCE) if e.headers.get("Linkedid")]
    epoch = epoch_of(events)
    original = events[0].headers["Linkedid"]
    for n in range(count):
        linkedid = f"{1_800_000_000 + n}.{n}"
        start = epoch + n * 0.02
        copies = []
        for event in events:
            headers = {**event.headers, "Linkedid": linkedid}
            if headers.get("Uniqueid") == original:
                headers["Uniqueid"] = linkedid
            elif "Uniqueid" in headers:
                headers["Uniqueid"] = f"{linkedid}1"
            copies.append((start + event.seconds, headers))
        yield linkedid, start, copies


def feed_call(
    b: RecordBuilder, linkedid: str, start: float, events: list[tuple[float, dict[str, str]]]
) -> None:
    b.feed_ivr(CallArrived(linkedid, start, "+441632960001", "01632960123", "harborough"))
    b.feed_ivr(MenuEntered(linkedid, start + 0.1, "main"))
    b.feed_ivr(KeyPressed(linkedid, start + 0.2, "main", "1"))
    b.feed_ivr(RouteDecided(linkedid, start + 0.3, "open", "queue revenues", ("open",)))
    for at, headers in events:
        b.feed_ami(headers, at)


def hangup_request(events: list[tuple[float, dict[str, str]]]) -> int:
    return next(i for i, (_, headers) in enumerate(events) if headers["Event"] == "HangupRequest")


def tracked() -> int:
    """Objects the garbage collector tracks, after a full collection."""
    gc.collect()
    return len(gc.get_objects())


def test_a_kept_call_costs_the_garbage_collector_less_than_one_object() -> None:
    b = builder(grace_s=GRACE, keep_s=3600.0)
    before = tracked()
    last = 0.0
    for linkedid, start, events in answered_calls(CALLS):
        feed_call(b, linkedid, start, events[: hangup_request(events)])  # answered, talking
        last = events[-1][0]
    live = tracked() - before
    assert live / CALLS > 10  # the measure sees what a call in progress holds
    for _linkedid, _start, events in answered_calls(CALLS):
        for at, headers in events[hangup_request(events) :]:  # the caller hangs up
            b.feed_ami(headers, at)
    assert len(b.due(last + AFTER)) == CALLS  # every version 1 handed out
    assert len(b) == CALLS  # and every call kept for late changes
    kept = tracked() - before
    assert kept / CALLS < 1, f"{kept / CALLS:.1f} tracked objects per kept call"


def test_a_late_disposition_brings_a_kept_call_back_whole() -> None:
    b = builder(grace_s=GRACE, keep_s=3600.0)
    [(linkedid, start, events)] = answered_calls(1)
    feed_call(b, linkedid, start, events)
    end = events[-1][0] + AFTER
    [first] = b.due(end)
    assert b.record(linkedid, version=1, updated_at=end) == first  # what is kept makes the same record
    b.feed_ivr(DispositionGiven(linkedid, end + 600, "resolved", by="PJSIP/agent1"))
    [second] = b.due(end + 600 + AFTER)
    assert second.version == 2
    assert second.disposition is not None
    assert (
        second.model_copy(update={"version": 1, "updated_at": first.updated_at, "disposition": None}) == first
    )
    assert b.due(end + 7200) == []
    assert len(b) == 0  # forgotten keep_s after the last change


@pytest.mark.parametrize(
    "name",
    [
        "ami_queue_answered_call.txt",
        "ami_queue_caller_abandon.txt",
        "ami_queue_timeout.txt",
        "ami_queue_status_summary_withdraw.txt",
        "ami_transfer_blind_refer.txt",
        "ami_transfer_attended_atxfer.txt",
        "ami_hold_reinvite.txt",
        "ami_queue_call_disposition.txt",
    ],
)
def test_every_recorded_call_kept_gives_back_the_record_it_was_kept_with(name: str) -> None:
    events = ami_events(name)
    b = builder(grace_s=GRACE, keep_s=3600.0)
    epoch = feed(b, events)
    end = epoch + events[-1].seconds + AFTER
    records = b.due(end)
    assert records
    for record in records:
        kept = b.record(record.id, version=record.version, updated_at=record.updated_at.timestamp())
        assert kept == record


def test_an_ended_call_leaves_no_deadline_behind() -> None:
    """The builder's deadlines stay in proportion to the calls it holds: a call's age limit
    (6 hours) goes when the call ends, not hours after the call was forgotten."""
    b = builder(grace_s=GRACE, keep_s=60.0)
    records = []
    for second in range(400):
        if second < 100:
            call_id = f"{second}.{second}"
            b.feed_ivr(CallArrived(call_id, second, "+441632960001", "01632960123", "harborough"))
            b.feed_ivr(IvrAbandoned(call_id, second + 0.5, "main"))
            hangup = {"Event": "Hangup", "Channel": "x", "Uniqueid": call_id, "Linkedid": call_id}
            b.feed_ami(hangup, second + 0.7)
        records += b.due(second)
    assert len(records) == 100
    assert len(b) == 0
    assert (b._timers, b._open) == ([], {})  # nothing left to look at


def test_the_age_limit_runs_on_the_builders_clock_whatever_a_timestamp_says() -> None:
    """A call first seen by an AMI event whose Timestamp is far off (a wrong clock) is closed
    ``max_call_s`` after it was received, and does not hold back the calls seen after it."""
    b = builder(grace_s=1.0, max_call_s=100.0)
    skewed = {"Uniqueid": "1.1", "Linkedid": "1.1", "Channel": "PJSIP/sipp-1", "Timestamp": "4102444800.0"}
    b.feed_ami({"Event": "Newchannel", **skewed}, 0.0)
    b.feed_ami({"Event": "QueueCallerJoin", **skewed, "Queue": "council-revenues", "Position": "1"}, 0.5)
    b.feed_ivr(CallArrived("2.2", 1.0, "+441632960001", "01632960123", "harborough"))
    assert b.due(99.0) == []
    closed = b.due(100.0) + b.due(101.0) + b.due(102.0)
    assert [(r.id, r.complete) for r in closed] == [("1.1", False), ("2.2", False)]
