"""The CSV export's cells and its documented columns."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from pathlib import Path

from records.export import CSV_HEADER, csv_cell, csv_row
from records.kpi import Range, percentile, report
from tests.records.factory import record
from tests.records.test_kpi import SETTINGS, at, callback_day

DOC = Path(__file__).parents[2] / "docs" / "reports.md"


def test_the_documented_header_is_the_header() -> None:
    text = " ".join(
        DOC.read_text(encoding="utf-8").split("The full header, in order:")[1].split("\n\n")[0].split()
    )
    assert re.findall(r"`([a-z_]+)`", text) == CSV_HEADER


def test_cells_a_spreadsheet_would_run_are_quoted_and_numbers_are_not() -> None:
    assert csv_cell('=HYPERLINK("http://x")') == '\'=HYPERLINK("http://x")'
    assert csv_cell("@SUM(A1)") == "'@SUM(A1)"
    assert csv_cell("-cmd") == "'-cmd"
    assert csv_cell("+441632960123") == "+441632960123"
    assert csv_cell(-1) == "-1"
    assert csv_cell(None) == ""
    assert csv_cell(True) == "true"


def test_a_row_flattens_lists() -> None:
    arrived = datetime(2026, 11, 24, 9, tzinfo=UTC)
    row = dict(zip(CSV_HEADER, csv_row(record("1795533337.1", arrived, transfers=[
        {"kind": "blind", "at": arrived.isoformat(), "to": "2001", "context": None, "result": "completed"},
        {"kind": "attended", "at": arrived.isoformat(), "to": "2002", "context": None, "result": "returned"},
    ])), strict=True))  # fmt: skip
    assert row["transfers"] == "blind:2001:completed|attended:2002:returned"
    assert row["caller_withheld"] == "false"


def callback_rows() -> dict[str, dict[str, str]]:
    """The export rows of the report's callback day (tests/records/test_kpi.py), by record id."""
    rows = (dict(zip(CSV_HEADER, csv_row(r), strict=True)) for r in callback_day())
    return {row["id"]: row for row in rows}


CALLBACK_COLUMNS = [name for name in CSV_HEADER if "callback" in name]


def test_a_call_with_no_callback_has_empty_callback_cells() -> None:
    row = dict(zip(CSV_HEADER, csv_row(record("1795533337.1", datetime(2026, 11, 24, 9, tzinfo=UTC))),
                   strict=True))  # fmt: skip
    assert len(CALLBACK_COLUMNS) == 11
    assert {row[name] for name in CALLBACK_COLUMNS} == {""}


def test_each_callback_as_an_analyst_reads_it() -> None:
    """Worked out by hand from callback_day: the request is the queue visit's ``left_at``."""
    rows = callback_rows()
    answered = {name: rows["1795533337.32"][name] for name in CALLBACK_COLUMNS}
    assert answered == {
        "callback_offered": "true", "callback_taken": "true", "callback_queue": "hdc-revenues",
        "callback_number_kind": "mobile", "callback_requested_at": "2026-11-24T09:12:30+00:00",
        "callback_attempts": "2", "callback_calls_to_caller": "2",
        "callback_attempt_outcomes": "no-answer|answered", "callback_outcome": "answered",
        "callback_adviser": "Adviser 1", "time_to_callback_s": "1380.0",
    }  # fmt: skip
    declined = rows["1795533337.31"]
    assert (declined["callback_offered"], declined["callback_taken"], declined["callback_queue"]) == (
        "true", "false", "hdc-revenues")  # fmt: skip
    assert declined["callback_requested_at"] == declined["callback_outcome"] == ""
    no_adviser = rows["1795533337.35"]  # the dialler found no adviser: the caller was not rung
    assert (no_adviser["callback_attempts"], no_adviser["callback_calls_to_caller"]) == ("1", "0")
    assert no_adviser["callback_outcome"] == "cancelled_at_closing"
    assert rows["1795533337.36"]["callback_outcome"] == "pending"  # taken, not ended yet
    assert rows["1795533337.36"]["time_to_callback_s"] == ""  # only for an answered callback


def test_the_export_adds_up_to_the_reports_callback_figures() -> None:
    """Summed over the exported rows the report counts (not the call a partner sent here), the
    callback columns give the report's own figures."""
    records = callback_day()
    data = report("harborough", records, Range(date(2026, 11, 24), date(2026, 11, 24)), "day", SETTINGS,
                  generated_at=at(20))  # fmt: skip
    expected = data["total"]["callbacks"]
    rows = [dict(zip(CSV_HEADER, csv_row(r), strict=True)) for r in records if r.hop_from is None]
    outcomes = [row["callback_outcome"] for row in rows]
    waits = [float(row["time_to_callback_s"]) for row in rows if row["time_to_callback_s"]]
    assert {
        "offered": sum(row["callback_offered"] == "true" for row in rows),
        "taken": sum(row["callback_taken"] == "true" for row in rows),
        "made": sum(int(row["callback_calls_to_caller"] or 0) > 0 for row in rows),
        "calls_to_callers": sum(int(row["callback_calls_to_caller"] or 0) for row in rows),
        **{outcome: outcomes.count(outcome) for outcome in
           ("answered", "failed", "cancelled", "cancelled_at_closing", "pending")},
        "time_to_callback_p50_s": percentile(waits, 0.5),
        "time_to_callback_p90_s": percentile(waits, 0.9),
    } == {name: expected[name] for name in ("offered", "taken", "made", "calls_to_callers", "answered",
          "failed", "cancelled", "cancelled_at_closing", "pending", "time_to_callback_p50_s",
          "time_to_callback_p90_s")}  # fmt: skip
    by_queue = {q: f["taken"] for q, f in expected["by_queue"].items()}
    assert {q: sum(row["callback_queue"] == q and row["callback_taken"] == "true" for row in rows)
            for q in by_queue} == by_queue  # fmt: skip
