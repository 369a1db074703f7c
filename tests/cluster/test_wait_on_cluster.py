"""``redis.wait_replicas`` on a real Redis Cluster (three primaries, one replica each): a toggle and
a batch of records count as written once the replica of their slot's primary confirms them (the
WAIT goes to that primary, after the writes, on their connection); with that replica killed, the
same writes are reported unconfirmed (NotReplicated) within the WAIT timeout."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from redis.asyncio import Redis
from redis.cluster import key_slot

from callrouter.settings import load
from records.appender import envelope_of
from records.stream import Envelope, RecordStream
from routing.redis_keys import RedisKeys
from routing.replicas import NotReplicated, ReplicaWait
from routing.supervisor import ToggleRequest, apply_toggle, check_request, toggles_for_tenant
from tests.cluster.conftest import cluster_client
from tests.cluster.rig import HOLDER
from tests.records.factory import record
from tests.support.redis_cluster import RedisClusterSet, running_cluster
from tests.support.toggle_keys import KEYRING

KEYS = RedisKeys(tag="wait-test")
WAIT = ReplicaWait(1, 500)
ARRIVED = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


@pytest.fixture
def replicated_cluster() -> Iterator[RedisClusterSet]:
    with running_cluster(max_lifetime_s=180, replicas=1) as found:
        yield found


async def _toggle(redis: Redis, on: bool) -> None:
    now = datetime.now(UTC)
    request = ToggleRequest("emergency", "harborough", on, by="S. Patel", reason="flood", expires="2h")
    toggle = check_request(HOLDER.current.plan, request, now)
    await apply_toggle(redis, request, toggle, now, KEYS, keyring=KEYRING, wait=WAIT)


def _batch(first: int) -> list[Envelope]:
    return [envelope_of(record(f"1795990000.{n}", ARRIVED), "charnwood") for n in range(first, first + 20)]


def test_the_settings_take_wait_replicas_with_a_cluster() -> None:
    env = {"CALLROUTER_REDIS": "redis://10.0.0.1:7000/0", "CALLROUTER_REDIS_CLUSTER": "true",
           "CALLROUTER_REDIS_WAIT_REPLICAS": "1"}  # fmt: skip
    assert load({}, env).replica_wait() == ReplicaWait(1, 500)


async def test_writes_wait_for_the_replica_of_their_slot(replicated_cluster: RedisClusterSet) -> None:
    cluster = replicated_cluster
    redis = cluster_client(cluster)
    stream = RecordStream(redis, "charnwood", keys=KEYS, wait=WAIT)
    try:
        await _toggle(redis, on=True)  # confirmed by the replica: no NotReplicated
        assert all(await stream.append_many(_batch(0)))
        assert await stream.append(_batch(100)[0]) is not None
        stored = await toggles_for_tenant(redis, "harborough", KEYRING, KEYS)
        assert stored.in_force["emergency"].by == "S. Patel"

        primary = cluster.node_for_slot(key_slot(KEYS.audit_stream().encode()))
        cluster.kill(cluster.replica_of(primary))
        with pytest.raises(NotReplicated, match="confirmed by 0 of 1 replicas within 500 ms"):
            await _toggle(redis, on=False)
        with pytest.raises(NotReplicated):
            await stream.append_many(_batch(200))
        # written on the primary all the same (a retry finds them there: idempotent)
        assert await redis.xlen(KEYS.records_stream("charnwood")) == 41
    finally:
        await redis.aclose()
