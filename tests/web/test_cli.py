"""``callrouter users`` against a real Redis, and ``callrouter web`` as a real process."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from callrouter.cli import main
from callrouter.settings import SettingsError, load
from callrouter.web_cli import web_config
from routing.supervisor import audit_tail
from tests.support.processes import kill_tree
from tests.support.redis_server import RedisServer, free_port
from tests.support.web import PASSWORD, bearer, login
from tests.web.conftest import WEB_DB

Client = TestClient[web.Request, web.Application]


async def cli(argv: list[str]) -> int:
    """``callrouter ARGV`` in a worker thread (it runs its own event loop)."""
    return await asyncio.to_thread(main, argv)


def _url(server: RedisServer) -> str:
    return f"redis://{server.host}:{server.port}/{WEB_DB}"


async def test_users_add_token_list_revoke_round_trip(
    web_client: Client,
    web_redis: Redis,
    redis_server: RedisServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    secret = tmp_path / "password"
    secret.write_text(PASSWORD + "\n")
    redis = ["--redis", _url(redis_server)]
    add = ["users", "add", "alice", "--name", "Alice", "--role", "barnet:supervisor"]
    assert await cli([*add, "--password-file", str(secret), *redis]) == 0
    assert await cli([*add, "--password-file", str(secret), *redis]) == 2  # exists already
    capsys.readouterr()
    assert await cli(["users", "token", "alice", "--name", "nightly script", *redis]) == 0
    token = capsys.readouterr().out.strip()
    assert token.startswith("crt_")
    assert token not in json.dumps([str(k) async for k in web_redis.scan_iter()])  # only its hash is kept

    me = await web_client.get("/api/v1/whoami", headers=bearer(token))
    assert me.status == 200
    assert (await me.json())["roles"] == {"barnet": ["supervisor"]}
    await login(web_client, "alice")  # the password from the file works on the form

    capsys.readouterr()
    assert await cli(["users", "list", "--json", *redis]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["users"] == [{"user": "alice", "name": "Alice", "roles": {"barnet": ["supervisor"]}}]
    (info,) = listed["tokens"]
    assert info["name"] == "nightly script"
    assert info["revoked_at"] is None
    assert token not in json.dumps(listed)

    assert await cli(["users", "revoke", info["id"], *redis]) == 0
    assert (await web_client.get("/api/v1/whoami", headers=bearer(token))).status == 401
    capsys.readouterr()
    assert await cli(["users", "roles", "alice", "--set", "*:viewer", *redis]) == 0
    assert capsys.readouterr().out.strip().endswith("*:viewer")
    capsys.readouterr()
    assert await cli(["users", "token", "alice", "--name", "other", *redis]) == 0
    other = capsys.readouterr().out.strip()
    assert (await web_client.get("/api/v1/whoami", headers=bearer(other))).status == 200
    assert await cli(["users", "remove", "alice", *redis]) == 0
    assert (await web_client.get("/api/v1/whoami", headers=bearer(other))).status == 401
    assert (await web_client.get("/api/v1/whoami")).status == 401  # the session ended too
    what = [e["what"] for e in await audit_tail(web_redis, count=10)]
    assert what[:6] == [
        "auth.user.removed",
        "auth.token.created",
        "auth.user.roles",
        "auth.token.revoked",
        "auth.login.ok",
        "auth.token.created",
    ]
    assert all(
        e["by"].startswith("host:") for e in await audit_tail(web_redis, count=10) if "user" in e["what"]
    )


def test_users_refuses_a_short_password_and_a_bad_role(
    redis_server: RedisServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    short = tmp_path / "short"
    short.write_text("tooshort")
    redis = ["--redis", _url(redis_server)]
    assert main(["users", "add", "bob", "--password-file", str(short), *redis]) == 2
    assert "too short" in capsys.readouterr().err
    long_enough = tmp_path / "long"
    long_enough.write_text(PASSWORD)
    assert (
        main(["users", "add", "bob", "--role", "barnet:owner", "--password-file", str(long_enough), *redis])
        == 2
    )
    assert "TENANT:ROLE" in capsys.readouterr().err


def test_a_cookie_without_secure_only_on_loopback() -> None:
    env = {"CALLROUTER_WEB_COOKIE_SECURE": "false", "CALLROUTER_WEB_HOST": "0.0.0.0"}
    with pytest.raises(SettingsError, match="loopback"):
        web_config(load(env=env))
    assert not web_config(load(env={"CALLROUTER_WEB_COOKIE_SECURE": "false"})).cookie_secure


def test_callrouter_web_serves_and_stops_on_sigterm(redis_server: RedisServer) -> None:
    port = free_port()
    env = {**os.environ, "CALLROUTER_REDIS": _url(redis_server), "CALLROUTER_WEB_PORT": str(port)}
    process = subprocess.Popen(
        [sys.executable, "-m", "callrouter.cli", "web"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=1) as answer:
                    assert json.load(answer) == {"status": "ready"}
                    assert "default-src 'self'" in answer.headers["Content-Security-Policy"]
                break
            except OSError:
                assert process.poll() is None, process.stderr.read() if process.stderr else ""
                assert time.monotonic() < deadline, "callrouter web did not answer"
                time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            kill_tree(process.pid)
            process.wait(timeout=5)
        if process.stderr:
            process.stderr.close()
