"""The owner's archive: every version once, the latest on reading, gzip by age, purge by retention."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from records.archive import Archive, ArchiveError, DayChange
from tests.records.factory import record

DAY = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def test_the_same_version_twice_is_stored_once_and_reading_gives_the_latest(tmp_path: Path) -> None:
    archive = Archive(tmp_path)
    v1 = record("1795533337.1", DAY)
    v2 = record("1795533337.1", DAY, version=2, survey=1)
    assert archive.append(v1) is True
    assert archive.append(v1) is False
    assert archive.append(v2) is True
    assert Archive(tmp_path).append(v2) is False  # another writer (a restarted worker) reads the file first
    lines = (tmp_path / "harborough" / "2026-11-24.jsonl").read_text().splitlines()
    assert [json.loads(line)["version"] for line in lines] == [1, 2]
    assert archive.latest("harborough", DAY.date()) == [v2]
    assert list(archive.versions("harborough", DAY.date())) == [v1, v2]


def test_records_are_filed_by_the_day_they_arrived_and_read_in_a_range(tmp_path: Path) -> None:
    archive = Archive(tmp_path)
    calls = [record(f"1795533337.{n}", DAY + timedelta(hours=n * 10)) for n in range(5)]
    late_version = record("1795533337.0", DAY, version=2, updated_at=(DAY + timedelta(days=3)).isoformat())
    assert archive.append_many([*calls, late_version]) == 6
    assert archive.days("harborough") == [date(2026, 11, 24), date(2026, 11, 25), date(2026, 11, 26)]
    found = list(archive.records("harborough", DAY + timedelta(hours=1), DAY + timedelta(hours=30)))
    assert [r.id for r in found] == ["1795533337.1", "1795533337.2"]
    every = list(archive.records("harborough", DAY, DAY + timedelta(days=3)))
    assert every == [late_version, *calls[1:]]
    assert list(archive.records("charnwood", DAY, DAY + timedelta(days=3))) == []


def test_a_tenant_name_that_is_not_a_plan_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match="not a tenant name"):
        list(Archive(tmp_path).records("../etc", DAY, DAY + timedelta(days=1)))


def test_a_torn_last_line_is_skipped_and_the_next_append_starts_a_new_line(tmp_path: Path) -> None:
    archive = Archive(tmp_path)
    first = record("1795533337.1", DAY)
    archive.append(first)
    path = tmp_path / "harborough" / "2026-11-24.jsonl"
    with open(path, "ab") as handle:
        handle.write(b'{"schema_version": 1, "id": "17955')  # a crash mid-write
    second = record("1795533337.2", DAY)
    assert Archive(tmp_path).append(second) is True
    reader = Archive(tmp_path)
    assert reader.latest("harborough", DAY.date()) == [first, second]
    assert reader.skipped_lines == 1


def test_compress_gzips_old_days_and_keeps_every_version(tmp_path: Path) -> None:
    archive = Archive(tmp_path)
    old = [record("1795533337.1", DAY), record("1795533337.1", DAY, version=2, survey=-1)]
    recent = record("1795533337.9", DAY + timedelta(days=20))
    archive.append_many([*old, recent])
    today = date(2026, 12, 24)  # 30 days after DAY
    assert archive.compress("harborough", today, archive_after_days=10) == [
        DayChange("harborough", DAY.date(), 2)
    ]
    folder = tmp_path / "harborough"
    assert sorted(p.name for p in folder.iterdir()) == ["2026-11-24.jsonl.gz", "2026-12-14.jsonl"]
    with gzip.open(folder / "2026-11-24.jsonl.gz", "rt") as packed:
        assert [json.loads(line)["version"] for line in packed] == [1, 2]
    assert archive.latest("harborough", DAY.date()) == [old[1]]
    # a version that arrives after the day was compressed: stored once, merged next time
    assert archive.append(old[1]) is False
    v3 = record("1795533337.1", DAY, version=3, survey=1)
    assert Archive(tmp_path).append(v3) is True
    assert archive.latest("harborough", DAY.date()) == [v3]
    assert archive.compress("harborough", today, archive_after_days=10) == [
        DayChange("harborough", DAY.date(), 3)
    ]
    assert sorted(p.name for p in folder.iterdir()) == ["2026-11-24.jsonl.gz", "2026-12-14.jsonl"]
    assert list(archive.records("harborough", DAY, DAY + timedelta(days=1))) == [v3]


def test_purge_deletes_days_older_than_the_retention(tmp_path: Path) -> None:
    archive = Archive(tmp_path)
    archive.append_many([record(f"1795533337.{n}", DAY + timedelta(days=n)) for n in range(4)])
    archive.append(record("1795533338.1", DAY, tenant="charnwood"))
    archive.compress("harborough", date(2026, 12, 1), archive_after_days=6)  # the first day is gzipped
    changes = archive.purge("harborough", date(2026, 12, 1), retention_days=5)
    assert changes == [
        DayChange("harborough", date(2026, 11, 24), 1),
        DayChange("harborough", date(2026, 11, 25), 1),
    ]
    assert archive.days("harborough") == [date(2026, 11, 26), date(2026, 11, 27)]
    assert archive.days("charnwood") == [date(2026, 11, 24)]  # another council's records are its own


def test_a_line_written_in_another_form_still_counts_as_stored(tmp_path: Path) -> None:
    """The index reads the key from the start of the archive's own lines; any other form of a
    record (here with spaces, as another JSON writer would put it) is read in full."""
    v1 = record("1795533337.1", DAY)
    path = tmp_path / "harborough" / "2026-11-24.jsonl"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(json.loads(v1.model_dump_json())) + "\n")
    archive = Archive(tmp_path)
    assert archive.append(v1) is False
    assert archive.append(record("1795533337.1", DAY, version=2)) is True
    assert len(path.read_text().splitlines()) == 2


def test_a_range_ending_at_midnight_does_not_read_the_next_day(tmp_path: Path) -> None:
    archive = Archive(tmp_path)
    day = datetime(2026, 11, 23, 9, tzinfo=UTC)
    archive.append(record("1795424400.1", day))
    archive.append(record("1795510800.1", day + timedelta(days=1)))
    # the next day's file made unreadable: a read of it would raise
    next_day = tmp_path / "harborough" / "2026-11-24.jsonl"
    next_day.unlink()
    next_day.mkdir()
    start = datetime(2026, 11, 23, tzinfo=UTC)
    found = list(archive.records("harborough", start, start + timedelta(days=1)))
    assert [r.id for r in found] == ["1795424400.1"]


@pytest.mark.parametrize(
    "record_id",
    ["1795533337.7", "ast1.charnwood.example-1795533337.7", "n" * 64 + "-" + "9" * 19 + "." + "9" * 10],
)
def test_an_archived_line_of_this_schema_is_keyed_from_its_start_without_a_full_parse(record_id: str) -> None:
    # the fast path of a restarted worker's catch-up (records/archive.py _KEY_PREFIX): it must
    # match the lines this version writes, whatever the schema version is, and any Linkedid
    # (with an Asterisk's systemname or without)
    from records.archive import _KEY_PREFIX

    r = record(record_id, DAY, version=3)
    match = _KEY_PREFIX.match(r.model_dump_json().encode("utf-8"))
    assert match is not None
    assert (match[1].decode("ascii"), int(match[2])) == (r.id, r.version)
