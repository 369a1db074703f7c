"""Records built from AMI events exactly as Asterisk 22.10.1 sent them (shared/asterisk/*.txt).

Each test feeds a whole recorded session to the builder with the receive times of the
recording, asks for the records a moment after the caller hung up, and checks them field by
field (every record is also checked against the published JSON Schema, for card-like digit
runs, and for the caller number appearing only in the caller field).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from records.builder import RecordBuilder, caller_hash
from records.facts import QueueStatusSeen
from tests.records.support import CALLER, CENTRE, KEY, AmiEvent, all_due, ami_events, builder, feed

GRACE = 2.0


def only_record(name: str, b: RecordBuilder | None = None) -> dict[str, Any]:
    events = ami_events(name)
    b = b or builder(grace_s=GRACE)
    epoch = feed(b, events)
    records = all_due(b, epoch + events[-1].seconds + GRACE)
    assert len(records) == 1
    return records[0]


def caller_hangup(events: list[AmiEvent], linkedid: str) -> AmiEvent:
    return next(e for e in events if e.name == "Hangup" and e.headers["Uniqueid"] == linkedid)


def test_an_answered_queue_call() -> None:
    """Answered by agent1 after 2 s in the queue, 6 s of talk, the caller hung up."""
    record = only_record("ami_queue_answered_call.txt")
    assert record["id"] == "1795533337.24"
    assert record["version"] == 1
    assert record["complete"] is True
    assert record["tenant"] == "harborough"  # the dialplan's UserEvent named the council
    assert record["centre"] == CENTRE
    assert record["caller"] == {
        "number": CALLER,
        "hash": caller_hash(KEY, CALLER),
        "withheld": False,
    }
    [visit] = record["queues"]
    assert visit["queue"] == "council-revenues"
    assert visit["outcome"] == "answered"
    assert visit["wait_s"] == 2.0
    assert visit["position"] == 1
    assert record["answered"]["by"] == {"centre": CENTRE, "id": "PJSIP/agent1", "name": "Agent One"}
    assert record["talk_s"] == 6.0
    assert record["hold_s"] == 0.0
    assert record["transfers"] == []
    assert record["hangup"]["by"] == "caller"
    assert record["hangup"]["cause"] == 16
    assert record["hangup"]["cause_text"] == "Normal Clearing"
    times = [record["arrived_at"], visit["joined_at"], record["answered"]["at"], record["hangup"]["at"]]
    assert times == sorted(times, key=datetime.fromisoformat)


def test_a_caller_who_abandons_while_an_adviser_rings() -> None:
    """The caller hung up after 4 s: abandoned (HangupRequest on the caller before QueueCallerAbandon)."""
    record = only_record("ami_queue_caller_abandon.txt")
    [visit] = record["queues"]
    assert visit["outcome"] == "abandoned"
    assert visit["wait_s"] == 4.0
    assert record["answered"] is None
    assert record["talk_s"] is None
    assert record["hangup"]["by"] == "caller"
    assert record["hangup"]["cause"] == 0  # what Asterisk reported for this CANCEL
    assert record["ivr"]["abandoned"] is False  # abandoned in the queue, not in the IVR


def test_a_queue_timeout() -> None:
    """Asterisk sends QueueCallerAbandon on a timeout too: no caller hang-up before it, so timed out."""
    record = only_record("ami_queue_timeout.txt")
    [visit] = record["queues"]
    assert visit["outcome"] == "timed_out"
    assert visit["wait_s"] == 8.0
    assert visit["unanswered_rings"] == 2  # two AgentRingNoAnswer
    assert record["hangup"]["by"] == "centre"  # the dialplan hung up after the queue


def test_two_callers_withdrawn_for_the_partner() -> None:
    """QueueWithdrawCaller: QUEUESTATUS=WITHDRAW (the dialplan's QueueOutcome UserEvent) makes withdrawn."""
    events = ami_events("ami_queue_status_summary_withdraw.txt")
    b = builder(grace_s=GRACE)
    epoch = feed(b, events)
    records = {r["id"]: r for r in all_due(b, epoch + events[-1].seconds + GRACE)}
    assert set(records) == {"1795533385.31", "1795533387.33"}
    first, second = records["1795533385.31"]["queues"], records["1795533387.33"]["queues"]
    assert [v["outcome"] for v in first + second] == ["withdrawn", "withdrawn"]
    assert (first[0]["wait_s"], second[0]["wait_s"]) == (7.0, 12.0)
    assert (first[0]["position"], second[0]["position"]) == (1, 2)


def test_a_withdrawal_reported_by_the_controller_instead_of_a_user_event() -> None:
    """Our dialplan passes QUEUESTATUS to the overflow route: the controller reports it as a fact."""
    events = [
        e
        for e in ami_events("ami_queue_status_summary_withdraw.txt")
        if e.headers.get("UserEvent") != "QueueOutcome"
    ]
    b = builder(grace_s=GRACE)
    epoch = feed(b, events)
    hangup = caller_hangup(events, "1795533385.31")
    b.feed_ivr(QueueStatusSeen("1795533385.31", epoch + hangup.seconds - 0.001, "WITHDRAW"))
    records = {r["id"]: r for r in all_due(b, epoch + events[-1].seconds + GRACE)}
    assert records["1795533385.31"]["queues"][0]["outcome"] == "withdrawn"
    # without either, the second caller's exit reads as the queue timing out
    assert records["1795533387.33"]["queues"][0]["outcome"] == "timed_out"


def test_a_blind_transfer_to_the_back_office() -> None:
    """REFER to 3100: BlindTransfer, AgentComplete Reason transfer; the back office ends the call."""
    record = only_record("ami_transfer_blind_refer.txt")
    assert record["answered"]["by"]["id"] == "PJSIP/agent1"
    [transfer] = record["transfers"]
    assert transfer["kind"] == "blind"
    assert transfer["to"] == "3100"
    assert transfer["context"] == "agents"
    assert transfer["result"] == "completed"
    assert record["talk_s"] == 2.0  # with the adviser, until the transfer
    assert record["hangup"]["by"] == "centre"  # the back-office dialplan hung up
    assert record["disposition"] is None  # the hangup handler's Disposition was empty


def test_an_attended_transfer_attempt_that_returned_to_the_adviser() -> None:
    """AMI Atxfer to 3100: the back office hung up first and the adviser had the caller back."""
    events = ami_events("ami_transfer_attended_atxfer.txt")
    record = only_record("ami_transfer_attended_atxfer.txt")
    [transfer] = record["transfers"]
    assert (transfer["kind"], transfer["to"], transfer["context"]) == ("attended", "3100", "agents")
    assert transfer["result"] == "returned"
    # the caller was on hold from the adviser's Hold to the Unhold after the back office left
    hold = next(e for e in events if e.name == "Hold")
    unhold = next(e for e in events if e.name == "Unhold")
    assert record["hold_s"] == round(float(unhold.headers["Timestamp"]) - float(hold.headers["Timestamp"]), 3)
    assert 4.5 < record["hold_s"] < 5.0
    assert record["talk_s"] == 8.0
    assert record["hangup"]["by"] == "adviser"


def test_hold_and_unhold_by_reinvite() -> None:
    """Hold 4 s (sendonly re-INVITE, then sendrecv): the hold time; the adviser hung up."""
    record = only_record("ami_hold_reinvite.txt")
    assert record["hold_s"] == 4.008  # Asterisk's Timestamps of Hold and Unhold
    assert record["talk_s"] == 8.0
    assert record["hangup"]["by"] == "adviser"


def test_the_disposition_from_the_hangup_handler_and_a_repeat_that_changes_nothing() -> None:
    """CallDisposition arrives in the same ms as the adviser's Hangup, after the caller's: within
    the grace, so version 1 has it; the same disposition sent again by AMI makes no version 2."""
    events = ami_events("ami_queue_call_disposition.txt")
    b = builder(grace_s=1.0)
    hangup = caller_hangup(events, "1795963598.67")
    epoch = feed(b, events, until=hangup.seconds + 0.5)
    assert all_due(b, epoch + hangup.seconds + 0.5) == []  # not final yet: within the grace
    [record] = all_due(b, epoch + hangup.seconds + 1.0)
    assert record["version"] == 1
    assert record["disposition"]["kind"] == "resolved"
    assert record["disposition"]["by"] == "PJSIP/agent1"
    later = [e for e in events if e.seconds > hangup.seconds + 0.5]
    assert [e.headers.get("UserEvent") for e in later] == ["CallDisposition"]
    for event in later:
        b.feed_ami(event.headers, epoch + event.seconds)
    assert all_due(b, epoch + later[-1].seconds + 5.0) == []


def test_a_disposition_after_the_record_was_final_makes_version_2() -> None:
    """The blind-transfer call closed without a disposition; the adviser's desktop sends one later
    (an AMI UserEvent action, headers as Asterisk echoed it): version 2, forwarded to the back office."""
    events = ami_events("ami_transfer_blind_refer.txt")
    b = builder(grace_s=GRACE)
    epoch = feed(b, events)
    end = epoch + events[-1].seconds + GRACE
    [first] = all_due(b, end)
    assert (first["version"], first["disposition"]) == (1, None)
    action_event = next(
        e for e in ami_events("ami_queue_call_disposition.txt") if "ActionID" in e.headers
    ).headers
    sent = {**action_event, "Linkedid": first["id"], "Disposition": "back_office:council-tax"}
    sent["Timestamp"] = str(end + 60)
    b.feed_ami(sent, end + 60.01)
    assert all_due(b, end + 60.5) == []  # the grace applies to later versions too
    [second] = all_due(b, end + 60.01 + GRACE)  # the grace runs from when the builder took it
    assert second["version"] == 2
    assert second["updated_at"] > first["updated_at"]
    assert second["disposition"]["kind"] == "back_office"
    assert second["disposition"]["team"] == "council-tax"
    assert second["disposition"]["by"] == "agent1"
    assert {k: v for k, v in second.items() if k not in ("version", "updated_at", "disposition")} == {
        k: v for k, v in first.items() if k not in ("version", "updated_at", "disposition")
    }
    assert all_due(b, end + 600) == []


def test_dtmf_events_are_never_read() -> None:
    """Even if the AMI user had the dtmf class, a DTMF event changes nothing in a record."""
    events = ami_events("ami_queue_answered_call.txt")
    b = builder(grace_s=GRACE)
    epoch = feed(b, events)
    linkedid = "1795533337.24"
    before = b.record(linkedid)
    for digit in "4111111111111111":
        b.feed_ami(
            {"Event": "DTMFEnd", "Linkedid": linkedid, "Uniqueid": linkedid, "Digit": digit}, epoch + 5
        )
    assert b.record(linkedid) == before


def test_an_attended_transfer_that_completes() -> None:
    """The completed attended transfer was not observed (README 6.5): the recorded attempt up to the
    back office answering, then an AttendedTransfer with the headers the Asterisk 22 documentation
    lists (prefixed channel blocks, no plain Linkedid). The attempt becomes completed."""
    events = ami_events("ami_transfer_attended_atxfer.txt")
    answered = next(e for e in events if e.name == "UserEvent" and e.headers["UserEvent"] == "BackOffice")
    b = builder(grace_s=GRACE)
    epoch = feed(b, events, until=answered.seconds)
    agent, caller, linkedid = "PJSIP/agent1-00000038", "PJSIP/sipp-00000037", "1795963560.61"
    b.feed_ami(
        {
            "Event": "AttendedTransfer",
            "Privilege": "call,all",
            "Result": "Success",
            "OrigTransfererChannel": agent,
            "OrigTransfererUniqueid": "1795963561.62",
            "OrigTransfererLinkedid": linkedid,
            "SecondTransfererChannel": agent,
            "SecondTransfererLinkedid": linkedid,
            "DestType": "Bridge",
            "TransfereeChannel": caller,
            "TransfereeLinkedid": linkedid,
            "TransferTargetChannel": "Local/3100@agents-00000003;1",
            "IsExternal": "No",
        },
        epoch + answered.seconds + 1.0,
    )
    b.feed_ami(
        {"Event": "Hangup", "Channel": caller, "Uniqueid": linkedid, "Linkedid": linkedid, "Cause": "16"},
        epoch + answered.seconds + 5.0,
    )
    [record] = all_due(b, epoch + answered.seconds + 5.0 + GRACE)
    [transfer] = record["transfers"]
    assert (transfer["kind"], transfer["to"], transfer["result"]) == ("attended", "3100", "completed")
