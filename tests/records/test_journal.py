"""The fact journal: every fact and AMI event the builder took, replayed after a kill; segments
deleted once their calls are handed over; a replayed call whose end was never seen closed with
a problem."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

import pytest

from records import facts as rf
from records.builder import RecordBuilder
from records.journal import FactJournal, JournalInUse, fact_line, fact_of, read_journal, segments_in
from records.outbox import REPLAYED_OPEN_S, RESTARTED, MemorySink, RecordPump

CALL = "1795100000.7"
T = 1_795_100_000.0
KEY = b"journal test caller hash key 32b"

EVERY_FACT: list[rf.IvrFact] = [
    rf.CallArrived(CALL, T, "01632960001", "07700900123", "harborough", "leicester", "1795000000.1"),
    rf.RouteDecided(CALL, T, "overflow", "queue harborough-main", ("open", "-> overflow to x"), "leicester"),
    rf.MenuEntered(CALL, T, "main"),
    rf.KeyPressed(CALL, T, "main", "2"),
    rf.InvalidKey(CALL, T, "main"),
    rf.MenuTimeout(CALL, T, "main"),
    rf.AnnouncementPlayed(CALL, T, "harborough/welcome", True),
    rf.PaymentStarted(CALL, T, "council-tax"),
    rf.PaymentHandedOff(CALL, T, "council-tax", reference_captured=True, handed_off=True),
    rf.QueueStatusSeen(CALL, T, "TIMEOUT"),
    rf.SurveyAnswered(CALL, T, -1),
    rf.IvrAbandoned(CALL, T, "main"),
    rf.DispositionGiven(CALL, T, "forwarded", team="revenues", reason=None, by="a1"),
]

HANGUP = {"Event": "Hangup", "Channel": "PJSIP/sipp-1", "Uniqueid": CALL, "Linkedid": CALL,
          "Cause": "16", "Cause-txt": "Normal Clearing"}  # fmt: skip


def test_every_kind_of_fact_comes_back_equal() -> None:
    for fact in EVERY_FACT:
        assert fact_of(fact_line(fact)) == fact


def test_a_killed_controllers_journal_gives_the_same_record(tmp_path: Path) -> None:
    journal = FactJournal(tmp_path, "host:1")
    live = RecordPump(RecordBuilder("charnwood", KEY, grace_s=0.5), MemorySink(), journal=journal)
    live.ami({**HANGUP, "Event": "Newchannel", "Exten": "01632960001", "CallerIDNum": "07700900123"}, T)
    live.fact(rf.CallArrived(CALL, T, "01632960001", "07700900123", "harborough"))
    live.fact(rf.MenuEntered(CALL, T + 1, "main"))
    live.fact(rf.KeyPressed(CALL, T + 2, "main", "2"))
    live.ami({"Event": "DTMFEnd", "Linkedid": CALL}, T + 2)  # not read by the builder: not written
    live.ami(HANGUP, T + 5)
    # killed here: nothing appended; the file is all that is left
    assert stat.S_IMODE(segments_in(tmp_path)[0].stat().st_mode) == 0o600
    found = read_journal(tmp_path)
    assert found.instances == {"host:1"}
    assert len(found.facts) == 5
    sink = MemorySink()
    again = RecordPump(RecordBuilder("charnwood", KEY, grace_s=0.5), sink, clock=lambda: T + 10)
    assert again.replay(found) == 1
    asyncio.run(again.flush_due())
    expected = live.builder.due(T + 10)
    assert [r.model_dump() for r in sink.records] == [r.model_dump() for r in expected]
    assert sink.records[0].complete


def test_a_cut_line_is_skipped_and_the_rest_is_read(tmp_path: Path) -> None:
    journal = FactJournal(tmp_path, "host:1")
    journal.fact(rf.MenuEntered(CALL, T, "main"))
    journal.close()
    with segments_in(tmp_path)[0].open("ab") as out:
        out.write(b'{"f":"KeyPressed","a":{"call_id"')
    found = read_journal(tmp_path)
    assert found.facts == [rf.MenuEntered(CALL, T, "main")]
    assert found.bad_lines == 1


def test_segments_go_once_their_calls_are_handed_over(tmp_path: Path) -> None:
    now = [0.0]
    journal = FactJournal(tmp_path, "host:1", segment_s=10.0, clock=lambda: now[0])
    journal.fact(rf.MenuEntered(CALL, T, "main"))
    journal.fact(rf.MenuEntered("1795100000.8", T, "main"))
    now[0] = 11.0
    pending = {CALL, "1795100000.8"}
    assert journal.tidy(pending.__contains__) == 0  # rotated; the old one still needed
    assert len(segments_in(tmp_path)) == 2
    pending.discard(CALL)
    assert journal.tidy(pending.__contains__) == 0
    pending.clear()
    assert journal.tidy(pending.__contains__) == 1
    assert len(segments_in(tmp_path)) == 1  # the current one stays
    journal.remove_all()
    assert segments_in(tmp_path) == []


def test_a_replayed_call_whose_end_is_never_seen_is_closed_with_a_problem(tmp_path: Path) -> None:
    journal = FactJournal(tmp_path, "host:1")
    journal.fact(rf.CallArrived(CALL, T, "01632960001", "07700900123", "harborough"))
    journal.close()
    now = [T + 5]
    sink = MemorySink()
    pump = RecordPump(RecordBuilder("charnwood", KEY, grace_s=0.5), sink, clock=lambda: now[0])
    pump.replay(read_journal(tmp_path))
    asyncio.run(pump.flush_due())
    assert sink.records == []  # it may still be in progress
    now[0] += REPLAYED_OPEN_S + 1
    asyncio.run(pump.flush_due())
    now[0] += 1
    asyncio.run(pump.flush_due())
    assert [r.id for r in sink.records] == [CALL]
    assert not sink.records[0].complete
    assert RESTARTED in sink.records[0].problems


def test_one_controller_per_journal_folder(tmp_path: Path) -> None:
    first = FactJournal(tmp_path, "host:1")
    with pytest.raises(JournalInUse, match="in use by another controller"):
        FactJournal(tmp_path, "host:2")
    first.close()
    FactJournal(tmp_path, "host:3").close()  # free again once the first has gone
