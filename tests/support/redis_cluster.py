"""A real three-primary Redis Cluster on free loopback ports, for tests.

Three ``redis-server --cluster-enabled yes`` processes (and ``replicas`` more per primary, if
asked), each under ``timeout`` (it stops by itself after ``max_lifetime_s`` whatever happens) with
its files in a folder of its own, joined by ``redis-cli --cluster create ... --cluster-replicas
N``; ready once every node reports ``cluster_state:ok``. A node judges another failed after
``cluster-node-timeout`` (2 s here), so a killed primary's replica takes over within a few
seconds. Everything is stopped and removed on exit."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import redis

from tests.support.redis_server import RedisServer, free_port, start_redis

PRIMARIES = 3
READY_WITHIN_S = 20.0
BUS_OFFSET = 10000  # Redis Cluster's bus listens on the port + 10000
NODE_OPTIONS = ("--cluster-node-timeout", "2000", "--save", "", "--appendonly", "no")


@dataclass
class RedisClusterSet:
    nodes: tuple[RedisServer, ...]
    killed: list[RedisServer] = field(default_factory=list)

    @property
    def url(self) -> str:
        """A seed node's URL: the ``redis.url`` setting of a ``callrouter`` command on this cluster
        (with ``redis.cluster`` on, the client discovers the other nodes from it)."""
        return self.nodes[0].url

    def env(self) -> dict[str, str]:
        """The environment that points a ``callrouter`` command at this cluster."""
        return {"CALLROUTER_REDIS": self.url, "CALLROUTER_REDIS_CLUSTER": "true"}

    def node_for_slot(self, slot: int) -> RedisServer:
        """The primary that serves ``slot`` (asked of the cluster itself)."""
        alive = next(n for n in self.nodes if n not in self.killed)
        for low, high, port in _slot_ranges(alive):
            if low <= slot <= high:
                return next(n for n in self.nodes if n.port == port)
        raise LookupError(f"no node serves slot {slot}")

    def replica_of(self, primary: RedisServer) -> RedisServer:
        """A replica of ``primary`` (asked of the primary itself)."""
        client = redis.Redis(primary.host, primary.port, socket_timeout=1)
        try:
            port = int(client.info("replication")["slave0"]["port"])
        finally:
            client.close()
        return next(n for n in self.nodes if n.port == port)

    def kill(self, node: RedisServer) -> RedisServer:
        """SIGKILL ``node``'s redis-server (not ``timeout``, which would only forward it)."""
        client = redis.Redis(node.host, node.port, socket_timeout=1)
        try:
            pid = int(client.info("server")["process_id"])
        finally:
            client.close()
        os.kill(pid, signal.SIGKILL)
        node.process.wait(timeout=5)
        self.killed.append(node)
        return node

    def kill_primary_of(self, slot: int) -> RedisServer:
        """SIGKILL the primary serving ``slot``; that node."""
        return self.kill(self.node_for_slot(slot))

    def wait_failover(self, slot: int, deadline_s: float = 20.0) -> RedisServer:
        """Wait until a live node serves ``slot`` as primary and the cluster is ok again; that node."""
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            try:
                node = self.node_for_slot(slot)
                if node not in self.killed and "cluster_state:ok" in _cli(node, "cluster", "info"):
                    return node
            except (LookupError, redis.RedisError, subprocess.SubprocessError):
                pass
            time.sleep(0.05)
        raise RuntimeError(f"no failover of slot {slot} within {deadline_s}s")


def _free_node_port() -> int:
    """A free port whose cluster bus port (the port + 10000) is free too."""
    for _ in range(200):
        port = free_port()
        if port + BUS_OFFSET > 65535:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port + BUS_OFFSET))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


def _cli(node: RedisServer, *args: str, timeout_s: float = 10.0) -> str:
    done = subprocess.run(
        ["redis-cli", "-h", node.host, "-p", str(node.port), *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=True,
    )
    return done.stdout


def _slot_ranges(node: RedisServer) -> list[tuple[int, int, int]]:
    """(first slot, last slot, primary port) of every range of slots (``CLUSTER SLOTS``)."""
    client = redis.Redis(host=node.host, port=node.port, socket_timeout=5)
    try:
        rows = client.execute_command("CLUSTER SLOTS")
    finally:
        client.close()
    return [(int(row[0]), int(row[1]), int(row[2][1])) for row in rows]


def _wait_ok(nodes: tuple[RedisServer, ...], deadline_s: float) -> None:
    """Every node says ``cluster_state:ok`` and every replica is in step with its primary."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        infos = [_cli(n, "info", "replication") for n in nodes]
        replicas_up = all("master_link_status:up" in i for i in infos if "role:slave" in i)
        if replicas_up and all("cluster_state:ok" in _cli(n, "cluster", "info") for n in nodes):
            return
        time.sleep(0.1)
    raise RuntimeError(f"the cluster did not reach cluster_state:ok within {deadline_s}s")


@contextmanager
def running_cluster(max_lifetime_s: int = 900, replicas: int = 0) -> Iterator[RedisClusterSet]:
    """Start three cluster-enabled ``redis-server`` processes (and ``replicas`` per primary) on
    127.0.0.1, nothing saved, join them as one cluster of three primaries; stop them all on exit."""
    if shutil.which("redis-cli") is None:
        raise RuntimeError("redis-cli is not installed: run scripts/bootstrap")
    root = Path(tempfile.mkdtemp(prefix="callrouter-cluster-"))
    nodes: list[RedisServer] = []
    try:
        for index in range(PRIMARIES * (1 + replicas)):
            workdir = root / f"node{index}"
            workdir.mkdir()
            options = ("--cluster-enabled", "yes", "--cluster-config-file", str(workdir / "nodes.conf"))
            port = _free_node_port()
            node = start_redis(port, workdir, *options, *NODE_OPTIONS, max_lifetime_s=max_lifetime_s)
            nodes.append(node)
        addresses = [f"{n.host}:{n.port}" for n in nodes]
        create = ("--cluster", "create", *addresses, "--cluster-replicas", str(replicas), "--cluster-yes")
        _cli(nodes[0], *create, timeout_s=30)
        cluster = RedisClusterSet(tuple(nodes))
        _wait_ok(cluster.nodes, READY_WITHIN_S)
        yield cluster
    finally:
        for node in nodes:
            node.stop()
        shutil.rmtree(root, ignore_errors=True)
