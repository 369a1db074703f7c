"""Two ``callrouter serve`` processes behind one Asterisk, ``callrouter records deliver``, a CRM.

Real processes: two controllers (each with its AMI connection to the one fake AMI server, its
record pump and the records stream in one real redis-server of this test's own), the delivery
worker, and the fake CRM (in this process). Calls on the emulated Asterisk go to one
controller or the other; every call reaches the CRM exactly once, with its IVR part, appended
by the controller that served it.
"""

from __future__ import annotations

import asyncio
import functools
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from emulator.agi import CallerScript, PressAfterPrompt
from emulator.ami import FakeAmi
from emulator.centre import CallCentre, QueuePlay
from emulator.crm import FakeCrm
from emulator.dialplan import Asterisk, place_call
from emulator.pbx import Channel
from tests.ami.helpers import wait_until
from tests.controller.conftest import HARBOROUGH
from tests.records.conftest import SECRET, plan_with_sinks, worker_process
from tests.support.processes import kill_tree, stop_tree
from tests.support.redis_server import RedisServer, running_redis
from tests.support.serve_process import log_events, serve_started, start_serve, until_ami_writer

AMI_SECRET = "two-serve-secret"


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    with running_redis(max_lifetime_s=300) as server:
        yield server


async def _serve(
    plan: Path, redis_url: str, ami_port: int, log: Path
) -> tuple[asyncio.subprocess.Process, int]:
    return await start_serve(plan, redis_url, log, ami_port=ami_port, ami_secret=AMI_SECRET)


_started = serve_started
_events = log_events


async def test_two_serve_processes_one_record_per_call_at_the_crm(
    own_redis: RedisServer, tmp_path: Path
) -> None:
    crm = FakeCrm(SECRET)
    await crm.start()
    plan = plan_with_sinks(tmp_path, crm.url)
    worker = worker_process(plan, own_redis.url, tmp_path / "deliver.log", tmp_path / "archive")
    plays: dict[str, QueuePlay] = {}

    def play(queue: str, caller: Channel) -> QueuePlay:
        return plays.get(caller.caller_num, QueuePlay())

    processes: list[asyncio.subprocess.Process] = []
    try:
        async with FakeAmi("callrouter", AMI_SECRET) as fake:
            logs = [tmp_path / f"serve-{n}.log" for n in (1, 2)]
            ports = []
            for log in logs:
                process, port = await _serve(plan, own_redis.url, fake.port, log)
                processes.append(process)
                ports.append(port)
            for log in logs:
                await wait_until(functools.partial(_started, log), timeout_s=20)
            await wait_until(lambda: fake.sessions >= 2, timeout_s=10)
            await until_ami_writer(own_redis.url)  # one of them holds the AMI writer lease
            served: dict[str, int] = {}
            for n in range(6):
                caller = f"0770090030{n}"
                plays[caller] = QueuePlay(("answer", "abandon")[n % 2])
                uniqueid = f"1795990000.{300 + n}"
                script = CallerScript(dial=HARBOROUGH, caller=caller, steps=[PressAfterPrompt("2")],
                                      uniqueid=uniqueid)  # fmt: skip
                await place_call("127.0.0.1", ports[n % 2], script,
                                 asterisk=Asterisk(centre=CallCentre(fake, play)), deadline=30)  # fmt: skip
                served[uniqueid] = processes[n % 2].pid
            expected = {f"{c}:1" for c in served}
            await wait_until(lambda: {k for k, _, _ in crm.accepted} >= expected, timeout_s=30)
            await asyncio.sleep(1.5)  # nothing more comes
            for process in processes:
                process.send_signal(signal.SIGTERM)
            async with asyncio.timeout(20):
                for process in processes:
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
    for call in served:
        data = crm.events[f"{call}:1"]["data"]
        assert isinstance(data, dict)
        assert [m["menu"] for m in data["ivr"]["menus"]] == ["main"], call
        assert data["queues"], call
    appended = {}
    for process, log in zip(processes, logs, strict=True):
        flushed = next(e for e in _events(log) if e.get("event") == "records.flushed")
        appended[process.pid] = flushed["appended"]
    assert appended == dict.fromkeys(appended, 3), appended  # each its own three calls
