"""A real Redis Sentinel set on free loopback ports: a primary, one replica (or more) and three
sentinels.

Each server runs under ``timeout`` (it stops by itself after ``max_lifetime_s`` whatever happens),
keeps its files in a folder of its own, and is stopped on exit. The data servers run with the
settings ``docs/redis.md`` asks for (``appendonly yes``, ``appendfsync everysec``); the sentinels
judge a silent primary down after ``DOWN_AFTER_MS`` and give a failover ``FAILOVER_TIMEOUT_MS``,
so a failover completes in a few seconds."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import redis
from redis.sentinel import Sentinel

from tests.support.redis_server import RedisServer, _wait_ready, free_port, start_redis

SERVICE = "callrouter"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 3000
QUORUM = 2
DATA = ("--appendonly", "yes", "--appendfsync", "everysec", "--save", "")  # as docs/redis.md asks


@dataclass
class SentinelSet:
    primary: RedisServer
    replicas: list[RedisServer]
    sentinels: list[RedisServer]
    service: str = SERVICE
    killed: list[RedisServer] = field(default_factory=list)
    password: str | None = field(default=None, repr=False)  # the data servers' (requirepass)
    sentinel_password: str | None = field(default=None, repr=False)  # the sentinels' own

    @property
    def replica(self) -> RedisServer:
        return self.replicas[0]

    @property
    def addresses(self) -> tuple[str, ...]:
        """The sentinels as ``HOST:PORT`` (the ``redis.sentinels`` setting)."""
        return tuple(f"{s.host}:{s.port}" for s in self.sentinels)

    def env(self) -> dict[str, str]:
        """The environment that points a ``callrouter`` command at this set."""
        return {
            "CALLROUTER_REDIS_SENTINELS": ",".join(self.addresses),
            "CALLROUTER_REDIS_SERVICE_NAME": self.service,
        }

    def primary_address(self) -> tuple[str, int]:
        """The primary as a client asking the sentinels finds it (redis-py's own discovery: the
        first sentinel that names a primary it does not judge down)."""
        sentinel = Sentinel(
            [(x.host, x.port) for x in self.sentinels],
            sentinel_kwargs={"password": self.sentinel_password, "socket_timeout": 1},
            socket_timeout=1,
            socket_connect_timeout=1,
        )
        try:
            host, port = sentinel.discover_master(self.service)
            return str(host), int(port)
        except redis.RedisError as exc:
            raise RuntimeError(f"no primary named: {exc}") from None
        finally:
            for client in sentinel.sentinels:
                client.close()

    def kill_primary(self) -> None:
        """SIGKILL the primary's redis-server (not ``timeout``, which would only forward it)."""
        client = redis.Redis(self.primary.host, self.primary.port, socket_timeout=1, password=self.password)
        try:
            pid = int(client.info("server")["process_id"])
        finally:
            client.close()
        os.kill(pid, signal.SIGKILL)
        self.primary.process.wait(timeout=5)
        self.killed.append(self.primary)

    def pause_replicas(self) -> list[int]:
        """SIGSTOP every replica's redis-server: they take and confirm nothing (a ``WAIT`` times
        out) until :meth:`resume`; returns their pids."""
        pids = [_server_pid(r, self.password) for r in self.replicas]
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        return pids

    def cut_replicas(self) -> int:
        """Close the primary's links to its replicas (``CLIENT KILL TYPE replica``): with the
        replicas paused, nothing written after this reaches them (what was sent before may still
        wait in their sockets) until they are resumed and sync again; returns the links closed."""
        client = redis.Redis(self.primary.host, self.primary.port, socket_timeout=1, password=self.password)
        try:
            return int(client.client_kill_filter(_type="replica"))
        finally:
            client.close()

    @staticmethod
    def resume(pids: list[int]) -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    def wait_failover(self, deadline_s: float = 20.0) -> tuple[str, int]:
        """Wait until the sentinels name another primary and it answers as a primary; its address."""
        old = (self.primary.host, self.primary.port)
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            try:
                found = self.primary_address()
            except RuntimeError:
                found = old
            if found != old and _role(*found, self.password) == "master":
                return found
            time.sleep(0.05)
        raise RuntimeError(f"no failover within {deadline_s}s")

    def stop(self) -> None:
        for server in [*self.sentinels, *self.replicas, self.primary, *self.killed]:
            server.stop()


