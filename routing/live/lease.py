"""The AMI writer lease: exactly one controller instance writes live queue state.

Choice. Two controller instances (active and standby, or two after a fail-over) both
keep an AMI connection and both receive every event, but only the holder of this
lease writes to Redis. Merging two writers' updates is possible because updates are
idempotent (waiting callers are keyed by Uniqueid with their join time, members by
interface with the event time), but the two streams are not identical: each instance
stamps events with its own receive time, each reconnects and reconciles at different
moments, and a lagging instance would repeatedly write older pictures over newer
ones. One writer gives one ordered history. The cost is a take-over delay of at
most one lease time, during which snapshots simply age (readers see ``observed_at``
grow old and fall back as for any stale state).

Protocol (Redis key ``ami_writer_lease``):

* take: ``SET lease <holder> NX PX <ttl>``;
* renew every ``ttl / 3``: a compare-and-set script that extends the TTL only if the
  value is still ``<holder>``; a failed renewal means the lease was lost;
* release on a clean stop: compare-and-delete, so the standby takes over at once;
* fencing: every write script of the store checks ``GET lease == <holder>`` in the
  same atomic step as the write, so an instance that lost the lease (paused, cut off)
  cannot write even if it has not noticed yet.

The standby keeps its AMI connection and drops events; when it takes the lease it
reconciles with ``QueueStatus`` before trusting its state (see ``routing.ami.consumer``).
"""

from __future__ import annotations

from redis.asyncio import Redis

from routing.live import scripts
from routing.redis_keys import KEYS, RedisKeys


class WriterLease:
    """The writer lease as seen by one instance (``holder`` is its unique id)."""

    def __init__(self, redis: Redis, holder: str, ttl_s: float = 6.0, keys: RedisKeys = KEYS) -> None:
        self._redis = redis
        self.holder = holder
        self.ttl_ms = max(1, int(ttl_s * 1000))
        self._key = keys.ami_writer_lease()
        self._renew = redis.register_script(scripts.RENEW_LEASE)
        self._release = redis.register_script(scripts.RELEASE_LEASE)

    @property
    def renew_interval_s(self) -> float:
        """How often the holder renews (a third of the lease time)."""
        return self.ttl_ms / 3000

    async def acquire(self) -> bool:
        """Take the lease if nobody holds it (``SET NX PX``)."""
        return bool(await self._redis.set(self._key, self.holder, nx=True, px=self.ttl_ms))

    async def renew(self) -> bool:
        """Extend the lease if this instance still holds it."""
        return bool(await self._renew(keys=[self._key], args=[self.holder, self.ttl_ms]))

    async def hold(self) -> tuple[bool, bool]:
        """Renew or take: ``(holding, just_taken)``."""
        if await self.renew():
            return True, False
        taken = await self.acquire()
        return taken, taken

    async def release(self) -> bool:
        """Give the lease up if this instance holds it."""
        return bool(await self._release(keys=[self._key], args=[self.holder]))

    async def current_holder(self) -> str | None:
        """Who holds the lease now (None when free)."""
        value = await self._redis.get(self._key)
        if value is None:
            return None
        return value.decode() if isinstance(value, bytes) else str(value)
