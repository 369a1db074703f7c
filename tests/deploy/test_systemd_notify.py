"""sd_notify: a real ``serve`` process tells a notify socket READY=1, then pings the watchdog from
its event loop; a stopped (frozen) process stops pinging; SIGTERM says STOPPING=1.

The notify socket is a real AF_UNIX datagram socket, as systemd's is."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from callrouter.systemd import Notifier, notify_address, watchdog_interval
from tests.controller.conftest import EXAMPLE
from tests.support.processes import kill_tree
from tests.support.redis_server import RedisServer, free_port

WATCHDOG_USEC = 200_000  # pings every 0.1 s


class NotifySocket:
    """systemd's end: a datagram socket bound at ``address`` that keeps what arrives, with times."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.received: list[tuple[float, str]] = []

    def collect(self, seconds: float) -> list[tuple[float, str]]:
        """Everything that arrives within ``seconds`` (also kept in ``received``)."""
        got: list[tuple[float, str]] = []
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                break
            got.append((time.monotonic(), data.decode()))
        self.received.extend(got)
        return got

    def wait_for(self, line: str, timeout: float) -> float:
        """When a datagram holding ``line`` arrived (waiting up to ``timeout`` seconds)."""
        for at, text in self.received:
            if line in text.splitlines():
                return at
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for at, text in self.collect(min(0.2, end - time.monotonic())):
                if line in text.splitlines():
                    return at
        raise AssertionError(f"no {line} within {timeout} s; got {[t for _, t in self.received]}")


@pytest.fixture
def abstract_socket() -> Iterator[tuple[str, NotifySocket]]:
    name = f"@callrouter-test-{uuid.uuid4().hex}"
    notify = NotifySocket("\0" + name[1:])
    try:
        yield name, notify
    finally:
        notify.sock.close()


def pings(datagrams: list[tuple[float, str]]) -> list[float]:
    return [at for at, text in datagrams if "WATCHDOG=1" in text.splitlines()]


async def test_serve_says_ready_pings_the_watchdog_and_stops_pinging_when_frozen(
    tmp_path: Path, abstract_socket: tuple[str, NotifySocket]
) -> None:
    name, notify = abstract_socket
    argv = [sys.executable, "-m", "callrouter.cli", "serve", "--plan", str(EXAMPLE),
            "--agi-port", str(free_port()), "--no-redis"]  # fmt: skip
    env = {**os.environ, "NOTIFY_SOCKET": name, "WATCHDOG_USEC": str(WATCHDOG_USEC)}
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        process = await asyncio.create_subprocess_exec(*argv, stdout=out, stderr=out, env=env)
    try:
        ready_at = await asyncio.to_thread(notify.wait_for, "READY=1", 20)
        first = await asyncio.to_thread(notify.wait_for, "WATCHDOG=1", 2)
        assert first >= ready_at  # the pings start once the controller takes calls

        running = pings(await asyncio.to_thread(notify.collect, 1.0))
        assert len(running) >= 5, f"{len(running)} pings in 1 s at a 0.1 s interval"
        # every 0.1 s; a loaded machine may delay a turn of the loop, never by half a second
        assert max(b - a for a, b in itertools.pairwise(running)) < 0.5

        process.send_signal(signal.SIGSTOP)  # a frozen loop: what systemd's watchdog is for
        await asyncio.sleep(0.1)  # a ping already on its way may still land
        await asyncio.to_thread(notify.collect, 0.05)
        frozen = pings(await asyncio.to_thread(notify.collect, 0.8))
        assert frozen == [], "a stopped process cannot ping"

        process.send_signal(signal.SIGCONT)
        resumed = pings(await asyncio.to_thread(notify.collect, 0.5))
        assert resumed, "pings resume once the loop turns again"

        process.send_signal(signal.SIGTERM)
        await asyncio.to_thread(notify.wait_for, "STOPPING=1", 10)
        assert await asyncio.wait_for(process.wait(), 40) == 0
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGCONT)
            kill_tree(process.pid)
            await process.wait()
    assert "READY=1" not in log.read_text()  # nothing of the protocol leaks into the logs


async def test_a_path_socket_gets_ready_and_status() -> None:
    folder = tempfile.mkdtemp(prefix="cr-")  # short: AF_UNIX paths are limited to 107 bytes
    path = str(Path(folder) / "notify")
    notify = NotifySocket(path)
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": path})
    try:
        assert notifier.enabled
        assert notifier.watchdog_s is None
        notifier.ready("routing calls")
        notifier.stopping()
        got = [text for _, text in notify.collect(0.3)]
        assert got == ["READY=1\nSTATUS=routing calls", "STOPPING=1"]
    finally:
        await notifier.close()
        notify.sock.close()
        os.unlink(path)
        os.rmdir(folder)


