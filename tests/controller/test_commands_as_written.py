"""The README's commands, run as a user would (processes, the environment, a real Redis).

``serve`` and ``web`` take their Redis from ``CALLROUTER_REDIS``; ``toggle`` and ``state`` are
clients of ``web`` (``CALLROUTER_API_URL``, ``CALLROUTER_API_TOKEN_FILE``), which checks a
toggle against the plan in force, so it lands where the controller reads; ``--direct`` is the
administrators' path to Redis; a busy FastAGI port is one line on stderr and a non-zero exit."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from emulator.agi import CallerScript
from emulator.dialplan import place_call
from routing.redis_keys import KEYS
from tests.controller.conftest import HARBOROUGH
from tests.support.processes import stop_tree_async
from tests.support.redis_server import RedisServer, free_port, running_redis
from tests.support.toggle_keys import key_file

ROOT = Path(__file__).parents[2]


def readme_command(start: str) -> list[str]:
    """The README's "Running it" line that starts with ``start``, as argv (comment dropped)."""
    text = (ROOT / "README.md").read_text()
    block = text.split("## Running it", 1)[1].split("```", 2)[1]
    line = next(line for line in block.splitlines() if line.startswith(start))
    return shlex.split(line, comments=True)


def callrouter(argv: list[str]) -> list[str]:
    """``callrouter ARGS...`` as the installed command runs it."""
    assert argv[0] == "callrouter"
    return [sys.executable, "-m", "callrouter.cli", *argv[1:]]


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    """A Redis of this test's own: the commands use the production key names."""
    with running_redis(max_lifetime_s=120) as server:
        yield server


def user_env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLROUTER_")}
    return {**env, **values}


def run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        callrouter(argv), cwd=ROOT, env=env, capture_output=True, text=True, timeout=30, check=False
    )


def events(path: Path) -> list[dict[str, object]]:
    found = []
    for line in path.read_text().splitlines():
        try:
            found.append(json.loads(line))
        except ValueError:
            continue
    return found


async def wait_for(path: Path, event: str, timeout: float = 15) -> dict[str, object]:
    async with asyncio.timeout(timeout):
        while not (found := [e for e in events(path) if e.get("event") == event]):
            await asyncio.sleep(0.05)
    return found[0]


async def until_plan_in_force(redis_url: str, timeout_s: float = 15) -> None:
    """Wait until the controller has published the plan in force to Redis."""
    client = Redis.from_url(redis_url)
    try:
        async with asyncio.timeout(timeout_s):
            while not await client.exists(KEYS.plan_in_force()):
                await asyncio.sleep(0.05)
    finally:
        await client.aclose()


async def test_readme_toggle_and_state_reach_the_controller(redis: RedisServer, tmp_path: Path) -> None:
    """serve and web with the Redis from the environment; a supervisor's user and token made with
    ``callrouter users``; toggle and state exactly as the README writes them, through the web
    service: the toggle is checked against the plan the controller published, signed, lands in
    its Redis with the token's user, and the next call goes to emergency cover."""
    port, web_port = free_port(), free_port()
    key = key_file(tmp_path)
    env = user_env(
        CALLROUTER_REDIS=redis.url, CALLROUTER_AGI_PORT=str(port), CALLROUTER_TOGGLE_KEY_FILE=str(key),
        CALLROUTER_WEB_PORT=str(web_port),
    )  # fmt: skip
    serve = readme_command("callrouter serve")
    assert not {"--redis", "--agi-port"} & set(serve)
    log, web_log = tmp_path / "serve.log", tmp_path / "web.log"
    with log.open("w") as out, web_log.open("w") as web_out:
        process = await asyncio.create_subprocess_exec(
            *callrouter(serve), cwd=ROOT, env=env, stdout=out, stderr=asyncio.subprocess.STDOUT
        )
        web = await asyncio.create_subprocess_exec(
            *callrouter(["callrouter", "web"]),
            cwd=ROOT,
            env=env,
            stdout=web_out,
            stderr=asyncio.subprocess.STDOUT,
        )
    try:
        password = tmp_path / "password"
        password.write_text("a supervisor's password\n")
        users = [
            "callrouter",
            "users",
            "add",
            "spatel",
            "--name",
            "S. Patel",
            "--role",
            "harborough:supervisor",
        ]
        added = await asyncio.to_thread(run, [*users, "--password-file", str(password)], env)
        assert added.returncode == 0, added.stderr
        made = await asyncio.to_thread(run, ["callrouter", "users", "token", "spatel", "--name", "cli"], env)
        assert made.returncode == 0, made.stderr
        token = tmp_path / "token"
        token.write_text(made.stdout)
        started = await wait_for(log, "controller.started")
        assert (started["redis"], started["port"]) == (redis.url, port)
        async with asyncio.timeout(15):
            while "listening on" not in web_log.read_text():
                await asyncio.sleep(0.05)
        await until_plan_in_force(redis.url)  # published as the controller starts; toggles check it
        client = user_env(
            CALLROUTER_API_URL=f"http://127.0.0.1:{web_port}", CALLROUTER_API_TOKEN_FILE=str(token)
        )

        toggle = readme_command("callrouter toggle")
        assert not {"--plan", "--redis", "--by"} & set(toggle)
        done = await asyncio.to_thread(run, toggle, client)
        assert (done.returncode, done.stderr) == (0, "")
        # the expiry with its date, in the council's zone (4h ahead, GMT or BST)
        assert re.fullmatch(
            r"emergency for harborough: on until \w{3} \d\d \w{3} \d{4} \d\d:\d\d (GMT|BST) "
            r"\(was off\); audit \d+-\d+\n",
            done.stdout,
        ), done.stdout

        state = await asyncio.to_thread(run, readme_command("callrouter state"), client)
        assert state.returncode == 0, state.stderr
        assert re.search(
            r"  toggles: emergency \(Flooding; by spatel; until \w{3} \d\d \w{3} \d{4} ", state.stdout
        ), state.stdout
        assert re.search(r" spatel toggle\.emergency\.on until .*: Flooding", state.stdout), state.stdout

        # the controller's copy refreshes four times a second (later on a loaded machine): calls
        # until one is routed with the toggle, within a bound
        async with asyncio.timeout(15):
            while True:
                await place_call("127.0.0.1", port, CallerScript(dial=HARBOROUGH, steps=[]))
                routed = [e for e in events(log) if e.get("event") == "call.routed"]
                if routed and routed[-1].get("state") == "emergency":
                    break
                await asyncio.sleep(0.25)
        assert routed[-1]["tenant"] == "harborough"
    finally:
        await asyncio.gather(stop_tree_async(process, 15), stop_tree_async(web, 15))


