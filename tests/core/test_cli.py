"""The engineer's command line: check, explain, timeline, diff (text and --json)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from callrouter.cli import main

EXAMPLE = str(Path(__file__).parents[2] / "examples" / "plan.yaml")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_check_clean_plan_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    """A clean plan: exit 0 and an OK line."""
    code, out, _ = run(capsys, "plan", "check", EXAMPLE)
    assert code == 0
    assert "OK (2 tenants, 0 warnings)" in out


def test_check_broken_plan_lists_every_problem_on_stderr(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Exit 1; each problem with file, line and path on stderr."""
    broken = (
        Path(EXAMPLE)
        .read_text()
        .replace('"01632 960001"', "+441632960001")
        .replace("queue: waste}", "queue: billing}", 1)
    )
    target = tmp_path / "plan.yaml"
    target.write_text(broken)
    code, out, err = run(capsys, "plan", "check", str(target))
    assert code == 1
    assert out == ""
    assert err.splitlines() == [
        "plan.yaml:29: tenants.harborough.numbers[0]: YAML read +441632960001 as a number: quote this value: "
        '"+441632960001"',
        "plan.yaml:70: tenants.harborough.menus.main.options.\"2\": unknown queue 'billing' "
        "(known: charnwood_assist, emergency, revenues, waste)",
    ]


