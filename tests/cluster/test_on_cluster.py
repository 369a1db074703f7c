"""callrouter's Redis work on a real three-primary Redis Cluster, through the project's one client
factory (``redis.cluster = true``): the live store, the AMI writer lease and the withdrawer fed by
a fake AMI with calls routed on that state; toggles; a plan publish and rollback; records appended
and delivered to a fake CRM; the web service's users, sessions, tokens and rate limits; the
change notices (pub/sub) of each. Two centres whose hash tags lie on different nodes work at once.

Every script, transaction and multi-key command here would be refused by the cluster
(CROSSSLOT, or a script sent to a node that does not hold its keys) if a key of a centre lay in
another slot than the others."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.cluster import key_slot

from emulator.crm import FakeCrm
from records.admin import retry
from records.delivery import DeliveryWorker
from records.sinks import WebhookSink
from records.stream import RecordStream
from routing import plan_store
from routing.callbacks import WaitInputsReader
from routing.core.live import QueueSnapshot
from routing.live.lease import WriterLease
from routing.live.source import CachedLiveSource
from routing.live.store import QueueStateStore, read_centre_snapshot
from routing.redis_keys import RedisKeys
from routing.supervisor import ToggleRequest, apply_toggle, check_request, toggles_for_tenant
from tests.callbacks.test_wait_inputs_read import Q as WAIT_QUEUE
from tests.callbacks.test_wait_inputs_read import a_busy_queue
from tests.cluster.rig import HOLDER, NORTH, SOUTH, centre, eventually
from tests.controller.conftest import EXAMPLE, HARBOROUGH
from tests.records.conftest import CENTRE, FAST, SECRET, envelope, webhook_config
from tests.support.redis_cluster import RedisClusterSet
from tests.support.toggle_keys import KEYRING
from tests.support.web import FAST_HASHER
from web.identity import IdentityStore

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def node_of(cluster: RedisClusterSet, keys: RedisKeys) -> int:
    return cluster.node_for_slot(key_slot(keys.audit_stream().encode())).port


# --- live state: AMI consumer, writer lease, store, withdrawer; calls routed on it -------------


@pytest.fixture
def withdrawing_plan(tmp_path: Path) -> Path:
    """The example plan, with callers withdrawn from revenues after 120 s."""
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        EXAMPLE.read_text().replace(
            "          when_unknown: stay\n", "          when_unknown: stay\n          max_wait_s: 120\n"
        )
    )
    return plan


async def test_two_centres_on_two_nodes_keep_live_state_and_route_on_it(
    cluster: RedisClusterSet, cluster_redis: Redis, withdrawing_plan: Path
) -> None:
    """North and south each run an AMI consumer (writer lease, apply and reconcile scripts) into
    their own slot, on different nodes; a peak at north overflows north's calls, south's calls
    stay local on the same queue names; after a dropped AMI link north reconciles, and a long
    waiter is withdrawn (the withdrawer)."""
    assert node_of(cluster, NORTH) != node_of(cluster, SOUTH)
    async with (
        centre(cluster_redis, NORTH, withdrawing_plan, "north-1") as north,
        centre(cluster_redis, SOUTH, withdrawing_plan, "south-1") as south,
    ):
        for c in (north, south):
            await c.until("hdc-revenues", lambda s: s.logged_in == 5)
            await eventually(lambda c=c: asyncio.sleep(0, c.consumer.is_writer))
        for _ in range(6):
            north.fake.caller_joins("hdc-revenues")
        south.fake.caller_joins("hdc-revenues")
        await north.until("hdc-revenues", lambda s: s.waiting == 6)
        await south.until("hdc-revenues", lambda s: s.waiting == 1)
        assert "queue cbc-assist" in await north.call(HARBOROUGH, "1")  # overflowing
        assert "queue hdc-revenues" in await south.call(HARBOROUGH, "1")

        # the AMI link drops while a caller who has waited 10 minutes joins; the reconcile script
        # brings them in from QueueStatus, and the withdrawer asks them out for overflow
        north.fake.drop_connections()
        with north.fake.recording():  # this join's event is lost with the connection
            north.ago[0] = 600
            old = north.fake.caller_joins("hdc-revenues").channel.uniqueid
            north.ago[0] = 0
        await north.until("hdc-revenues", lambda s: s.waiting == 7 and s.longest_wait_s >= 590)
        await eventually(lambda: asyncio.sleep(0, north.consumer.is_writer))
        assert await north.withdrawer.sweep() == 1
        await north.until("hdc-revenues", lambda s: s.waiting == 6)
        assert old not in await north.store.waiting_callers("hdc-revenues")

    # the raw keys: each centre's state is on its own node, under its own tag
    assert await cluster_redis.zcard(NORTH.queue_waiting("hdc-revenues")) == 6
    assert await cluster_redis.zcard(SOUTH.queue_waiting("hdc-revenues")) == 1


async def test_the_writer_lease_fences_a_second_writer(cluster_redis: Redis) -> None:
    keys = RedisKeys(tag="lease-test")
    first = WriterLease(cluster_redis, "a", ttl_s=2.0, keys=keys)
    second = WriterLease(cluster_redis, "b", ttl_s=2.0, keys=keys)
    assert await first.hold() == (True, True)
    assert await second.hold() == (False, False)
    assert await first.renew()
    stale = QueueStateStore(cluster_redis, writer="b", keys=keys)
    assert not await stale.mark_alive(time.time())  # the fenced script refuses the non-holder
    assert await QueueStateStore(cluster_redis, writer="a", keys=keys).mark_alive(time.time())
    assert not await second.release()
    assert await first.release()
    assert await second.acquire()
    assert await second.current_holder() == "b"


async def test_a_published_centre_snapshot_is_read_back(cluster_redis: Redis) -> None:
    keys = RedisKeys(tag="snapshot-test")
    lease = WriterLease(cluster_redis, "w", keys=keys)
    assert await lease.acquire()
    store = QueueStateStore(cluster_redis, writer="w", keys=keys)
    snap = QueueSnapshot("hdc-team", 2, 30.0, 4, 1, NOW)
    assert await store.publish_centre("harborough", snap, ttl_s=30)
    assert await read_centre_snapshot(cluster_redis, "harborough", keys) == snap


async def test_the_expected_waits_inputs_are_read_in_one_script_on_each_centres_node(
    cluster: RedisClusterSet, cluster_redis: Redis
) -> None:
    """The script declares the queue's two sets and builds each pending callback's key inside:
    the cluster runs it on the node of the centre's slot, which holds those keys too."""
    found = {}
    for tag in ("north", "south"):
        keys = RedisKeys(prefix="wait-inputs:", tag=tag)
        await a_busy_queue(cluster_redis, keys)
        found[tag] = await WaitInputsReader(cluster_redis, keys).read(WAIT_QUEUE)
    assert node_of(cluster, NORTH) != node_of(cluster, SOUTH)
    for inputs in found.values():
        assert inputs.handle_times == [240.0, 95.0, 610.0]
        assert [h.dialling for h in inputs.held] == [True, False, False]


