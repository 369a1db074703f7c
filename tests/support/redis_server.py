"""A real redis-server on a free loopback port, for the test session.

The session's server keeps nothing on disk and is stopped when the session ends (or after
its own time limit if the session dies). :func:`start_redis` starts one with the project's
own ``redis.conf`` (the append-only file on), for tests of what survives a restart."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.processes import stop_tree

PROJECT_CONF = Path(__file__).parents[2] / "redis.conf"


@dataclass(frozen=True)
class RedisServer:
    host: str
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def stop(self) -> None:
        """SIGTERM (``timeout`` passes it on); after 5 s, SIGKILL to ``timeout`` and the server."""
        stop_tree(self.process, timeout_s=5)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(host: str, port: int, deadline_s: float) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            with socket.create_connection((host, port), timeout=0.2) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith((b"+PONG", b"-NOAUTH")):  # up (asking for a password)
                    return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"redis-server did not answer on {host}:{port} within {deadline_s}s")


def start_redis(
    port: int, workdir: Path, *options: str, max_lifetime_s: int = 600, conf: Path | None = None
) -> RedisServer:
    """``redis-server [conf]`` on 127.0.0.1:``port`` keeping its data in ``workdir``, answering.

    Under ``timeout``, so it stops by itself after ``max_lifetime_s`` whatever happens."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed: run scripts/bootstrap")
    argv = [
        "timeout", str(max_lifetime_s), binary, *([str(conf)] if conf else []),
        "--bind", "127.0.0.1", "--port", str(port), "--dir", str(workdir),
        "--daemonize", "no", "--loglevel", "warning", *options,
    ]  # fmt: skip
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = RedisServer("127.0.0.1", port, process)
    try:
        _wait_ready(server.host, port, deadline_s=10)
    except RuntimeError:
        server.stop()
        raise
    return server


@contextmanager
def running_redis(max_lifetime_s: int = 3600) -> Iterator[RedisServer]:
    """Start ``redis-server`` bound to 127.0.0.1 on a free port, nothing on disk; stop it on exit.

    ``max_lifetime_s`` bounds the server's life even if this process is killed:
    it runs under ``timeout``."""
    workdir = Path(tempfile.mkdtemp(prefix="callrouter-redis-"))
    server = start_redis(
        free_port(), workdir, "--save", "", "--appendonly", "no", max_lifetime_s=max_lifetime_s
    )
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
