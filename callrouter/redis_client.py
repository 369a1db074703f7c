"""The one way every ``callrouter`` process connects to Redis: a plain URL, through Sentinel, or
to a Redis Cluster.

``serve``, ``web``, ``records deliver`` and the commands that talk to Redis directly all take their
client from :func:`connect`, so each of them follows a Sentinel failover the same way: a client made
through Sentinel asks the sentinels for the current primary whenever it opens a connection, and drops
a connection that finds itself on a replica (after a failover, the old primary comes back as one).
Timeouts stay bounded either way: ``connect_timeout`` and ``timeout`` apply to the data connections
and to each question put to a sentinel.

With ``cluster`` set, ``url`` names one node of a Redis Cluster (a seed): redis-py's
:class:`~redis.asyncio.cluster.RedisCluster` learns the others and their hash slots from it, sends
each command (EVAL/EVALSHA by its first declared key) to the primary of the slot, and follows
slot moves and failovers (MOVED/ASK answers, a fresh slot map). Every key of one centre carries
one hash tag (``routing/redis_keys.py``), so each script, transaction and multi-key command of
callrouter touches one slot, as a cluster requires.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import urlsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import ClusterPipeline, ClusterPubSub, RedisCluster
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import CrossSlotTransactionError, RedisClusterException

DEFAULT_SERVICE = "callrouter"
DEFAULT_CLUSTER_POOL = 100  # connections per cluster node, as redis-py's own default


def parse_sentinel(text: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` for IPv6) as a pair; :class:`ValueError` if it is not one."""
    host, sep, port = text.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text.strip()!r} is not HOST:PORT")
    return host, int(port)


@dataclass(frozen=True)
class RedisTarget:
    """Where Redis is. ``sentinels`` empty: ``url`` names the server. Else the sentinels name the
    primary of ``service_name``, and ``url`` gives only the database number (its path).
    ``cluster``: ``url`` names one node of a Redis Cluster (database 0, the only one a cluster has)."""

    url: str
    password: str | None = field(default=None, repr=False)
    sentinels: tuple[tuple[str, int], ...] = ()
    service_name: str = DEFAULT_SERVICE
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)
    cluster: bool = False

    def __post_init__(self) -> None:
        if self.cluster and self.sentinels:
            raise ValueError("Redis Cluster or Sentinel, not both: a cluster elects its own primaries")
        if self.cluster and self.db != 0:
            raise ValueError(f"a Redis Cluster has database 0 only, not {self.db}")

    @property
    def db(self) -> int:
        path = urlsplit(self.url).path.strip("/")
        return int(path) if path.isdigit() else 0

    def describe(self) -> str:
        """For logs: no password, ever."""
        if self.sentinels:
            where = ",".join(f"{h}:{p}" for h, p in self.sentinels)
            return f"sentinel://{where}/{self.service_name}/{self.db}"
        parts = urlsplit(self.url)
        port = f":{parts.port}" if parts.port else ""
        shown = f"{parts.scheme}://{parts.hostname or ''}{port}{parts.path}"
        return f"{shown} (cluster)" if self.cluster else shown


class SentinelRedis(Redis):
    """A client of the primary the sentinels name; closing it closes its sentinel connections too.

    It closes the sentinel clients it was made with (:attr:`sentinel_clients`), not only those
    in redis-py's list: that list is reordered by each master discovery across an ``await``, and
    two discoveries at once (many commands failing over together) can leave one sentinel in it
    twice and another not at all, whose connections would then stay open."""

    sentinel_clients: tuple[Redis, ...] = ()

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        pool = self.connection_pool
        listed = pool.sentinel_manager.sentinels if isinstance(pool, SentinelConnectionPool) else []
        for sentinel in {id(s): s for s in (*self.sentinel_clients, *listed)}.values():
            await sentinel.aclose()


