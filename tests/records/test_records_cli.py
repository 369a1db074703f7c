"""`callrouter records export|find|archive|purge` and `callrouter report` on a real archive directory:
round trips, one council never sees another's records, every access audited."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from redis import Redis

from callrouter.cli import main
from callrouter.report_cli import Progress
from records.archive import Archive
from records.builder import caller_hash
from records.export import CSV_HEADER, csv_row
from records.model import ContactRecord
from routing.redis_keys import KEYS
from tests.records.factory import record
from tests.records.support import KEY
from tests.support.redis_server import RedisServer

EXAMPLE = Path(__file__).parents[2] / "examples" / "plan.yaml"
DAY = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
CALLER, OTHER = "01632960123", "01632960777"
EARLIER = record("1795533330.9", DAY - timedelta(days=1))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def plan(tmp_path: Path) -> Path:
    """The example plan, Harborough keeping records 365 days and compressing them after 30."""
    example = EXAMPLE.read_text()
    ages = "      retention_days: 730\n      archive_after_days: 90\n"
    assert example.count(ages) == 1  # Harborough's, in the example
    text = example.replace(ages, "      retention_days: 365\n      archive_after_days: 30\n")
    path = tmp_path / "plan.yaml"
    path.write_text(text)
    return path


@pytest.fixture
def archive(tmp_path: Path) -> tuple[Path, list[ContactRecord]]:
    """Harborough's records of three days (one call in two versions), a call of the day before, and
    Charnwood's records of the same days; returns the folder and Harborough's latest versions."""
    root = tmp_path / "archive"
    store = Archive(root)
    harborough = [
        record("1795533337.1", DAY, version=2, survey=1),
        record("1795533337.2", DAY + timedelta(hours=2), caller=OTHER),
        record("1795533337.3", DAY + timedelta(days=1), caller=None),
        record("1795533337.4", DAY + timedelta(days=2, hours=8)),
    ]
    store.append_many([record("1795533337.1", DAY), *harborough])
    store.append(EARLIER)  # outside the range
    store.append_many(
        record(f"1795533338.{n}", DAY + timedelta(days=n), tenant="charnwood") for n in range(3)
    )
    return root, harborough


def audit_lines(root: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (root / "audit.jsonl").read_text().splitlines()]


def test_export_jsonl_gives_the_latest_version_of_every_record_of_the_council_and_no_other(
    capsys: pytest.CaptureFixture[str], archive: tuple[Path, list[ContactRecord]], plan: Path
) -> None:
    root, harborough = archive
    code, out, err = run(
        capsys,
        "records",
        "export",
        "--tenant",
        "harborough",
        "--from",
        "2026-11-24",
        "--to",
        "2026-11-26",
        "--archive",
        str(root),
        "--plan",
        str(plan),
        "--no-redis",
        "--by",
        "Records Officer",
    )
    assert code == 0, err
    exported = [ContactRecord.model_validate_json(line) for line in out.splitlines()]
    assert exported == harborough
    assert "audited in" in err
    (entry,) = audit_lines(root)
    assert entry["what"] == "records.export"
    assert entry["by"] == "Records Officer"
    assert (entry["tenant"], entry["from"], entry["to"], entry["format"]) == (
        "harborough",
        "2026-11-24",
        "2026-11-26",
        "jsonl",
    )
    assert datetime.fromisoformat(str(entry["at"])) <= datetime.now(UTC)
    code, out, _ = run(
        capsys,
        "records",
        "export",
        "--tenant",
        "charnwood",
        "--from",
        "2026-11-24",
        "--to",
        "2026-11-26",
        "--archive",
        str(root),
        "--no-redis",
    )
    assert code == 0
    assert {json.loads(line)["tenant"] for line in out.splitlines()} == {"charnwood"}
    assert len(out.splitlines()) == 3


def test_export_csv_round_trips_with_the_documented_columns(
    capsys: pytest.CaptureFixture[str], archive: tuple[Path, list[ContactRecord]], tmp_path: Path
) -> None:
    root, harborough = archive
    target = tmp_path / "harborough.csv"
    code, _, err = run(
        capsys,
        "records",
        "export",
        "--tenant",
        "harborough",
        "--from",
        "2026-11-24",
        "--to",
        "2026-11-26",
        "--format",
        "csv",
        "--out",
        str(target),
        "--archive",
        str(root),
        "--no-redis",
    )
    assert code == 0, err
    assert "4 records of harborough written to" in err
    assert target.stat().st_mode & 0o077 == 0  # personal data: the owner's eyes only
    rows = list(csv.reader(io.StringIO(target.read_text())))
    assert rows[0] == CSV_HEADER
    assert rows[1:] == [csv_row(r) for r in harborough]
    by_column = [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]
    assert [r["caller_number"] for r in by_column] == [
        CALLER,
        OTHER,
        "",
        CALLER,
    ]  # complete: the owner's copy
    assert [r["survey"] for r in by_column] == ["1", "", "", ""]
    assert [r["version"] for r in by_column] == ["2", "1", "1", "1"]


def test_find_by_caller_searches_the_keyed_hash_within_one_council(
    capsys: pytest.CaptureFixture[str], archive: tuple[Path, list[ContactRecord]], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    root, harborough = archive
    key_file = tmp_path / "caller.key"
    key_file.write_bytes(KEY + b"\n")
    monkeypatch.setenv("CALLROUTER_RECORDS_CALLER_HASH_KEY_FILE", str(key_file))
    code, out, err = run(
        capsys,
        "records",
        "find",
        "--tenant",
        "harborough",
        "--caller",
        "+441632960123",
        "--format",
        "jsonl",
        "--archive",
        str(root),
        "--no-redis",
        "--by",
        "dpo",
    )
    assert code == 0, err
    found = [ContactRecord.model_validate_json(line) for line in out.splitlines()]
    assert found == [EARLIER, harborough[0], harborough[3]]  # every day held, without --from/--to
    (entry,) = audit_lines(root)
    assert entry["what"] == "records.find"
    assert entry["caller_hash"] == caller_hash(KEY, CALLER)
    assert entry["caller"] == "**********123"
    assert CALLER not in (root / "audit.jsonl").read_text()
    # the same caller also rang Charnwood: each council's search finds its own records only
    code, out, err = run(
        capsys,
        "records",
        "find",
        "--tenant",
        "charnwood",
        "--caller",
        CALLER,
        "--archive",
        str(root),
        "--no-redis",
    )
    assert code == 0
    assert [line.split()[1] for line in out.splitlines()] == ["1795533338.0", "1795533338.1", "1795533338.2"]
    assert "3 record(s) of charnwood for caller ********123" in err
    code, out, err = run(
        capsys,
        "records",
        "find",
        "--tenant",
        "charnwood",
        "--caller",
        OTHER,
        "--archive",
        str(root),
        "--no-redis",
    )
    assert (code, out) == (0, "")  # OTHER rang Harborough only


def test_a_tenant_is_required_known_and_a_plain_name(
    capsys: pytest.CaptureFixture[str], archive: tuple[Path, list[ContactRecord]], plan: Path
) -> None:
    root, _ = archive
    with pytest.raises(SystemExit) as exited:
        main(["records", "export", "--from", "2026-11-24", "--to", "2026-11-26", "--archive", str(root)])
    assert exited.value.code == 2
    code, out, err = run(
        capsys,
        "records",
        "export",
        "--tenant",
        "leicester",
        "--from",
        "2026-11-24",
        "--to",
        "2026-11-26",
        "--archive",
        str(root),
        "--plan",
        str(plan),
        "--no-redis",
    )
    assert (code, out) == (2, "")
    assert "--tenant leicester: not a tenant of the plan" in err
    code, out, err = run(
        capsys,
        "records",
        "export",
        "--tenant",
        "../charnwood",
        "--from",
        "2026-11-24",
        "--to",
        "2026-11-26",
        "--archive",
        str(root),
        "--no-redis",
    )
    assert (code, out) == (2, "")
    assert "is not a tenant name" in err
    assert not (root / "audit.jsonl").exists()


def test_a_bad_name_for_the_audit_refuses_the_export(
    capsys: pytest.CaptureFixture[str], archive: tuple[Path, list[ContactRecord]]
) -> None:
    root, _ = archive
    code, out, err = run(
        capsys,
        "records",
        "export",
        "--tenant",
        "harborough",
        "--from",
        "2026-11-24",
        "--to",
        "2026-11-26",
        "--archive",
        str(root),
        "--no-redis",
        "--by",
        "x\x1b[2J",
    )
    assert (code, out) == (2, "")
    assert "--by holds a control character" in err
    assert not (root / "audit.jsonl").exists()


def test_the_audit_goes_to_the_redis_audit_stream_when_redis_is_there(
    capsys: pytest.CaptureFixture[str], archive: tuple[Path, list[ContactRecord]], redis_server: RedisServer
) -> None:
    root, _ = archive
    client = Redis.from_url(redis_server.url)
    before = client.xlen(KEYS.audit_stream())
    code, out, err = run(
        capsys,
        "records",
        "export",
        "--tenant",
        "harborough",
        "--from",
        "2026-11-24",
        "--to",
        "2026-11-24",
        "--archive",
        str(root),
        "--redis",
        redis_server.url,
        "--by",
        "auditor",
    )
    assert code == 0, err
    assert len(out.splitlines()) == 2
    assert "audited in" not in err
    ((_, fields),) = client.xrevrange(KEYS.audit_stream(), count=1)
    entry = json.loads(fields[b"entry"])
    assert (entry["what"], entry["by"], entry["tenant"]) == ("records.export", "auditor", "harborough")
    assert client.xlen(KEYS.audit_stream()) == before + 1
    assert not (root / "audit.jsonl").exists()
    client.close()


def test_archive_and_purge_by_age_from_the_plan_are_audited(
    capsys: pytest.CaptureFixture[str], plan: Path, tmp_path: Path
) -> None:
    root = tmp_path / "archive"
    today = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    ages = (400, 100, 5)  # past retention (365), past the archive age (30), recent
    Archive(root).append_many(record(f"1795533337.{age}", today - timedelta(days=age)) for age in ages)
    Archive(root).append(record("1795533338.1", today - timedelta(days=400), tenant="charnwood"))
    day = {age: (today - timedelta(days=age)).date().isoformat() for age in ages}
    code, out, _ = run(
        capsys,
        "records",
        "archive",
        "--all",
        "--dry-run",
        "--plan",
        str(plan),
        "--archive",
        str(root),
        "--no-redis",
    )
    assert code == 0
    assert f"harborough: would archive 2 day(s): {day[400]}, {day[100]}" in out
    assert "charnwood: no records.archive_after_days in the plan: nothing to do" in out
    code, out, _ = run(
        capsys,
        "records",
        "archive",
        "--tenant",
        "harborough",
        "--plan",
        str(plan),
        "--archive",
        str(root),
        "--no-redis",
        "--by",
        "cron",
    )
    assert (code, out) == (0, "harborough: compressed 2 day(s), 2 record versions\n")
    folder = root / "harborough"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [f"{day[400]}.jsonl.gz", f"{day[100]}.jsonl.gz", f"{day[5]}.jsonl"]
    )
    code, out, _ = run(
        capsys,
        "records",
        "purge",
        "--all",
        "--plan",
        str(plan),
        "--archive",
        str(root),
        "--no-redis",
        "--by",
        "cron",
    )
    assert code == 0
    assert "harborough: purged 1 day(s), 1 record versions" in out
    assert sorted(p.name for p in folder.iterdir()) == sorted([f"{day[100]}.jsonl.gz", f"{day[5]}.jsonl"])
    assert Archive(root).days("charnwood") == [date.fromisoformat(day[400])]  # no retention in the plan
    entries = audit_lines(root)
    assert [(e["what"], e["by"], e["tenant"], e["days"], e["record_versions"]) for e in entries] == [
        ("records.archive", "cron", "harborough", [day[400], day[100]], 2),
        ("records.purge", "cron", "harborough", [day[400]], 1),
    ]
    assert entries[1]["older_than_days"] == 365


def test_report_writes_html_json_and_csv_without_caller_numbers(
    capsys: pytest.CaptureFixture[str], archive: tuple[Path, list[ContactRecord]], plan: Path, tmp_path: Path
) -> None:
    root, _ = archive
    out_dir = tmp_path / "reports"
    for fmt in ("html", "json", "csv"):
        code, out, err = run(
            capsys,
            "report",
            "--tenant",
            "harborough",
            "--from",
            "2026-11-24",
            "--to",
            "2026-11-26",
            "--format",
            fmt,
            "--out",
            str(out_dir),
            "--archive",
            str(root),
            "--plan",
            str(plan),
            "--no-redis",
            "--period",
            "week",
        )
        assert code == 0, err
        assert out == ""
    html = (out_dir / "report-harborough-2026-11-24-2026-11-26.html").read_text()
    assert "<h1>Harborough District Council: contact centre report</h1>" in html
    data = json.loads((out_dir / "report-harborough-2026-11-24-2026-11-26.json").read_text())
    assert data["total"]["accessibility"]["offered"] == 4
    assert [p["period"] for p in data["periods"]] == ["2026-W48"]
    table = (out_dir / "report-harborough-2026-11-24-2026-11-26.csv").read_text()
    assert table.splitlines()[1].startswith("harborough,2026-W48,2026-11-23,4,")
    for text in (html, json.dumps(data), table):
        assert CALLER not in text
        assert OTHER not in text
    assert [e["what"] for e in audit_lines(root)] == ["records.report"] * 3


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_progress_bar_is_drawn_on_a_terminal_only() -> None:
    terminal, pipe = _Terminal(), io.StringIO()
    for stream in (terminal, pipe):
        bar = Progress("export harborough", 4, stream)
        bar.records = 120
        bar.day_done()
        bar.close()
    assert (
        terminal.getvalue() == "\rexport harborough [#######-----------------------] 1/4 days, 120 records\n"
    )
    assert pipe.getvalue() == ""


def test_the_archive_is_one_setting_from_the_environment_or_refused_by_name(
    capsys: pytest.CaptureFixture[str],
    archive: tuple[Path, list[ContactRecord]],
    plan: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root, harborough = archive
    argv = ["records", "export", "--tenant", "harborough", "--from", "2026-11-24", "--to", "2026-11-24",
            "--plan", str(plan), "--no-redis", "--by", "test"]  # fmt: skip
    monkeypatch.delenv("CALLROUTER_RECORDS_ARCHIVE_DIR", raising=False)
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert "no archive: give --archive DIR or set CALLROUTER_RECORDS_ARCHIVE_DIR" in err
    monkeypatch.setenv("CALLROUTER_RECORDS_ARCHIVE_DIR", str(root))  # what records deliver writes
    code, out, _ = run(capsys, *argv)
    assert code == 0
    exported = [json.loads(line)["id"] for line in out.splitlines()]
    assert exported
    assert set(exported) <= {r.id for r in harborough}


def test_records_from_asterisks_with_system_names_round_trip_through_the_archive_and_export(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Two centres' Asterisks with ``systemname`` set, the same ``<seconds>.<sequence>`` (and a
    third without a name): three records, each kept with its versions, a restarted writer (the
    archive's key read from a line's start) takes no version twice, and the export gives all three
    as they were, in JSON Lines and in CSV (the id as it is: it never starts like a formula)."""
    root = tmp_path / "archive"
    named = [
        record("ast1.charnwood.example-1795533337.1", DAY, version=2, survey=1),
        record("harborough-pbx_2-1795533337.1", DAY + timedelta(minutes=1)),
        record("1795533337.1", DAY + timedelta(minutes=2)),
    ]
    assert Archive(root).append_many([record(named[0].id, DAY), *named]) == 4
    assert Archive(root).append_many(named) == 0  # another writer: every key read back
    assert Archive(root).latest("harborough", DAY.date()) == named
    for fmt, target in (("jsonl", tmp_path / "out.jsonl"), ("csv", tmp_path / "out.csv")):
        code, _, err = run(
            capsys, "records", "export", "--tenant", "harborough", "--from", "2026-11-24",
            "--to", "2026-11-24", "--format", fmt, "--out", str(target), "--archive", str(root), "--no-redis",
        )  # fmt: skip
        assert code == 0, err
        assert "3 records of harborough written to" in err
    exported = [
        ContactRecord.model_validate_json(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()
    ]
    assert exported == named
    rows = list(csv.reader(io.StringIO((tmp_path / "out.csv").read_text())))
    assert rows[1:] == [csv_row(r) for r in named]
    assert [dict(zip(rows[0], row, strict=True))["id"] for row in rows[1:]] == [r.id for r in named]