async def test_a_gone_socket_is_not_an_error(tmp_path: Path) -> None:
    notifier = Notifier(str(tmp_path / "absent"), watchdog_s=0.01)
    try:
        assert notifier.send("READY=1") is False
        notifier.ready()
        await asyncio.sleep(0.05)  # the pinger keeps going without raising
        assert notifier._pinger is not None
        assert not notifier._pinger.done()
    finally:
        await notifier.close()


async def test_outside_systemd_nothing_is_sent() -> None:
    notifier = Notifier.from_environ({})
    assert not notifier.enabled
    assert notifier.send("READY=1") is False
    notifier.ready()  # no socket, no pinger
    assert notifier._pinger is None
    await notifier.close()


@pytest.mark.parametrize(
    ("value", "address"),
    [
        ("/run/systemd/notify", "/run/systemd/notify"),
        ("@abstract/name", "\0abstract/name"),
        ("@", None),
        ("", None),
        ("vsock:2:1234", None),
        ("relative/path", None),
    ],
)
def test_notify_address(value: str, address: str | None) -> None:
    assert notify_address({"NOTIFY_SOCKET": value}) == address


@pytest.mark.parametrize(
    ("environ", "interval"),
    [
        ({"WATCHDOG_USEC": "10000000"}, 5.0),
        ({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": "42"}, 5.0),
        ({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": "43"}, None),  # another process's watchdog
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval_is_half_the_timeout(environ: dict[str, str], interval: float | None) -> None:
    assert watchdog_interval(environ, pid=42) == interval


@pytest.mark.parametrize("command", ["web", "records deliver"])
async def test_web_and_the_delivery_worker_say_ready_ping_and_say_stopping(
    command: str, tmp_path: Path, redis_server: RedisServer, abstract_socket: tuple[str, NotifySocket]
) -> None:
    name, notify = abstract_socket
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLROUTER_")}
    env |= {"NOTIFY_SOCKET": name, "WATCHDOG_USEC": str(WATCHDOG_USEC), "CALLROUTER_REDIS": redis_server.url,
            "CALLROUTER_PLAN": str(EXAMPLE), "CALLROUTER_WEB_PORT": str(free_port()),
            "CALLROUTER_RECORDS_ARCHIVE_DIR": str(tmp_path / "archive"),
            "HDC_CRM_SECRET": "test-only", "CBC_CRM_SECRET": "test-only"}  # fmt: skip
    argv = [sys.executable, "-m", "callrouter.cli", *command.split()]
    with (tmp_path / "out.log").open("w") as out:
        process = await asyncio.create_subprocess_exec(*argv, stdout=out, stderr=out, env=env)
    try:
        ready_at = await asyncio.to_thread(notify.wait_for, "READY=1", 20)
        running = pings(await asyncio.to_thread(notify.collect, 0.6))
        assert len(running) >= 3
        assert running[0] >= ready_at
        process.send_signal(signal.SIGTERM)
        await asyncio.to_thread(notify.wait_for, "STOPPING=1", 10)
        assert await asyncio.wait_for(process.wait(), 30) == 0, (tmp_path / "out.log").read_text()
    finally:
        if process.returncode is None:
            kill_tree(process.pid)
            await process.wait()


async def test_the_pings_come_from_the_event_loop_so_a_blocked_loop_stops_them(
    abstract_socket: tuple[str, NotifySocket],
) -> None:
    """Not a thread: a loop held by blocking code (the freeze the watchdog is for) sends nothing,
    even though the process runs."""
    name, notify = abstract_socket
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": name, "WATCHDOG_USEC": "100000"})
    try:
        notifier.ready()
        await asyncio.sleep(0.3)
        assert len(pings(notify.collect(0.01))) >= 3
        time.sleep(0.5)  # noqa: ASYNC251 - the point: a loop blocked, the process alive
        assert pings(notify.collect(0.01)) == []
        await asyncio.sleep(0.2)
        assert pings(notify.collect(0.01)), "pings resume when the loop turns"
    finally:
        await notifier.close()


async def test_ready_and_stopping_wait_for_room_in_a_queue_full_of_pings(
    abstract_socket: tuple[str, NotifySocket],
) -> None:
    """A reader that fell behind (its queue full of pings) still gets STOPPING: a ping is dropped,
    a state change waits briefly for room."""
    name, notify = abstract_socket
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": name})
    try:
        while notifier.send("WATCHDOG=1"):  # fill the reader's queue
            pass
        loop = asyncio.get_running_loop()
        reader = loop.run_in_executor(None, lambda: (time.sleep(0.05), notify.collect(0.5))[1])
        assert notifier.send("STOPPING=1") is True
        got = await reader
        assert any("STOPPING=1" in text.splitlines() for _, text in got)
    finally:
        await notifier.close()
