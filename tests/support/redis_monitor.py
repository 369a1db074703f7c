"""Every command a real redis-server runs, as Redis's own ``MONITOR`` reports it, for tests that
check which keys a program touches (the commands inside Lua scripts included: ``MONITOR`` lists
them as ``[0 lua]``)::

    with monitoring(server) as monitor:
        monitor.mark("toggle")
        ... run the command ...
        segments = monitor.segments()   # {"toggle": [its lines], ...}

``redis-cli monitor`` runs under ``timeout`` (it stops by itself), writing to a file; a mark is an
``ECHO`` sent on a connection of its own, so the lines between two marks are what ran between them
(a command of the program is logged before the ``ECHO`` that follows it returns)."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import redis

from tests.support.redis_server import RedisServer

MARK = "keytag-mark:"
TAGGED = re.compile(r"callrouter:\{([^}]*)\}")


def tags_in(line: str) -> set[str]:
    """The hash tags of the callrouter key names in one ``MONITOR`` line."""
    return set(TAGGED.findall(line))


@dataclass
class Monitor:
    server: RedisServer
    path: Path
    labels: list[str] = field(default_factory=list)

    def mark(self, label: str, timeout_s: float = 10.0) -> None:
        """Start the segment ``label``: once this returns, every later command belongs to it."""
        client = redis.Redis(self.server.host, self.server.port, socket_timeout=2)
        try:
            client.echo(MARK + label)
        finally:
            client.close()
        deadline = time.monotonic() + timeout_s
        while MARK + label not in self.path.read_text(errors="replace"):
            assert time.monotonic() < deadline, f"MONITOR did not show the mark {label!r}"
            time.sleep(0.02)
        self.labels.append(label)

    def segments(self) -> dict[str, list[str]]:
        """Each segment's lines (its mark's own line left out), after a closing mark."""
        self.mark("(end)")
        found: dict[str, list[str]] = {}
        current: list[str] | None = None
        for line in self.path.read_text(errors="replace").splitlines():
            if f'"{MARK}' in line:
                label = line.split(f'"{MARK}', 1)[1].rstrip('"')
                current = found.setdefault(label, [])
                continue
            if current is not None:
                current.append(line)
        return found


def _wait_for_monitor(server: RedisServer, timeout_s: float = 10.0) -> None:
    """Until redis-cli's connection is in MONITOR mode (a command before it would not be shown)."""
    client = redis.Redis(server.host, server.port, socket_timeout=2)
    try:
        deadline = time.monotonic() + timeout_s
        while not any(c.get("cmd") == "monitor" for c in client.client_list()):
            assert time.monotonic() < deadline, "redis-cli monitor did not start"
            time.sleep(0.02)
    finally:
        client.close()


@contextmanager
def monitoring(server: RedisServer, max_lifetime_s: int = 300) -> Iterator[Monitor]:
    """``MONITOR`` of ``server`` into a file of its own, for as long as the block runs."""
    binary = shutil.which("redis-cli")
    if binary is None:
        raise RuntimeError("redis-cli is not installed: run scripts/bootstrap")
    folder = Path(tempfile.mkdtemp(prefix="callrouter-monitor-"))
    path = folder / "monitor.log"
    with path.open("wb") as out:
        process = subprocess.Popen(
            ["timeout", str(max_lifetime_s), binary, "-h", server.host, "-p", str(server.port), "monitor"],
            stdout=out,
            stderr=subprocess.DEVNULL,
        )
    monitor = Monitor(server, path)
    try:
        _wait_for_monitor(server)
        monitor.mark("(start)")
        yield monitor
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        shutil.rmtree(folder, ignore_errors=True)
