"""``callrouter plan publish|versions|show|rollback`` as clients of a real ``callrouter web``
process (URL and token from the environment), on a real redis-server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis

from callrouter.api_client import ApiClient, ApiConfigError
from callrouter.cli import main
from tests.support.redis_server import RedisServer, free_port
from tests.support.web_process import running_web, user_token_file

CLI_DB = 13
EXAMPLE = Path(__file__).parents[2] / "examples" / "plan.yaml"
SHORT_DAY = EXAMPLE.read_text().replace('weekdays: ["08:30-17:30"]', 'weekdays: ["08:30-12:00"]', 1)
CHARNWOOD_RENAMED = EXAMPLE.read_text().replace(
    'name: "Charnwood Borough Council"', 'name: "Charnwood BC"', 1
)


@pytest.fixture(scope="module")
def service(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path]]:
    """(base URL, folder with chief.token and harb.token) of a running ``callrouter web``."""
    url = f"redis://{redis_server.host}:{redis_server.port}/{CLI_DB}"
    with Redis(host=redis_server.host, port=redis_server.port, db=CLI_DB) as redis:
        redis.flushdb()
    folder = tmp_path_factory.mktemp("plans-cli")
    user_token_file(url, folder, "chief", ["*:engineer"])
    user_token_file(url, folder, "harb", ["harborough:engineer"])
    with running_web(url) as base:
        yield base, folder


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _as(monkeypatch: pytest.MonkeyPatch, service: tuple[str, Path], user: str) -> None:
    base, folder = service
    monkeypatch.setenv("CALLROUTER_API_URL", base)
    monkeypatch.setenv("CALLROUTER_API_TOKEN_FILE", str(folder / f"{user}.token"))
    monkeypatch.delenv("CALLROUTER_API_TOKEN", raising=False)
    monkeypatch.delenv("CALLROUTER_REDIS", raising=False)  # the client needs no Redis


def test_the_cli_publishes_lists_shows_and_rolls_back_through_the_service(
    service: tuple[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _as(monkeypatch, service, "chief")
    code, out, err = run(capsys, "plan", "publish", str(EXAMPLE), "--comment", "first plan")
    assert (code, err) == (0, "")
    assert out.startswith("published version 1 (generation 1), live at ")
    code, out, _ = run(capsys, "plan", "publish", str(EXAMPLE), "--comment", "again")
    assert out.startswith("nothing published: this plan is the live version 1")

    _as(monkeypatch, service, "harb")
    short = tmp_path / "short.yaml"
    short.write_text(SHORT_DAY)
    code, out, _ = run(capsys, "plan", "publish", str(short), "--comment", "short Tuesday", "--json")
    assert code == 0
    assert json.loads(out)["live"]["version"] == 2
    renamed = tmp_path / "renamed.yaml"
    renamed.write_text(CHARNWOOD_RENAMED)
    code, out, err = run(capsys, "plan", "publish", str(renamed), "--comment", "not mine")
    assert (code, out) == (2, "")
    assert "harb is not an engineer of charnwood" in err
    bad = tmp_path / "bad.yaml"
    bad.write_text(SHORT_DAY.replace('weekdays: ["08:30-12:00"]', "weekdays: [0830]", 1))
    code, out, err = run(capsys, "plan", "publish", str(bad), "--comment", "broken")
    assert (code, out) == (1, "")
    assert "  bad.yaml:34: tenants.harborough.hours.weekdays[0]: '0830' is not a time range" in err

    code, out, _ = run(capsys, "plan", "versions")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "live: version 2, generation 2"
    assert lines[1].startswith("*    2  ")
    assert lines[1].endswith("harb: short Tuesday")
    assert lines[2].endswith("chief: first plan")
    code, out, _ = run(capsys, "plan", "versions", "--json")
    assert [v["live"] for v in json.loads(out)["versions"]] == [True, False]
    code, out, _ = run(capsys, "plan", "show", "1")
    assert (code, out) == (0, EXAMPLE.read_text() + "\n")

    code, _, err = run(capsys, "plan", "rollback", "1", "--comment", "back")
    assert code == 2
    assert "harb is not an engineer of every tenant (*)" in err
    _as(monkeypatch, service, "chief")
    code, out, _ = run(capsys, "plan", "rollback", "1", "--comment", "back to the full day")
    assert (code, out.strip()) == (0, "rolled back from version 2 to version 1 (generation 3)")
    code, _, err = run(capsys, "plan", "rollback", "9", "--comment", "no such")
    assert code == 2
    assert "no version 9" in err


def test_the_client_says_what_is_missing_or_unreachable(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("CALLROUTER_API_TOKEN", raising=False)
    monkeypatch.delenv("CALLROUTER_API_TOKEN_FILE", raising=False)
    code, _, err = run(capsys, "plan", "versions")
    assert code == 2
    assert "no API token: set CALLROUTER_API_TOKEN_FILE" in err
    with pytest.raises(ApiConfigError, match="give the service's URL"):
        ApiClient.from_env({"CALLROUTER_API_URL": "ftp://x", "CALLROUTER_API_TOKEN": "t"})
    token = tmp_path / "token"
    token.write_text("secret-token-value\n")
    assert ApiClient.from_env(
        {"CALLROUTER_API_TOKEN_FILE": str(token), "CALLROUTER_API_TOKEN": "x"}
    ).token == ("secret-token-value")
    monkeypatch.setenv("CALLROUTER_API_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("CALLROUTER_API_TOKEN_FILE", str(token))
    code, _, err = run(capsys, "plan", "versions")
    assert code == 3
    assert "did not answer" in err
    assert "secret-token-value" not in err
    code, _, err = run(capsys, "plan", "rollback", "1", "--comment", "x", "--by", "someone")
    assert code == 2
    assert "--by is only for --direct" in err