def test_toggle_without_a_token_says_where_to_give_one(redis: RedisServer) -> None:
    """No API token configured: a clear refusal naming the setting, exit 2."""
    done = run(readme_command("callrouter toggle"), user_env(CALLROUTER_REDIS=redis.url))
    assert done.returncode == 2
    assert done.stderr.startswith("callrouter: no API token: set CALLROUTER_API_TOKEN_FILE"), done.stderr


def test_no_service_is_one_line(tmp_path: Path) -> None:
    """Nothing listening where CALLROUTER_API_URL points: one line naming it, exit 3."""
    token = tmp_path / "token"
    token.write_text("crt_x\n")
    url = f"http://127.0.0.1:{free_port()}"
    env = user_env(CALLROUTER_API_URL=url, CALLROUTER_API_TOKEN_FILE=str(token))
    done = run(readme_command("callrouter state"), env)
    assert done.returncode == 3
    assert done.stderr.startswith(f"callrouter: the web service at {url} did not answer: "), done.stderr
    assert len(done.stderr.splitlines()) == 1


def direct(argv: list[str]) -> list[str]:
    """The README's line as an administrator's break-glass run on the service host."""
    return [*argv, "--by", "host:admin", "--direct"]


def test_direct_toggle_without_a_key_says_where_to_give_one(redis: RedisServer) -> None:
    """No toggle key configured: a clear refusal naming the setting, exit 2, nothing written."""
    done = run(direct(readme_command("callrouter toggle")), user_env(CALLROUTER_REDIS=redis.url))
    assert done.returncode == 2
    assert done.stderr.startswith("callrouter: no toggle key: set CALLROUTER_TOGGLE_KEY_FILE"), done.stderr


def test_a_key_file_others_can_read_is_refused(redis: RedisServer, tmp_path: Path) -> None:
    """A key file readable by the group: refused with the reason and the fix, the key not shown."""
    key = key_file(tmp_path)
    key.chmod(0o640)
    env = user_env(CALLROUTER_REDIS=redis.url, CALLROUTER_TOGGLE_KEY_FILE=str(key))
    done = run(direct(readme_command("callrouter toggle")), env)
    assert done.returncode == 2
    assert done.stderr == (
        f"callrouter: toggle key file {key}: readable or writable by others (mode 0640); "
        f"make it the owner's only: chmod 600 {key}\n"
    )


def test_toggle_without_a_plan_anywhere_says_where_to_give_one(redis: RedisServer, tmp_path: Path) -> None:
    """No plan configured and no controller has published one: a clear refusal, exit 2."""
    env = user_env(CALLROUTER_REDIS=redis.url, CALLROUTER_TOGGLE_KEY_FILE=str(key_file(tmp_path)))
    done = run(direct(readme_command("callrouter toggle")), env)
    assert done.returncode == 2
    assert done.stderr.startswith("callrouter: no plan: give --plan PLAN (or CALLROUTER_PLAN")


def test_unreachable_redis_is_one_line(tmp_path: Path) -> None:
    """Nothing listening where CALLROUTER_REDIS points: one line naming it, exit 3."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    done = run([*readme_command("callrouter state"), "--direct"], user_env(CALLROUTER_REDIS=url))
    assert done.returncode == 3
    assert done.stderr == f"callrouter: Redis at {url} did not answer: ConnectionError\n"


def test_busy_fastagi_port_is_one_line_and_exit_3() -> None:
    """Something already listens on the FastAGI port: one line on stderr, no traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run(
            ["callrouter", "serve", "--plan", "examples/plan.yaml", "--agi-port", str(port), "--no-redis"],
            user_env(),
        )
    assert done.returncode == 3
    assert (
        done.stderr == f"callrouter: cannot listen for FastAGI on 127.0.0.1:{port}: Address already in use\n"
    )


def test_bad_setting_names_its_source(tmp_path: Path) -> None:
    """A setting that cannot be used is one line naming where it came from; exit 2."""
    done = run(readme_command("callrouter serve"), user_env(CALLROUTER_AGI_PORT="45x73"))
    assert done.returncode == 2
    assert done.stderr.startswith("callrouter: CALLROUTER_AGI_PORT '45x73': Input should be a valid integer")
    assert len(done.stderr.splitlines()) == 1
