"""``callrouter serve`` killed with SIGKILL right after calls ended, then started again.

Real processes: the controller (with its fact journal), ``callrouter records deliver``, one
real redis-server of this test's own, the fake AMI and the fake CRM (in this process). The
controller is killed within milliseconds of the last call's hang-up, before the records of the
calls that just ended can be appended (they are due half a second after the hang-up). Started
again on the same journal, it replays what it was fed: every call reaches the CRM exactly once,
with its IVR part, and the journal is emptied on a clean stop.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from emulator.agi import CallerScript, PressAfterPrompt
from emulator.ami import FakeAmi
from emulator.centre import CallCentre, QueuePlay
from emulator.crm import FakeCrm
from emulator.dialplan import Asterisk, place_call
from emulator.pbx import Channel
from records.journal import segments_in
from tests.ami.helpers import wait_until
from tests.controller.conftest import HARBOROUGH
from tests.records.conftest import SECRET, plan_with_sinks, worker_process
from tests.support.processes import kill_tree, stop_tree
from tests.support.redis_server import RedisServer, free_port, running_redis
from tests.support.serve_process import until_ami_writer

AMI_SECRET = "serve-killed-secret"


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    with running_redis(max_lifetime_s=300) as server:
        yield server


async def _serve(
    plan: Path, redis_url: str, ami_port: int, journal: Path, log: Path
) -> tuple[asyncio.subprocess.Process, int]:
    port = free_port()
    argv = [sys.executable, "-m", "callrouter.cli", "serve", "--plan", str(plan), "--agi-port", str(port),
            "--redis", redis_url, "--clock-start", "2026-11-24 10:00", "--ami-host", "127.0.0.1",
            "--ami-port", str(ami_port), "--ami-user", "callrouter",
            "--records-journal", str(journal)]  # fmt: skip
    env = {**os.environ, "CALLROUTER_AMI_SECRET": AMI_SECRET,
           "CALLROUTER_RECORDS_CALLER_HASH_KEY": "serve-killed caller hash key, 32"}  # fmt: skip
    with log.open("w") as out:
        process = await asyncio.create_subprocess_exec(
            "timeout", "120", *argv, stdout=out, stderr=asyncio.subprocess.STDOUT, env=env
        )
    return process, port


def _events(log: Path) -> list[dict[str, object]]:
    found = []
    for line in log.read_text().splitlines():
        try:
            found.append(json.loads(line))
        except ValueError:
            continue
    return found


def _has(log: Path, event: str) -> bool:
    return any(e.get("event") == event for e in _events(log))


def _child(pid: int) -> int:
    """The process ``timeout`` runs (the one to kill: ``timeout`` would only forward a signal)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    assert children, f"process {pid} has no child"
    return int(children[0])


async def test_serve_killed_right_after_calls_end_then_restarted_every_record_once(
    own_redis: RedisServer, tmp_path: Path
) -> None:
    crm = FakeCrm(SECRET)
    await crm.start()
    plan = plan_with_sinks(tmp_path, crm.url)
    journal = tmp_path / "journal"
    worker = worker_process(plan, own_redis.url, tmp_path / "deliver.log", tmp_path / "archive")
    plays: dict[str, QueuePlay] = {}

    def play(queue: str, caller: Channel) -> QueuePlay:
        return plays.get(caller.caller_num, QueuePlay())

    processes: list[asyncio.subprocess.Process] = []
    try:
        async with FakeAmi("callrouter", AMI_SECRET) as fake:
            first_log = tmp_path / "serve-1.log"
            process, port = await _serve(plan, own_redis.url, fake.port, journal, first_log)
            processes.append(process)
            await wait_until(functools.partial(_has, first_log, "controller.started"), timeout_s=20)
            await wait_until(lambda: fake.sessions >= 1, timeout_s=10)
            await until_ami_writer(own_redis.url)  # it holds the AMI writer lease
            centre = Asterisk(centre=CallCentre(fake, play))
            calls = []
            for n in range(6):
                caller = f"0770090040{n}"
                plays[caller] = QueuePlay(("answer", "abandon")[n % 2])
                uniqueid = f"1795990000.{400 + n}"
                steps = [PressAfterPrompt("2")]
                calls.append(CallerScript(dial=HARBOROUGH, caller=caller, steps=steps, uniqueid=uniqueid))
            # the first three end well before the kill, the last three together just before it
            for script in calls[:3]:
                await place_call("127.0.0.1", port, script, asterisk=centre, deadline=30)
            await asyncio.sleep(1.5)
            await asyncio.gather(
                *(place_call("127.0.0.1", port, s, asterisk=centre, deadline=30, number=i + 10)
                  for i, s in enumerate(calls[3:]))
            )  # fmt: skip
            # the AMI hang-ups reach the controller within milliseconds; its records are due
            # half a second after them: kill in between
            await asyncio.sleep(0.15)
            os.kill(_child(process.pid), signal.SIGKILL)
            async with asyncio.timeout(10):
                await process.wait()
            expected = {f"{s.uniqueid}:1" for s in calls}
            await asyncio.sleep(2.0)  # whatever the killed controller had appended reaches the CRM
            before = {k for k, _, _ in crm.accepted}
            assert before < expected, "the kill came too late: nothing was left to lose"
            assert segments_in(journal), "the killed controller left no journal"

            second_log = tmp_path / "serve-2.log"
            process, port = await _serve(plan, own_redis.url, fake.port, journal, second_log)
            processes.append(process)
            await wait_until(functools.partial(_has, second_log, "controller.started"), timeout_s=20)
            await wait_until(lambda: {k for k, _, _ in crm.accepted} >= expected, timeout_s=30)
            await asyncio.sleep(1.5)  # nothing more comes
            process.send_signal(signal.SIGTERM)
            async with asyncio.timeout(20):
                await process.wait()
    finally:
        for process in processes:
            if process.returncode is None:
                kill_tree(process.pid)
                await process.wait()
        await asyncio.to_thread(stop_tree, worker, 10)
        await crm.stop()
    assert sorted(k for k, _, _ in crm.accepted) == sorted(expected)
    assert crm.duplicates == 0
    for script in calls:
        data = crm.events[f"{script.uniqueid}:1"]["data"]
        assert isinstance(data, dict)
        assert [m["menu"] for m in data["ivr"]["menus"]] == ["main"], script.uniqueid
        assert data["queues"], script.uniqueid
        assert data["complete"] is True, (script.uniqueid, data["problems"])
    replayed = next(e for e in _events(second_log) if e.get("event") == "records.journal_replayed")
    assert replayed["calls"] >= len(expected - before)
    assert segments_in(journal) == []  # the clean stop handed everything over
