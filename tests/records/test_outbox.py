"""The pump between a builder and a sink: facts in without I/O, due records out, nothing lost
when the sink fails, every record held handed over on shutdown."""

from __future__ import annotations

import json
import logging
import stat
from pathlib import Path

import pytest

from records.builder import RecordBuilder
from records.facts import CallArrived, MenuEntered, SurveyAnswered
from records.journal import FactJournal, read_journal
from records.model import ContactRecord
from records.outbox import JsonlSink, MemorySink, RecordPump
from tests.records.support import KEY, checked

T0 = 1795533337.0
CALLER = "07700900123"


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class FlakySink:
    """Fails its first ``failures`` appends, then keeps what it gets."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.records: list[ContactRecord] = []

    async def append(self, record: ContactRecord) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("sink down")
        self.records.append(record)


def arrive(pump: RecordPump, call_id: str, at: float) -> None:
    pump.ami({"Event": "Newchannel", "Channel": "PJSIP/sipp-1", "Uniqueid": call_id, "Linkedid": call_id,
              "CallerIDNum": CALLER, "Exten": "01632960001"}, at)  # fmt: skip
    pump.fact(CallArrived(call_id, at, "01632960001", CALLER, "harborough"))
    pump.fact(MenuEntered(call_id, at, "main"))


def hang_up(pump: RecordPump, call_id: str, at: float) -> None:
    pump.ami({"Event": "Hangup", "Channel": "PJSIP/sipp-1", "Uniqueid": call_id, "Linkedid": call_id,
              "Cause": "16", "Cause-txt": "Normal Clearing"}, at)  # fmt: skip


async def test_due_records_reach_the_sink_and_a_failing_sink_loses_nothing() -> None:
    clock, sink = Clock(), FlakySink(failures=2)
    pump = RecordPump(RecordBuilder("charnwood", KEY, grace_s=2.0), sink, clock=clock)
    arrive(pump, "1795533337.1", T0)
    arrive(pump, "1795533337.2", T0)
    hang_up(pump, "1795533337.1", T0 + 5)
    clock.now = T0 + 6
    assert await pump.flush_due() == 0  # within the grace period
    clock.now = T0 + 7.5
    assert await pump.flush_due() == 0  # the sink failed: kept
    assert (len(pump.backlog), pump.sink_failures) == (1, 1)
    assert await pump.flush_due() == 0  # failed again
    assert await pump.flush_due() == 1
    assert [(r.id, r.version, r.complete) for r in sink.records] == [("1795533337.1", 1, True)]
    checked(sink.records[0])


async def test_a_malformed_fact_is_counted_not_raised() -> None:
    pump = RecordPump(RecordBuilder("charnwood", KEY), MemorySink())
    pump.fact(SurveyAnswered("not-a-linkedid", T0, 1))
    pump.fact(SurveyAnswered("1795533337.3", float("nan"), 1))
    pump.ami({"Event": "Hangup", "Linkedid": ["not", "text"]}, T0)  # type: ignore[dict-item]
    assert pump.refused_facts == 2
    assert len(pump.builder) == 0


async def test_close_hands_over_open_calls_as_incomplete_and_finished_ones_at_once(tmp_path: Path) -> None:
    clock = Clock()
    sink = JsonlSink(tmp_path / "out" / "records.jsonl")
    pump = RecordPump(RecordBuilder("charnwood", KEY, grace_s=2.0), sink, clock=clock)
    arrive(pump, "1795533337.4", T0)  # still in the menu when the controller stops
    arrive(pump, "1795533337.5", T0)
    hang_up(pump, "1795533337.5", T0 + 1)  # ended, within its grace period
    clock.now = T0 + 1.5
    assert await pump.close() == 2
    lines = [json.loads(line) for line in sink.path.read_text().splitlines()]
    assert sorted((r["id"], r["version"], r["complete"]) for r in lines) == [
        ("1795533337.4", 1, False),
        ("1795533337.5", 1, True),
    ]
    for line in lines:
        checked(ContactRecord.model_validate_json(json.dumps(line)))
    assert stat.S_IMODE(sink.path.stat().st_mode) == 0o600
    assert len(pump.builder) == 0
    assert await pump.close() == 0


async def test_records_the_stream_did_not_take_at_shutdown_are_said_lost_without_a_journal(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pump = RecordPump(RecordBuilder("charnwood", KEY, grace_s=2.0), FlakySink(failures=100), clock=Clock())
    arrive(pump, "1795533337.6", T0)
    arrive(pump, "1795533337.7", T0)
    with caplog.at_level(logging.WARNING, logger="records.outbox"):
        assert await pump.close() == 0
    lost = [r for r in caplog.records if r.getMessage().startswith("records.lost ")]
    assert [(r.levelno, r.getMessage().split(" (")[0]) for r in lost] == [
        (logging.ERROR, "records.lost records=2")
    ]
    assert "set records.journal" in lost[0].getMessage()


async def test_records_the_stream_did_not_take_at_shutdown_are_left_for_replay_with_a_journal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    journal = FactJournal(tmp_path, "host:1")
    pump = RecordPump(
        RecordBuilder("charnwood", KEY, grace_s=2.0), FlakySink(failures=100), clock=Clock(), journal=journal
    )
    arrive(pump, "1795533337.8", T0)
    with caplog.at_level(logging.WARNING, logger="records.outbox"):
        assert await pump.close() == 0
    messages = [r.getMessage() for r in caplog.records]
    assert not [m for m in messages if m.startswith("records.lost ")]
    assert [m.split(" (")[0] for m in messages if m.startswith("records.left_for_replay")] == [
        "records.left_for_replay records=1"
    ]
    assert read_journal(tmp_path).segments  # what the next start replays is still there


async def test_nothing_is_said_at_shutdown_when_the_stream_took_everything(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pump = RecordPump(RecordBuilder("charnwood", KEY, grace_s=2.0), MemorySink(), clock=Clock())
    arrive(pump, "1795533337.9", T0)
    with caplog.at_level(logging.WARNING, logger="records.outbox"):
        assert await pump.close() == 1
    assert not [
        r for r in caplog.records if r.getMessage().startswith(("records.lost", "records.left_for_replay"))
    ]
