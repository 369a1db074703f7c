"""The long-running commands under ``redis.key_tag``, as real processes on one real redis-server:
``callrouter serve`` (its AMI consumer, writer lease, live state, toggles, plan in force, contact
records and callback dialler), ``callrouter records deliver`` and ``callrouter web`` (its users,
live view, toggles, audit trail, plans and records), all started with
``CALLROUTER_REDIS_KEY_TAG=east``, touch keys of tag ``east`` and of no other, as Redis's own
``MONITOR`` reports every command they send (the commands inside Lua scripts included). Meanwhile
they work: the controller routes on the live state its AMI consumer writes under ``east`` and
obeys a toggle written there by ``callrouter toggle``, and every call's record reaches the CRM."""

from __future__ import annotations

import asyncio
import functools
import json
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from callrouter.cli import main
from emulator.agi import CallerScript, PressAfterPrompt
from emulator.ami import FakeAmi
from emulator.centre import CallCentre, QueuePlay
from emulator.crm import FakeCrm
from emulator.dialplan import Asterisk, place_call
from routing.redis_keys import RedisKeys
from tests.ami.helpers import wait_until
from tests.controller.conftest import HARBOROUGH
from tests.records.conftest import SECRET, plan_with_sinks, worker_process
from tests.support.redis_monitor import monitoring, tags_in
from tests.support.redis_server import RedisServer, running_redis
from tests.support.serve_process import CALLER_HASH_KEY, serve_started, start_serve, stop_processes
from tests.support.web_process import running_web, user_token_file

EAST = RedisKeys(tag="east")


@pytest.fixture
def own_redis() -> Any:
    with running_redis(max_lifetime_s=300) as server:
        yield server


async def _call(port: int, centre: Asterisk, plays: dict[str, QueuePlay], n: int, keys: str) -> str:
    caller = f"07700900{n:03d}"
    plays[caller] = QueuePlay("answer")
    steps = [PressAfterPrompt(k) for k in keys]
    script = CallerScript(dial=HARBOROUGH, caller=caller, steps=steps, uniqueid=f"1795990000.{1000 + n}")
    return (await place_call("127.0.0.1", port, script, asterisk=centre, deadline=30, number=n + 1)).summary()


def _get(base: str, path: str, token: Path) -> Any:
    request = urllib.request.Request(
        base + path, headers={"Authorization": f"Bearer {token.read_text().strip()}"}
    )
    with urllib.request.urlopen(request, timeout=5) as answer:
        return json.loads(answer.read())


async def test_serve_deliver_and_web_touch_their_centres_keys_alone(
    own_redis: RedisServer, tmp_path: Path, toggle_key_env: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.delenv("CALLROUTER_CONFIG", raising=False)
    monkeypatch.setenv("CALLROUTER_REDIS_KEY_TAG", "east")
    monkeypatch.setenv("CRM_SECRET", SECRET.decode())
    env = {"CALLROUTER_REDIS_KEY_TAG": "east", "CALLROUTER_TOGGLE_KEY_FILE": str(toggle_key_env)}
    redis = Redis.from_url(own_redis.url)
    crm = FakeCrm(SECRET)
    await crm.start()
    plan = plan_with_sinks(tmp_path, crm.url)
    archive = str(tmp_path / "archive")
    processes: list[asyncio.subprocess.Process] = []
    worker: subprocess.Popen[bytes] | None = None
    try:
        with monitoring(own_redis) as monitor:
            async with FakeAmi("callrouter", "serve-process-ami-secret") as fake:
                for i in range(1, 6):
                    fake.add_member(
                        "hdc-revenues", f"PJSIP/agent{i}", f"A{i}", membership="static", send=False
                    )
                monitor.mark("serve")
                log = tmp_path / "serve.log"
                process, port = await start_serve(plan, own_redis.url, log, ami_port=fake.port, env=env)
                processes.append(process)
                worker = worker_process(plan, own_redis.url, tmp_path / "deliver.log", Path(archive))
                await wait_until(functools.partial(serve_started, log), timeout_s=20)
                await wait_until(lambda: fake.sessions >= 1, timeout_s=10)
                for _ in range(6):
                    fake.caller_joins("hdc-revenues")
                async with asyncio.timeout(10):  # the AMI consumer writes live state under east
                    while await redis.zcard(EAST.queue_waiting("hdc-revenues")) < 6:
                        await asyncio.sleep(0.05)
                await asyncio.sleep(0.5)  # serve's cached live state follows within its refresh

                plays: dict[str, QueuePlay] = {}
                centre = Asterisk(centre=CallCentre(fake, lambda queue, caller: plays[caller.caller_num]))
                assert "queue cbc-assist" in await _call(port, centre, plays, 0, "11")  # the peak overflows

                # a supervisor's toggle written under east (the plan in force read there) is obeyed
                toggle = ["toggle", "--direct", "emergency", "harborough", "--on", "--reason", "flood",
                          "--by", "sam", "--expires", "2h", "--redis", own_redis.url]  # fmt: skip
                assert await asyncio.to_thread(main, toggle) == 0, capsys.readouterr().err
                async with asyncio.timeout(10):
                    n = 1
                    while "route (emergency)" not in await _call(port, centre, plays, n, "2"):
                        n += 1
                        await asyncio.sleep(0.1)
                expected = {f"1795990000.{1000 + i}:1" for i in range(n + 1)}
                await wait_until(lambda: {k for k, _, _ in crm.accepted} >= expected, timeout_s=30)

                monitor.mark("web")
                token = await asyncio.to_thread(
                    user_token_file,
                    own_redis.url,
                    tmp_path,
                    "sup",
                    ["harborough:supervisor", "harborough:engineer"],
                )
                web_env = {**env, "CALLROUTER_PLAN": str(plan), "CALLROUTER_RECORDS_ARCHIVE_DIR": archive,
                           "CALLROUTER_RECORDS_CALLER_HASH_KEY": CALLER_HASH_KEY}  # fmt: skip
                with running_web(own_redis.url, extra_env=web_env, lifetime_s=120) as base:
                    toggles = _get(base, "/api/v1/tenants/harborough/toggles", token)
                    assert "emergency" in json.dumps(toggles)
                    audit = _get(base, "/api/v1/tenants/harborough/audit", token)
                    assert "toggle.emergency.on" in json.dumps(audit)
                    live = _get(base, "/api/v1/live", token)
                    assert live["tiles"], live
                    found = _get(
                        base, "/api/v1/tenants/harborough/records?from=2026-11-24&to=2026-11-24", token
                    )
                    assert found is not None
                    _get(base, "/api/v1/plans", token)
            segments = monitor.segments()
    finally:
        killed = await stop_processes(processes)
        if worker is not None:
            worker.terminate()
            worker.wait(timeout=20)
        await crm.stop()
        await redis.aclose()
    assert killed == []  # serve drained and stopped on SIGTERM
    errors = [
        line for line in (tmp_path / "serve.log").read_text().splitlines() if '"level": "error"' in line
    ]
    assert errors == []
    everything = [line for label, lines in segments.items() if not label.startswith("(") for line in lines]
    for label in ("serve", "web"):
        tags = set().union(*(tags_in(line) for line in segments[label]))
        assert tags == {"east"}, (
            f"{label}: {sorted(tags)}: {[x for x in segments[label] if 'east' not in x][:5]}"
        )
    assert len(everything) > 100
