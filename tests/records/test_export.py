"""The CSV export's cells and its documented columns."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

from records.export import CSV_HEADER, csv_cell, csv_row
from tests.records.factory import record

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
