"""Waiting for replicas: a write counts as done only once ``replicas`` replicas hold it.

With Redis Sentinel, the primary answers a write before its replicas have it; if the primary dies
in that instant, the replica promoted in its place never had it, and a toggle or contact record
that was acknowledged is lost. ``WAIT numreplicas timeout`` closes that gap: it answers once that
many replicas have acknowledged every write sent before it *on the same connection*, so the write
and its WAIT go in one pipeline (one connection, one round trip more on the replicas' side).

``replicas = 0`` (the default, one Redis server) sends no WAIT at all.

On Redis Cluster the WAIT goes to the node that holds the written keys (``target_nodes``): redis-py's
cluster pipeline sends each node's commands in order on one connection of that node, so the WAIT
follows the writes as on one server. If the slot moved to another node during the call (a
resharding, a failover), the WAIT may have counted another connection's writes: the write is then
reported unconfirmed (:class:`NotReplicated`), and the caller retries it (idempotent).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisError


class NotReplicated(RedisError):
    """The primary took the write but fewer replicas than asked confirmed it in time: it may be
    lost if the primary fails now. A :class:`RedisError`, so callers that retry on Redis errors
    retry (the writes waited on here are idempotent)."""


@dataclass(frozen=True, slots=True)
class ReplicaWait:
    replicas: int = 0
    timeout_ms: int = 500

    @property
    def on(self) -> bool:
        return self.replicas > 0


NO_WAIT = ReplicaWait()  # one server: no WAIT


def check_acknowledged(wait: ReplicaWait, acknowledged: int) -> None:
    if acknowledged < wait.replicas:
        raise NotReplicated(
            f"written on the primary but confirmed by {acknowledged} of {wait.replicas} replicas "
            f"within {wait.timeout_ms} ms"
        )


def add_wait(pipe: Any, redis: Redis, wait: ReplicaWait, key: str) -> ClusterNode | None:
    """Queue ``WAIT`` on ``pipe`` after the writes of ``key``'s slot; on a cluster, to the node
    holding ``key`` (returned, for :func:`check_waited`). Call it inside ``async with pipe``
    (a cluster client has its slot map by then)."""
    if isinstance(redis, RedisCluster):
        node: ClusterNode = redis.get_node_from_key(key)
        pipe.execute_command("WAIT", wait.replicas, wait.timeout_ms, target_nodes=node)
        return node
    pipe.execute_command("WAIT", wait.replicas, wait.timeout_ms)
    return None


def check_waited(
    wait: ReplicaWait, acknowledged: int, redis: Redis, key: str, node: ClusterNode | None
) -> None:
    """:class:`NotReplicated` unless the WAIT queued by :func:`add_wait` confirmed the writes."""
    if (
        node is not None
        and isinstance(redis, RedisCluster)
        and redis.get_node_from_key(key).name != node.name
    ):
        raise NotReplicated(f"the slot of {key} moved to another node during the write: not confirmed")
    check_acknowledged(wait, acknowledged)


async def eval_and_wait(
    redis: Redis, wait: ReplicaWait, script: str, keys: Sequence[str], args: Sequence[Any]
) -> Any:
    """``EVAL script`` then, when ``wait`` is on, ``WAIT`` on the same connection; the script's
    answer, or :class:`NotReplicated`."""
    if not wait.on:
        return await redis.eval(script, len(keys), *keys, *args)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.eval(script, len(keys), *keys, *args)
        node = add_wait(pipe, redis, wait, keys[0])
        result, acknowledged = await pipe.execute()
    check_waited(wait, int(acknowledged), redis, keys[0], node)
    return result
