"""``callrouter plan publish|versions|show|rollback --direct`` against a real redis-server, and ``serve
--plan-source store`` refusing to start on an empty store with no plan to seed it."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from callrouter.cli import main
from tests.controller.conftest import EXAMPLE
from tests.support.redis_server import RedisServer, running_redis

SHORT_DAY = EXAMPLE.read_text().replace('weekdays: ["08:30-17:30"]', 'weekdays: ["08:30-12:00"]', 1)


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> Iterator[RedisServer]:
    with running_redis(max_lifetime_s=120) as server:
        monkeypatch.setenv("CALLROUTER_REDIS", server.url)
        monkeypatch.delenv("CALLROUTER_CONFIG", raising=False)
        monkeypatch.delenv("CALLROUTER_BY", raising=False)
        yield server


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_publish_versions_show_and_rollback(
    store: RedisServer, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    short = tmp_path / "short.yaml"
    short.write_text(SHORT_DAY)
    code, out, _ = run(
        capsys, "plan", "publish", "--direct", str(EXAMPLE), "--comment", "first plan", "--by", "alice"
    )
    assert code == 0
    assert out.startswith("published version 1 (generation 1), live at ")
    monkeypatch.setenv("CALLROUTER_BY", "bob")
    code, out, _ = run(
        capsys, "plan", "publish", "--direct", str(short), "--comment", "short Tuesday", "--json"
    )
    assert code == 0
    assert json.loads(out)["live"]["version"] == 2
    code, out, _ = run(capsys, "plan", "publish", "--direct", str(short), "--comment", "again")
    assert code == 0
    assert out.startswith("nothing published: this plan is the live version 2")

    code, out, _ = run(capsys, "plan", "versions", "--direct")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "live: version 2, generation 2"
    sha = hashlib.sha256(SHORT_DAY.encode()).hexdigest()
    assert lines[1].startswith("*    2  ")
    assert lines[1].endswith(f"{sha[:12]}  bob: short Tuesday")
    assert lines[2].endswith("alice: first plan")
    code, out, _ = run(capsys, "plan", "versions", "--direct", "--json")
    assert [v["sha256"] for v in json.loads(out)["versions"]] == [
        sha,
        hashlib.sha256(EXAMPLE.read_bytes()).hexdigest(),
    ]

    code, out, _ = run(capsys, "plan", "show", "--direct", "1")
    assert code == 0
    assert out == EXAMPLE.read_text() + "\n"

    code, out, _ = run(capsys, "plan", "rollback", "--direct", "1", "--comment", "back to the full day")
    assert code == 0
    assert out.strip() == "rolled back from version 2 to version 1 (generation 3)"
    code, _, err = run(capsys, "plan", "rollback", "--direct", "5", "--comment", "no such")
    assert code == 2
    assert err.strip() == "callrouter: refused: no version 5 (the store has versions 1 to 2)"


def test_a_plan_with_errors_is_refused_with_every_problem(
    store: RedisServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        run(capsys, "plan", "publish", "--direct", str(EXAMPLE), "--comment", "first", "--by", "alice")[0]
        == 0
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text(EXAMPLE.read_text().replace('weekdays: ["08:30-17:30"]', "weekdays: [0830]", 1)
                   .replace("{type: menu, menu: main}", "{type: menu, menu: mian}", 1))  # fmt: skip
    code, out, err = run(
        capsys, "plan", "publish", "--direct", str(bad), "--comment", "broken", "--by", "bob"
    )
    assert code == 1
    assert out == ""
    assert "bad.yaml: the plan has 4 problem(s): nothing published" in err
    assert "  bad.yaml:34: tenants.harborough.hours.weekdays[0]: '0830' is not a time range" in err
    assert "  bad.yaml:46: tenants.harborough.entry: unknown menu 'mian' (known: main, more)" in err
    assert "  bad.yaml:65: tenants.harborough.menus.main: unreachable menu" in err
    assert "  bad.yaml:80: tenants.harborough.menus.more: unreachable menu" in err
    code, out, _ = run(capsys, "plan", "versions", "--direct")
    assert out.splitlines()[0] == "live: version 1, generation 1"
    assert len(out.splitlines()) == 2


def test_a_control_character_in_the_comment_is_refused(
    store: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(
        capsys, "plan", "publish", "--direct", str(EXAMPLE), "--comment", "ok\x1b[2J", "--by", "alice"
    )
    assert code == 2
    assert "control character (\\x1b)" in err
    code, out, _ = run(capsys, "plan", "versions", "--direct")
    assert out.strip() == "no versions: publish one with callrouter plan publish FILE --comment ..."


def test_serve_from_an_empty_store_without_a_plan_refuses_to_start(store: RedisServer) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "callrouter.cli", "serve", "--plan-source", "store", "--agi-port", "0"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert "plan_source is store and the plan store is empty: publish a plan first" in done.stderr


def test_serve_from_the_store_needs_redis(store: RedisServer) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "callrouter.cli", "serve", "--plan-source", "store", "--no-redis"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "plan_source = store needs Redis" in done.stderr