# --- toggles and the plan store, with their change notices ---------------------------------------


async def test_toggles_are_written_signed_obeyed_and_announced(cluster_redis: Redis) -> None:
    """The toggle script (toggle key + audit stream, one slot) on the cluster; the notice on the
    toggles channel reaches a subscriber of the cluster client; a controller obeys the toggle."""
    keys = RedisKeys(tag="toggle-test")
    pubsub = cluster_redis.pubsub()
    await pubsub.subscribe(keys.toggles_changed_channel())
    try:
        now = datetime.now(UTC)
        request = ToggleRequest("emergency", "harborough", True, by="S. Patel", reason="flood", expires="2h")
        toggle = check_request(HOLDER.current.plan, request, now)
        audit_id, previous = await apply_toggle(cluster_redis, request, toggle, now, keys, keyring=KEYRING)
        assert audit_id
        assert previous is None
        notice = await _message(pubsub)
        assert notice == keys.toggle("emergency", "harborough").encode()
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
    stored = await toggles_for_tenant(cluster_redis, "harborough", KEYRING, keys)
    assert stored.in_force["emergency"].by == "S. Patel"
    source = CachedLiveSource(cluster_redis, lambda: HOLDER.current, keys=keys, keyring=KEYRING)
    await source.refresh(datetime.now(UTC))
    _, toggles = source.read_now(HOLDER.current, "harborough", datetime.now(UTC))
    assert toggles.emergency["harborough"].reason == "flood"
    assert await cluster_redis.xlen(keys.audit_stream()) == 1


async def _message(pubsub: Any, timeout_s: float = 5.0) -> bytes:
    async with asyncio.timeout(timeout_s):
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
            if message is not None:
                return bytes(message["data"])


