"""``records status`` (``records.admin.sink_status``) against a real redis-server while the
delivery worker acknowledges entries between status's two reads."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from records.admin import sink_status
from routing.redis_keys import RedisKeys
from tests.support.redis_server import RedisServer

SINK = "harborough/crm"


class AckingBetweenReads(Redis):
    """A client whose XINFO GROUPS answer is followed, before the next command, by the worker
    acknowledging every pending entry (the race ``records deliver``'s backlog gauge met)."""

    async def xinfo_groups(self, name: Any) -> Any:
        groups = await super().xinfo_groups(name)
        pending = await self.xpending_range(name, SINK, "-", "+", 100)
        if pending:
            await self.xack(name, SINK, *(p["message_id"] for p in pending))
        return groups


async def test_entries_acknowledged_between_status_reads_count_as_delivered(
    redis_server: RedisServer,
) -> None:
    keys = RedisKeys(prefix="admin-race:")
    stream = keys.records_stream("charnwood")
    redis = AckingBetweenReads.from_url(redis_server.url)
    try:
        await redis.xadd(stream, {"tenant": "harborough", "record": "{}"})
        await redis.xgroup_create(stream, SINK, id="0")
        await redis.xreadgroup(SINK, "worker", {stream: ">"}, count=10)  # one entry now pending
        status = await sink_status(redis, "charnwood", SINK, keys)
    finally:
        await redis.aclose()
    assert status.backlog == 0  # XINFO said 1 pending; by XPENDING the worker had acknowledged it
