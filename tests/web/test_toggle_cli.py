"""``callrouter toggle`` and ``callrouter state`` as clients of a real ``callrouter web``
process (its own Redis database, the tests' toggle key): the README's lines, the preview, clear
errors for a refused token, a missing role, bad text and a service that does not answer; and
``--direct``, the administrators' break-glass path."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from redis.asyncio import Redis

from callrouter.cli import main
from routing.live.source import verified_toggle
from routing.redis_keys import KEYS
from tests.support.processes import stop_tree
from tests.support.redis_server import RedisServer, free_port
from tests.support.toggle_keys import KEYRING, key_file
from tests.support.web import add_user, make_token
from tests.web.conftest import WEB_DB
from tests.web.test_toggles import ROLES, publish_plan
from web.identity import IdentityStore

README = Path(__file__).resolve().parents[2] / "README.md"


@contextmanager
def callrouter_web(redis_url: str, key: Path, log: Path) -> Iterator[str]:
    """A ``callrouter web`` process on a free loopback port (its output in ``log``); yields its
    base URL."""
    port = free_port()
    env = {**os.environ, "CALLROUTER_REDIS": redis_url, "CALLROUTER_WEB_PORT": str(port),
           "CALLROUTER_WEB_COOKIE_SECURE": "false", "CALLROUTER_LOG_LEVEL": "warning",
           "CALLROUTER_TOGGLE_KEY_FILE": str(key)}  # fmt: skip
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "callrouter.cli", "web"], env=env, stdout=output, stderr=subprocess.STDOUT
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(base + "/health", timeout=1):
                    break
            except OSError:
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline
                time.sleep(0.1)
        yield base
    finally:
        stop_tree(process, timeout_s=10)


async def cli(argv: list[str]) -> int:
    return await asyncio.to_thread(main, argv)


def readme_line(start: str) -> list[str]:
    """The README's command line starting with ``start``, split as a shell would (no comment)."""
    line = next(line for line in README.read_text().splitlines() if line.startswith(start))
    return shlex.split(line, comments=True)[1:]


async def test_the_readme_lines_work_through_the_service(
    *,
    web_redis: Redis,
    web_store: IdentityStore,
    redis_server: RedisServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await publish_plan(web_redis)
    await add_user(web_store, "sup", ROLES["sup"])
    await add_user(web_store, "viewer", ROLES["viewer"])
    token_file = tmp_path / "token"
    token_file.write_text(await make_token(web_store, "sup") + "\n")
    url = f"redis://{redis_server.host}:{redis_server.port}/{WEB_DB}"
    with callrouter_web(url, key_file(tmp_path), tmp_path / "web.log") as base:
        monkeypatch.delenv("CALLROUTER_REDIS", raising=False)  # the client needs no Redis
        monkeypatch.setenv("CALLROUTER_API_URL", base)
        monkeypatch.setenv("CALLROUTER_API_TOKEN_FILE", str(token_file))
        toggle = readme_line("callrouter toggle ")
        assert toggle[:4] == ["toggle", "emergency", "harborough", "--on"]

        assert await cli([*toggle, "--preview"]) == 0
        assert capsys.readouterr().out.startswith(
            "preview (nothing changed): emergency on for harborough until "
        )
        assert await web_redis.get(KEYS.toggle("emergency", "harborough")) is None

        assert await cli(toggle) == 0
        out = capsys.readouterr().out
        assert out.startswith("emergency for harborough: on until ")
        assert "(was off); audit " in out
        key = KEYS.toggle("emergency", "harborough")
        stored = verified_toggle(KEYRING, key, await web_redis.get(key))  # signed by the service
        assert stored.by == "sup"  # the token's user

        assert await cli(readme_line("callrouter state")) == 0
        state = capsys.readouterr().out
        assert "harborough (Europe/London):" in state
        assert "  toggles: emergency (Flooding; by sup; until " in state
        assert " sup toggle.emergency.on until " in state
        assert "charnwood" not in state  # not this user's council
        assert await cli(["state", "--json"]) == 0
        data = json.loads(capsys.readouterr().out)
        assert data["tenants"]["harborough"]["toggles"]["in_force"]["emergency"]["reason"] == "Flooding"

        off = ["toggle", "emergency", "harborough", "--off", "--reason", "Water receded", "--json"]
        assert await cli(off) == 0
        assert json.loads(capsys.readouterr().out)["previous"]["by"] == "sup"

        capsys.readouterr()
        for argv, code, words in [
            ([*toggle, "--by", "S. Patel"], 2, "--by is for --direct only"),
            ([*toggle[:4], "--reason", "flood\x1b[2J", "--expires", "2h"], 2, "control character"),
            ([*toggle[:4], "--reason", "flood", "--expires", "30d"], 2, "more than 14 days"),
            (
                ["toggle", "emergency", "../whoami", "--on", "--reason", "x", "--expires", "1h"],
                2,
                "refused (404)",
            ),
        ]:
            assert await cli(argv) == code, argv
            assert words in capsys.readouterr().err, argv

        token_file.write_text(await make_token(web_store, "viewer"))
        assert await cli(toggle) == 2
        assert "refused (403): viewer is not a supervisor of tenant harborough" in capsys.readouterr().err
        token_file.write_text("crt_not-a-token")
        assert await cli(toggle) == 2
        assert "token refused (unknown, expired or revoked)" in capsys.readouterr().err
        assert await cli(["state"]) == 2
        capsys.readouterr()
    monkeypatch.setenv("CALLROUTER_API_URL", f"http://127.0.0.1:{free_port()}")
    assert await cli(toggle) == 3
    assert "callrouter: the web service at http://127.0.0.1:" in capsys.readouterr().err
    monkeypatch.delenv("CALLROUTER_API_TOKEN_FILE")
    assert await cli(toggle) == 2
    assert "no API token: set CALLROUTER_API_TOKEN_FILE" in capsys.readouterr().err


async def test_direct_is_the_break_glass_path_with_the_key_and_redis(
    web_redis: Redis,
    redis_server: RedisServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await publish_plan(web_redis)
    monkeypatch.setenv("CALLROUTER_TOGGLE_KEY_FILE", str(key_file(tmp_path)))
    url = ["--redis", f"redis://{redis_server.host}:{redis_server.port}/{WEB_DB}"]
    on = [
        "toggle",
        "emergency",
        "harborough",
        "--on",
        "--reason",
        "Flooding",
        "--expires",
        "4h",
        "--direct",
        *url,
    ]
    assert await cli([*on, "--by", "host:admin", "--preview"]) == 0
    assert capsys.readouterr().out.startswith("preview (nothing changed): emergency on until ")
    assert await web_redis.get(KEYS.toggle("emergency", "harborough")) is None
    assert await cli([*on, "--by", "host:admin"]) == 0
    key = KEYS.toggle("emergency", "harborough")
    assert verified_toggle(KEYRING, key, await web_redis.get(key)).by == "host:admin"
    assert await cli(on) == 2  # --direct records --by: it must be given
    assert "--by" in capsys.readouterr().err
    assert await cli(["state", "--direct", *url]) == 0
    assert "harborough: toggles: emergency (Flooding; by host:admin;" in capsys.readouterr().out
