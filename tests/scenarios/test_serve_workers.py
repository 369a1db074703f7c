"""``callrouter serve --workers 2``: real processes, one FastAGI port, emulated calls.

The supervisor and its two workers are real processes sharing one log file (every worker's
line carries its ``worker`` field); calls are placed by the emulated Asterisk on the one port.
Both workers take calls; a worker killed with SIGKILL is restarted while the other keeps
answering; SIGHUP reaches every worker; SIGTERM drains them all and the supervisor exits 0.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections import Counter
from pathlib import Path

from emulator.agi import CallerScript
from emulator.dialplan import place_calls
from tests.controller.conftest import HARBOROUGH
from tests.support.processes import alive, kill_tree, wait_ended
from tests.support.redis_server import RedisServer, free_port

EXAMPLE = Path(__file__).parents[2] / "examples" / "plan.yaml"
ANSWERED = ["route (open)", "menu main"]


def events(log: Path) -> list[dict[str, object]]:
    found = []
    for line in log.read_text().splitlines():
        try:
            found.append(json.loads(line))
        except ValueError:
            continue
    return found


def named(log: Path, event: str) -> list[dict[str, object]]:
    return [e for e in events(log) if e.get("event") == event]


async def wait_for(log: Path, event: str, count: int, timeout: float = 20) -> list[dict[str, object]]:
    async with asyncio.timeout(timeout):
        while len(found := named(log, event)) < count:
            await asyncio.sleep(0.05)
    return found


async def calls(port: int, count: int) -> None:
    """``count`` calls, ten at a time; every one answered by a worker (not the fail-static path)."""
    scripts = [CallerScript(dial=HARBOROUGH, caller=f"077009004{n:02d}", steps=[]) for n in range(count)]
    records = await place_calls("127.0.0.1", port, scripts, concurrency=10, deadline=20)
    assert [r.steps[:2] for r in records] == [ANSWERED] * count, [r.summary() for r in records]


def routed_by(log: Path) -> Counter[object]:
    return Counter(e.get("worker") for e in named(log, "call.routed"))


async def test_two_workers_share_the_port_survive_a_kill_and_drain(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(EXAMPLE.read_text())
    log = tmp_path / "serve.log"
    port = free_port()
    argv = [sys.executable, "-m", "callrouter.cli", "serve", "--workers", "2", "--plan", str(plan),
            "--agi-port", str(port), "--redis", redis_server.url, "--clock-start", "2026-11-24 10:00",
            "--records-journal", str(tmp_path / "journal")]  # fmt: skip
    env = {**os.environ, "CALLROUTER_RECORDS_CALLER_HASH_KEY": "workers test caller hash key, 32b"}
    with log.open("w") as out:
        supervisor = await asyncio.create_subprocess_exec(
            *argv, stdout=out, stderr=asyncio.subprocess.STDOUT, env=env
        )
    try:
        started = await wait_for(log, "controller.started", 2)
        assert sorted(e["worker"] for e in started) == [0, 1]
        await calls(port, 40)
        assert set(routed_by(log)) == {0, 1}, routed_by(log)  # the kernel spread them

        first = {e["worker"]: e["pid"] for e in named(log, "supervisor.worker_started")}
        assert len(set(first.values())) == 2
        os.kill(int(str(first[0])), signal.SIGKILL)
        died = await wait_for(log, "supervisor.worker_died", 1)
        assert died[0]["worker"] == 0
        assert died[0]["exit_code"] == -signal.SIGKILL
        before = routed_by(log)
        await calls(port, 10)  # worker 1 alone until worker 0 is back
        assert routed_by(log)[1] - before[1] >= 1
        await wait_for(log, "controller.started", 3)
        again = [e for e in named(log, "supervisor.worker_started") if e["worker"] == 0]
        assert len(again) == 2
        assert again[1]["pid"] != first[0]
        before = routed_by(log)
        await calls(port, 40)
        assert routed_by(log)[0] > before[0]  # the restarted worker takes calls again

        supervisor.send_signal(signal.SIGHUP)  # each worker tries the plan again: unchanged
        hups = await wait_for(log, "plan.unchanged", 2)
        assert sorted(e["worker"] for e in hups) == [0, 1]

        supervisor.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            code = await supervisor.wait()
    finally:  # signals go to the supervisor alone (no wrapper that signals the process group)
        if supervisor.returncode is None:  # its workers see it gone and drain by themselves
            kill_tree(supervisor.pid)
            await supervisor.wait()
    assert code == 0
    stopped = named(log, "controller.stopped")
    assert sorted(e["worker"] for e in stopped) == [0, 1]  # the restarted 0 and 1 both drained
    exited = named(log, "supervisor.worker_exited")
    assert sorted((e["worker"], e["exit_code"]) for e in exited) == [(0, 0), (1, 0)]
    assert named(log, "supervisor.stopped")[-1]["exit_code"] == 0
    assert sorted(p.name for p in (tmp_path / "journal").iterdir()) == ["worker-0", "worker-1"]


async def test_workers_drain_by_themselves_when_the_supervisor_is_killed(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """SIGKILL leaves no one to pass signals on: each worker sees its parent gone and drains."""
    plan = tmp_path / "plan.yaml"
    plan.write_text(EXAMPLE.read_text())
    log = tmp_path / "serve.log"
    port = free_port()
    argv = [sys.executable, "-m", "callrouter.cli", "serve", "--workers", "2", "--plan", str(plan),
            "--agi-port", str(port), "--no-redis"]  # fmt: skip
    with log.open("w") as out:
        supervisor = await asyncio.create_subprocess_exec(*argv, stdout=out, stderr=asyncio.subprocess.STDOUT)
    workers: list[int] = []
    try:
        await wait_for(log, "controller.started", 2)
        workers = [int(str(e["pid"])) for e in named(log, "supervisor.worker_started")]
        assert len(workers) == 2
    finally:
        supervisor.kill()  # the supervisor alone: its workers are left to notice
        await supervisor.wait()
    try:
        orphaned = await wait_for(log, "worker.orphaned", 2, timeout=10)
        assert sorted(e["worker"] for e in orphaned) == [0, 1]
        stopped = await wait_for(log, "controller.stopped", 2, timeout=10)
        assert sorted(e["worker"] for e in stopped) == [0, 1]
        assert await asyncio.to_thread(wait_ended, workers, 10) == []  # and they end
    finally:
        for pid in workers:
            if alive(pid):
                kill_tree(pid)
