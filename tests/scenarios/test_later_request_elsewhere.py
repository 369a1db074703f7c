"""A call's later FastAGI request served by another controller than its first one.

Two real ``callrouter serve`` processes behind a FastAGI balancer (a TCP proxy in this test):
every call's ``route`` request goes to the first controller, its ``menu`` request to the
second, as a load balancer in front of several controllers may do. Whichever claims the call
emits its record; the other forwards what it learnt, so every record at the CRM has the
routing decision (learnt by the first) and the menu and key pressed (learnt by the second).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import signal
from pathlib import Path

from emulator.agi import CallerScript, PressAfterPrompt
from emulator.ami import FakeAmi
from emulator.centre import CallCentre, QueuePlay
from emulator.crm import FakeCrm
from emulator.dialplan import Asterisk, place_call
from emulator.pbx import Channel
from tests.ami.helpers import wait_until
from tests.controller.conftest import HARBOROUGH
from tests.records.conftest import SECRET, plan_with_sinks, worker_process
from tests.scenarios.test_two_serve_processes import AMI_SECRET, _events, _serve, _started, own_redis
from tests.support.processes import kill_tree, stop_tree
from tests.support.redis_server import RedisServer
from tests.support.serve_process import until_ami_writer

__all__ = ["own_redis"]


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(ConnectionError, OSError):
        writer.close()


class Balancer:
    """FastAGI requests by their script: ``route`` to one port, everything else to another."""

    def __init__(self, route_port: int, other_port: int) -> None:
        self.route_port, self.other_port = route_port, other_port
        self.sent: list[tuple[str, int]] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._one, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        block = b""
        while not block.endswith(b"\n\n"):
            line = await reader.readline()
            if not line:
                writer.close()
                return
            block += line
        script = next(
            (
                ln.split(b": ", 1)[1].decode()
                for ln in block.splitlines()
                if ln.startswith(b"agi_network_script:")
            ),
            "",
        )
        port = self.route_port if script.startswith("route") else self.other_port
        self.sent.append((script, port))
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
        up_writer.write(block)
        await up_writer.drain()
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


async def test_a_later_request_at_another_controller_reaches_the_record(
    own_redis: RedisServer, tmp_path: Path
) -> None:
    crm = FakeCrm(SECRET)
    await crm.start()
    plan = plan_with_sinks(tmp_path, crm.url)
    worker = worker_process(plan, own_redis.url, tmp_path / "deliver.log", tmp_path / "archive")
    processes: list[asyncio.subprocess.Process] = []
    balancer: Balancer | None = None
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
            balancer = Balancer(ports[0], ports[1])
            front = await balancer.start()

            def play(queue: str, caller: Channel) -> QueuePlay:
                return QueuePlay("answer")

            calls = []
            for n in range(4):
                uniqueid = f"1795990000.{500 + n}"
                script = CallerScript(dial=HARBOROUGH, caller=f"0770090050{n}", steps=[PressAfterPrompt("2")],
                                      uniqueid=uniqueid)  # fmt: skip
                await place_call("127.0.0.1", front, script, asterisk=Asterisk(centre=CallCentre(fake, play)),
                                 deadline=30)  # fmt: skip
                calls.append(uniqueid)
            expected = {f"{c}:1" for c in calls}
            await wait_until(lambda: {k for k, _, _ in crm.accepted} >= expected, timeout_s=30)
            await asyncio.sleep(1.5)  # nothing more comes
            for process in processes:
                process.send_signal(signal.SIGTERM)
            async with asyncio.timeout(20):
                for process in processes:
                    await process.wait()
    finally:
        if balancer is not None:
            await balancer.stop()
        for process in processes:
            if process.returncode is None:
                kill_tree(process.pid)
                await process.wait()
        await asyncio.to_thread(stop_tree, worker, 10)
        await crm.stop()
    assert {port for script, port in balancer.sent if script.startswith("menu")} == {ports[1]}
    assert {port for script, port in balancer.sent if script.startswith("route")} == {ports[0]}
    assert sorted(k for k, _, _ in crm.accepted) == sorted(expected)
    assert crm.duplicates == 0
    for call in calls:
        data = crm.events[f"{call}:1"]["data"]
        assert isinstance(data, dict)
        assert data["tenant"] == "harborough", call
        assert data["decisions"], call  # learnt by the first controller
        assert [(m["menu"], m["keys"]) for m in data["ivr"]["menus"]] == [("main", ["2"])], call  # the second
        assert data["queues"], call
    forwarded = sum(
        int(str(e.get("forwarded", 0)))
        for log in logs
        for e in _events(log)
        if e.get("event") == "records.flushed"
    )
    assert forwarded > 0