def _server_pid(server: RedisServer, password: str | None) -> int:
    client = redis.Redis(server.host, server.port, socket_timeout=1, password=password)
    try:
        return int(client.info("server")["process_id"])
    finally:
        client.close()


def _role(host: str, port: int, password: str | None) -> str:
    client = redis.Redis(host, port, socket_timeout=1, socket_connect_timeout=1, password=password)
    try:
        return str(client.info("replication")["role"])
    except redis.RedisError:
        return ""
    finally:
        client.close()


def _start_sentinel(
    port: int,
    workdir: Path,
    primary: RedisServer,
    max_lifetime_s: int,
    passwords: tuple[str | None, str | None],
) -> RedisServer:
    data_password, own_password = passwords
    conf = workdir / "sentinel.conf"  # the sentinel rewrites it with what it learns: its own copy
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {workdir}\n"
        f"sentinel monitor {SERVICE} {primary.host} {primary.port} {QUORUM}\n"
        f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
        f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}\n"
        f"sentinel parallel-syncs {SERVICE} 1\n"
        + (f"sentinel auth-pass {SERVICE} {data_password}\n" if data_password else "")
        + (f"requirepass {own_password}\n" if own_password else "")
    )
    conf.chmod(0o600)
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed: run scripts/bootstrap")
    argv = ["timeout", str(max_lifetime_s), binary, str(conf), "--sentinel", "--daemonize", "no",
            "--loglevel", "warning"]  # fmt: skip
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = RedisServer("127.0.0.1", port, process)
    try:
        _wait_ready(server.host, port, deadline_s=10)
    except RuntimeError:
        server.stop()
        raise
    return server


def _wait_settled(found: SentinelSet, deadline_s: float) -> None:
    """Until the replica is in sync and every sentinel knows the replica and the other two."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if _in_sync(found) and all(_knows_all(found, s) for s in found.sentinels):
            return
        time.sleep(0.1)
    raise RuntimeError(f"the sentinel set did not settle within {deadline_s}s")


def _in_sync(found: SentinelSet) -> bool:
    for replica in found.replicas:
        client = redis.Redis(replica.host, replica.port, socket_timeout=1, password=found.password)
        try:
            if client.info("replication").get("master_link_status") != "up":
                return False
        finally:
            client.close()
    return True


def _knows_all(found: SentinelSet, sentinel: RedisServer) -> bool:
    client = redis.Redis(sentinel.host, sentinel.port, socket_timeout=1, password=found.sentinel_password)
    try:
        replicas = client.execute_command("SENTINEL", "replicas", found.service)
        others = client.execute_command("SENTINEL", "sentinels", found.service)
        return len(replicas) == len(found.replicas) and len(others) == len(found.sentinels) - 1
    finally:
        client.close()


@contextmanager
def running_sentinel_set(
    max_lifetime_s: int = 300,
    replicas: int = 1,
    *,
    password: str | None = None,
    sentinel_password: str | None = None,
) -> Iterator[SentinelSet]:
    """A primary, ``replicas`` replicas of it and three sentinels watching it, settled; all
    stopped on exit. ``password``: the data servers ask for it (and the replicas and sentinels
    give it); ``sentinel_password``: the sentinels ask for their own."""
    root = Path(tempfile.mkdtemp(prefix="callrouter-sentinel-"))
    started: list[RedisServer] = []
    found: SentinelSet | None = None
    data = DATA + (("--requirepass", password, "--masterauth", password) if password else ())
    try:
        (root / "primary").mkdir()
        primary = start_redis(free_port(), root / "primary", *data, max_lifetime_s=max_lifetime_s)
        started.append(primary)
        copies = []
        for n in range(replicas):
            (root / f"replica-{n}").mkdir()
            copies.append(start_redis(
                free_port(), root / f"replica-{n}", *data, "--replicaof", primary.host, str(primary.port),
                max_lifetime_s=max_lifetime_s,
            ))  # fmt: skip
            started.append(copies[-1])
        sentinels = []
        for n in range(3):
            folder = root / f"sentinel-{n}"
            folder.mkdir()
            sentinels.append(
                _start_sentinel(free_port(), folder, primary, max_lifetime_s, (password, sentinel_password))
            )
            started.append(sentinels[-1])
        found = SentinelSet(
            primary, copies, sentinels, password=password, sentinel_password=sentinel_password
        )
        _wait_settled(found, deadline_s=30)
        yield found
    finally:
        for server in reversed(started):
            server.stop()
        if found is not None:
            found.stop()
        shutil.rmtree(root, ignore_errors=True)