def test_check_relation_errors_json(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """--json gives machines the same problems."""
    target = tmp_path / "plan.yaml"
    target.write_text(
        Path(EXAMPLE)
        .read_text()
        .replace('"2": {type: queue, queue: waste}', '"2": {type: queue, queue: bins}')
    )
    code, out, _ = run(capsys, "plan", "check", str(target), "--json")
    data = json.loads(out)
    assert code == 1
    assert data["ok"] is False
    assert {
        "severity": "error",
        "path": 'tenants.harborough.menus.main.options."2"',
        "message": "unknown queue 'bins' (known: charnwood_assist, emergency, revenues, waste)",
        "source": "plan.yaml:70",
    } in data["problems"]


def test_explain_prints_destination_and_trace(capsys: pytest.CaptureFixture[str]) -> None:
    """Explain shows where the call goes and every reason."""
    code, out, _ = run(
        capsys, "plan", "explain", EXAMPLE, "--number", "01632 960001", "--at", "2026-04-03 10:00"
    )
    assert code == 0
    assert out.splitlines()[0] == (
        "=> external 01632 960999 (Harborough out-of-hours service (Clover Court))  [closed]"
    )
    assert "   2026-04-03 Good Friday (bank holiday): closed" in out


def test_explain_with_live_figures_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    """Queue figures by plan queue name, partner state and toggles all feed the decision."""
    code, out, _ = run(
        capsys,
        "plan",
        "explain",
        EXAMPLE,
        "--number",
        "01632 960100",
        "--at",
        "2026-11-24 10:00",
        "--digits",
        "1",
        "--queue",
        "general:waiting=12,longest=500,available=0,logged_in=3",
        "--partner",
        "harborough:waiting=0,available=2",
        "--json",
    )
    data = json.loads(out)
    assert code == 0
    assert data["destination"] == {
        "type": "external",
        "number": None,
        "centre": "harborough",
        "label": "Harborough customer services team",
    }
    assert data["state"] == "open"
    assert any("overflow starts (waiting 12 >= 10" in r for r in data["reasons"])


def test_explain_emergency_toggle(capsys: pytest.CaptureFixture[str]) -> None:
    """--emergency switches a tenant to emergency cover for the explanation."""
    code, out, _ = run(
        capsys,
        "plan",
        "explain",
        EXAMPLE,
        "--number",
        "01632 960001",
        "--at",
        "2026-11-24 20:00",
        "--emergency",
        "harborough",
    )
    assert code == 0
    assert out.startswith("=> queue emergency  [emergency]")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--at", "tomorrow"], "--at 'tomorrow' is not a date-time"),
        (["--at", "2026-11-24 10:00", "--emergency", "nowhere"], "--emergency nowhere: unknown tenant"),
        (["--at", "2026-11-24 10:00", "--queue", "general:depth=3"], "unknown figure 'depth'"),
    ],
)
def test_explain_usage_errors_exit_two(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    """A bad value is named on stderr; exit 2."""
    code, out, err = run(capsys, "plan", "explain", EXAMPLE, "--number", "01632 960001", *argv)
    assert (code, out) == (2, "")
    assert message in err


def test_timeline_text_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    """Transitions with local time, zone and cause; JSON for machines."""
    code, out, _ = run(
        capsys,
        "plan",
        "timeline",
        EXAMPLE,
        "--tenant",
        "harborough",
        "--from",
        "2026-04-02",
        "--to",
        "2026-04-03",
    )
    assert code == 0
    assert "2026-04-02 Thu 08:30 BST (+0100)  OPEN" in out
    assert "2026-04-03 Fri 00:00 BST (+0100)  closed  2026-04-03 Good Friday (bank holiday): closed" in out
    code, out, _ = run(
        capsys,
        "plan",
        "timeline",
        EXAMPLE,
        "--tenant",
        "harborough",
        "--from",
        "2026-04-02",
        "--to",
        "2026-04-03",
        "--json",
    )
    rows = json.loads(out)
    assert rows[1] == {
        "at": "2026-04-02T08:30:00+01:00",
        "open": True,
        "kind": "hours",
        "cause": "2026-04-02 Thu weekly hours (thu) 08:30-17:30: open",
    }


def test_timeline_unknown_tenant(capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown tenant is a usage error listing the known ones."""
    code, _, err = run(
        capsys, "plan", "timeline", EXAMPLE, "--tenant", "x", "--from", "2026-01-01", "--to", "2026-01-02"
    )
    assert code == 2
    assert "unknown tenant (known: charnwood, harborough)" in err


def test_diff_shows_where_and_when_plans_differ(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Moving a training day shows both dates, per number, as time ranges."""
    new = tmp_path / "new.yaml"
    new.write_text(Path(EXAMPLE).read_text().replace('"2027-01-08"', '"2026-12-29"'))
    code, out, _ = run(
        capsys, "plan", "diff", EXAMPLE, str(new), "--from", "2026-12-01", "--to", "2027-01-10", "--json"
    )
    data = json.loads(out)
    rows = data["differences"]
    assert (code, data["changes"]) == (1, 2)
    assert [(r["number"], r["keys"], r["from"], r["to"]) for r in rows] == [
        ("+441632960001", None, "2026-12-29T08:30:00+00:00", "2026-12-29T17:30:00+00:00"),
        ("+441632960001", None, "2027-01-08T08:30:00+00:00", "2027-01-08T17:30:00+00:00"),
    ]
    assert rows[0]["old"] == "open: menu main"
    assert rows[0]["new"].startswith("closed: external 01632 960999")


def test_diff_of_a_menu_change_names_the_keys(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Re-pointing a menu option shows only that key path, while open."""
    new = tmp_path / "new.yaml"
    new.write_text(
        Path(EXAMPLE)
        .read_text()
        .replace('"2": {type: queue, queue: waste}', '"2": {type: queue, queue: revenues}')
    )
    code, out, _ = run(
        capsys, "plan", "diff", EXAMPLE, str(new), "--from", "2026-11-23", "--to", "2026-11-23"
    )
    assert code == 1
    assert out.splitlines() == [
        "01632 960001 keys 2: 2026-11-23 Mon 08:30 -> 2026-11-23 Mon 17:30",
        "    old: open: [harborough/bin-collection-change] queue waste",
        "    new: open: [harborough/bin-collection-change] queue revenues",
        "1 change: the plans route calls differently",
    ]


def test_diff_of_identical_plans(capsys: pytest.CaptureFixture[str]) -> None:
    """No difference is said plainly: exit 0, and a count of 0 for machines."""
    code, out, _ = run(capsys, "plan", "diff", EXAMPLE, EXAMPLE, "--from", "2026-11-01", "--to", "2026-11-30")
    assert (code, out.strip()) == (0, "no difference: both plans route every call alike")
    code, out, _ = run(
        capsys, "plan", "diff", EXAMPLE, EXAMPLE, "--from", "2026-11-01", "--to", "2026-11-30", "--json"
    )
    assert (code, json.loads(out)) == (0, {"changes": 0, "differences": []})


def test_diff_of_a_broken_plan_exits_two_with_the_errors_of_both(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Trouble is exit 2, as with diff(1), so a script cannot take it for "the plans differ"."""
    old, new = tmp_path / "old.yaml", tmp_path / "new.yaml"
    old.write_text("version: 2\n")
    new.write_text(Path(EXAMPLE).read_text().replace("queue: waste}", "queue: bins}", 1))
    code, out, err = run(
        capsys, "plan", "diff", str(old), str(new), "--from", "2026-11-01", "--to", "2026-11-30"
    )
    assert (code, out) == (2, "")
    assert f"callrouter: {old} has errors:" in err
    assert f"callrouter: {new} has errors:" in err
    assert "new.yaml:70: tenants.harborough.menus.main.options.\"2\": unknown queue 'bins'" in err
    code, _, err = run(capsys, "plan", "diff", EXAMPLE, EXAMPLE, "--from", "2026-11-30", "--to", "2026-11-01")
    assert (code, err.strip()) == (2, "callrouter: --to is before --from")


def test_commands_on_a_broken_plan_exit_one(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """explain refuses a plan with errors and lists them."""
    target = tmp_path / "plan.yaml"
    target.write_text("version: 2\n")
    code, out, err = run(capsys, "plan", "explain", str(target), "--number", "1", "--at", "2026-01-01 10:00")
    assert (code, out) == (1, "")
    assert "version" in err


def test_check_names_a_records_policy_that_purges_before_it_archives(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """`plan check` reports a tenant's records policy that would purge records before archiving them."""
    target = tmp_path / "plan.yaml"
    text = Path(EXAMPLE).read_text()
    ages = "      retention_days: 730\n      archive_after_days: 90\n"  # Harborough's, in the example
    assert text.count(ages) == 1
    policy = "      retention_days: 30\n      archive_after_days: 60\n"
    target.write_text(text.replace(ages, policy))
    code, out, err = run(capsys, "plan", "check", str(target))
    assert code == 1
    assert out == ""
    assert "tenants.harborough.records: archive_after_days 60 must be below retention_days 30" in err
    target.write_text(text.replace(ages, policy.replace("60", "7")))
    code, out, _ = run(capsys, "plan", "check", str(target))
    assert code == 0
    assert "OK (2 tenants, 0 warnings)" in out