def connect(
    target: RedisTarget, *, connect_timeout: float, timeout: float, pool_size: int | None = None
) -> Redis:
    """A client for ``target`` (no I/O yet: connections open on first use). ``pool_size``: at
    most that many connections to a plain URL, a command waiting up to ``timeout`` for a free one
    (the web service's many viewers); through Sentinel redis-py's own pool is used; on a cluster,
    at most ``pool_size`` (default 100) connections per node (past that, redis-py's cluster client
    refuses a command at once with ``MaxConnectionsError``, a :class:`RedisError`)."""
    if target.cluster:
        return _cluster(target, connect_timeout=connect_timeout, timeout=timeout, pool_size=pool_size)
    if not target.sentinels:
        options: dict[str, Any] = {"password": target.password, "socket_connect_timeout": connect_timeout,
                                   "socket_timeout": timeout}  # fmt: skip
        if pool_size is None:
            return Redis.from_url(target.url, **options)
        pool = BlockingConnectionPool.from_url(
            target.url, max_connections=pool_size, timeout=timeout, **options
        )
        return Redis.from_pool(pool)
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        list(target.sentinels),
        sentinel_kwargs={
            "username": target.sentinel_username,
            "password": target.sentinel_password,
            "socket_connect_timeout": connect_timeout,
            "socket_timeout": timeout,
        },
        socket_connect_timeout=connect_timeout,
        socket_timeout=timeout,
    )
    client: SentinelRedis = sentinel.master_for(
        target.service_name, redis_class=SentinelRedis, password=target.password, db=target.db
    )
    client.sentinel_clients = tuple(sentinel.sentinels)
    return client


class ClusterUnavailable(RedisConnectionError):
    """redis-py's cluster client reports an unreachable cluster (no node answers, slots not
    covered) as :class:`RedisClusterException`, which is no :class:`RedisError`; callrouter's
    callers treat Redis errors as Redis being away (fail-static, retry), so the cluster client
    raises this instead, with redis-py's message."""


def _unavailable(exc: RedisClusterException) -> ClusterUnavailable:
    return ClusterUnavailable(f"Redis Cluster: {exc}")


class _ClusterPubSub(ClusterPubSub):
    """redis-py's cluster pub/sub picks its node by the first channel's slot, from a slot map that
    stays empty until the client has run some other command: a listener subscribing first (a
    controller starting) would fail. This one learns the map first. Classic PUBLISH reaches the
    subscribers of every node, so any node would do; the channel's slot gives the centre's node."""

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        try:
            await self.cluster.initialize()
            return await super().execute_command(*args, **kwargs)
        except RedisClusterException as exc:
            raise _unavailable(exc) from exc


class _ClusterPipeline(ClusterPipeline):
    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> list[Any]:
        try:
            return await super().execute(raise_on_error, allow_redirections)
        except CrossSlotTransactionError:
            raise  # a transaction over two slots: a bug, not an outage
        except RedisClusterException as exc:
            raise _unavailable(exc) from exc


class ClusterClient(RedisCluster):
    """:class:`RedisCluster` whose pub/sub works before any other command has run, and whose
    errors are all :class:`RedisError` (:class:`ClusterUnavailable`)."""

    async def initialize(self, *args: Any, **kwargs: Any) -> RedisCluster:
        try:
            return await super().initialize(*args, **kwargs)
        except RedisClusterException as exc:
            raise _unavailable(exc) from exc

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().execute_command(*args, **kwargs)
        except RedisClusterException as exc:
            raise _unavailable(exc) from exc

    def pipeline(self, transaction: Any | None = None, shard_hint: Any | None = None) -> ClusterPipeline:
        if shard_hint:
            return super().pipeline(transaction, shard_hint)  # refused by redis-py, as it should be
        # redis-py's own pipeline() builds its ClusterPipeline the same way (the "abstract"
        # attribute is set by the base class at run time)
        return _ClusterPipeline(self, transaction)  # type: ignore[abstract]

    def pubsub(
        self, node: Any = None, host: str | None = None, port: int | None = None, **kwargs: Any
    ) -> ClusterPubSub:
        return _ClusterPubSub(self, node=node, host=host, port=port, **kwargs)


def _cluster(target: RedisTarget, *, connect_timeout: float, timeout: float, pool_size: int | None) -> Redis:
    """A Redis Cluster client. It is typed as :class:`Redis` because callrouter calls the commands
    both share, with the same arguments (``register_script``, ``eval``/``evalsha``, ``pipeline``
    with or without a same-slot transaction, ``pubsub``, ``scan_iter`` over every primary, ``aclose``):
    the suite runs them on a real three-primary cluster (``tests/cluster/``)."""
    client = ClusterClient.from_url(
        target.url,
        password=target.password,
        socket_connect_timeout=connect_timeout,
        socket_timeout=timeout,
        max_connections=pool_size or DEFAULT_CLUSTER_POOL,
    )
    return cast(Redis, client)
