"""The one way every ``callrouter`` process connects to Redis: a plain URL, or through Sentinel.

``serve``, ``web``, ``records deliver`` and the commands that talk to Redis directly all take their
client from :func:`connect`, so each of them follows a Sentinel failover the same way: a client made
through Sentinel asks the sentinels for the current primary whenever it opens a connection, and drops
a connection that finds itself on a replica (after a failover, the old primary comes back as one).
Timeouts stay bounded either way: ``connect_timeout`` and ``timeout`` apply to the data connections
and to each question put to a sentinel.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool

DEFAULT_SERVICE = "callrouter"


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
    primary of ``service_name``, and ``url`` gives only the database number (its path)."""

    url: str
    password: str | None = field(default=None, repr=False)
    sentinels: tuple[tuple[str, int], ...] = ()
    service_name: str = DEFAULT_SERVICE
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)

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
        return f"{parts.scheme}://{parts.hostname or ''}{port}{parts.path}"


class SentinelRedis(Redis):
    """A client of the primary the sentinels name; closing it closes its sentinel connections too."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        pool = self.connection_pool
        if isinstance(pool, SentinelConnectionPool):
            for sentinel in pool.sentinel_manager.sentinels:
                await sentinel.aclose()


def connect(
    target: RedisTarget, *, connect_timeout: float, timeout: float, pool_size: int | None = None
) -> Redis:
    """A client for ``target`` (no I/O yet: connections open on first use). ``pool_size``: at
    most that many connections to a plain URL, a command waiting up to ``timeout`` for a free one
    (the web service's many viewers); through Sentinel redis-py's own pool is used."""
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
    client: Redis = sentinel.master_for(
        target.service_name, redis_class=SentinelRedis, password=target.password, db=target.db
    )
    return client