async def test_a_plan_is_published_and_rolled_back_with_notices(cluster_redis: Redis) -> None:
    keys = RedisKeys(tag="plan-test")
    text = EXAMPLE.read_text()
    pubsub = cluster_redis.pubsub()
    await pubsub.subscribe(keys.plan_changed_channel())
    try:
        first = await plan_store.publish(cluster_redis, text, "ops", "first", NOW, keys=keys, delay_s=0)
        assert await _message(pubsub) == b"1"
        changed = text.replace("customer services team", "customer service team")
        second = await plan_store.publish(cluster_redis, changed, "ops", "second", NOW, keys=keys, delay_s=0)
        assert await _message(pubsub) == b"2"
        back = await plan_store.rollback(cluster_redis, 1, "ops", "back", NOW, keys=keys, delay_s=0)
        assert await _message(pubsub) == b"3"
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
    assert (first.live.version, second.live.version, back.live.version) == (1, 2, 1)
    live = await plan_store.live(cluster_redis, keys=keys)
    assert live is not None
    assert (live.generation, live.version) == (3, 1)
    assert sorted(v.number for v in await plan_store.versions(cluster_redis, keys=keys)) == [1, 2]
    stored = await plan_store.get(cluster_redis, 2, keys=keys)
    assert stored is not None
    assert "customer service team" in stored.text
    assert await cluster_redis.xlen(keys.audit_stream()) == 3


# --- contact records: append, deliver to a fake CRM, dead letters retried ------------------------


async def test_records_are_appended_once_and_delivered_to_the_crm(cluster_redis: Redis) -> None:
    keys = RedisKeys(tag="records-test")
    crm = FakeCrm(SECRET)
    await crm.start()
    stream = RecordStream(cluster_redis, CENTRE, keys=keys)
    try:
        assert await stream.append(envelope("r1")) is not None
        assert await stream.append(envelope("r1")) is None  # the same version: appended once
        appended = await stream.append_many([envelope("r2"), envelope("r2", 2), envelope("r3")])
        assert all(appended)
        sink = WebhookSink("harborough/crm", webhook_config(crm.url), SECRET)
        worker = DeliveryWorker(cluster_redis, CENTRE, {"harborough/crm": sink}, policy=FAST, keys=keys)
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        try:
            expected = {"r1:1", "r2:1", "r2:2", "r3:1"}
            async with asyncio.timeout(10):
                while {k for k, _, _ in crm.accepted} != expected:
                    await asyncio.sleep(0.05)
            crm.refuse.add("r4:1")  # a CRM refusal (400): a dead letter, then retried
            await stream.append(envelope("r4"))
            dead_key = keys.sink_dead(CENTRE, "harborough/crm")
            await eventually(lambda: cluster_redis.hlen(dead_key))
            crm.refuse.clear()
            assert await retry(cluster_redis, CENTRE, "harborough/crm", None, keys) == 1
            async with asyncio.timeout(10):
                while "r4:1" not in {k for k, _, _ in crm.accepted}:
                    await asyncio.sleep(0.05)
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
        stats = await cluster_redis.hgetall(keys.sink_stats(CENTRE, "harborough/crm"))
        assert int(stats[b"delivered"]) == 5
    finally:
        await crm.stop()


# --- the web service's identities -----------------------------------------------------------------


async def test_users_sessions_tokens_and_rate_limits(cluster_redis: Redis) -> None:
    keys = RedisKeys(tag="web-test")
    store = IdentityStore(cluster_redis, FAST_HASHER, keys)
    now = datetime.now(UTC)
    roles = {"harborough": frozenset({"supervisor"})}
    await store.add_user("sam", "S. Patel", "a long enough password", roles, now)
    user = await store.authenticate("sam", "a long enough password")
    assert user is not None
    assert await store.authenticate("sam", "wrong password!!") is None
    session = await store.create_session(user, now, idle_s=60, absolute_s=600)
    found = await store.session(session.session_id, now, idle_s=60)
    assert found is not None
    assert found[1].user_id == "sam"
    token, info = await store.create_token("sam", "reports", now, timedelta(days=1))
    assert (await store.token_identity(token, now)) is not None
    await store.revoke_token(info.token_id, now)
    assert await store.token_identity(token, now) is None
    for _ in range(3):
        await store.count_failure("user", "sam", 60)
    assert (await store.failures("user", "sam"))[0] == 3
    await store.set_password("sam", "another long password")
    assert await store.session(session.session_id, now, idle_s=60) is None  # the password change ended it
    await store.remove_user("sam")
    assert await store.user("sam") is None
