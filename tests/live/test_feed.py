"""The live feed end to end: fake AMI over TCP -> AMI consumer -> Redis -> LiveFeed -> subscribers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from emulator.ami import FakeAmi
from routing.ami.consumer import AmiConsumer
from routing.core.decide import CompiledPlan
from routing.core.live import QueueSnapshot, Toggle
from routing.live.events import CallerJoined
from routing.live.feed import LiveFeed, Subscription
from routing.live.lease import WriterLease
from routing.live.source import toggle_from_json, toggle_json
from routing.live.store import QueueStateStore, snapshot_json
from routing.redis_keys import RedisKeys
from tests.ami.helpers import wait_until
from tests.live.conftest import AGENT, GENERAL
from tests.support.redis_server import free_port, start_redis

TILE = "queue:charnwood/general"
Tile = dict[str, Any]


async def next_tile(
    sub: Subscription, tile_id: str, wanted: Callable[[Tile], bool], timeout_s: float = 3.0
) -> Tile:
    """Read messages until ``tile_id`` arrives (in a snapshot or a change) satisfying ``wanted``."""
    async with asyncio.timeout(timeout_s):
        async for message in sub:
            tiles: dict[str, Tile] = message.get("tiles") or message.get("changed") or {}
            tile = tiles.get(tile_id)
            if tile is not None and wanted(tile):
                return tile
    raise AssertionError(f"the subscription ended before {tile_id} matched")


def waiting_is(n: int) -> Callable[[Tile], bool]:
    return lambda tile: bool(tile["waiting"] == n)


async def started(consumer: AmiConsumer) -> None:
    await consumer.start()
    await wait_until(lambda: consumer.is_writer and consumer.stats.reconciles_applied > 0)


async def test_callers_joining_reach_a_subscriber_within_a_second(
    consumer: AmiConsumer, fake: FakeAmi, redis: Redis, keys: RedisKeys, plan: CompiledPlan
) -> None:
    await started(consumer)
    async with LiveFeed(redis, lambda: plan, keys=keys) as feed:
        sub = feed.subscribe()
        first = await anext(sub)
        assert first["type"] == "snapshot"
        assert first["tiles"][TILE]["waiting"] == 0
        delays = []
        for n in range(1, 31):
            sent = time.monotonic()
            fake.caller_joins(GENERAL)
            await next_tile(sub, TILE, waiting_is(n))
            delays.append(time.monotonic() - sent)
        assert max(delays) < 1.0, delays  # the goal; typical figures: benchmarks/live_feed_bench.py


async def test_event_ids_increase_and_messages_are_json(
    consumer: AmiConsumer, fake: FakeAmi, redis: Redis, keys: RedisKeys, plan: CompiledPlan
) -> None:
    import json

    await started(consumer)
    async with LiveFeed(redis, lambda: plan, keys=keys) as feed:
        sub = feed.subscribe(tenants={"charnwood"})
        ids = [(await anext(sub))["id"]]
        for _ in range(3):
            fake.caller_joins(GENERAL)
            message = await anext(sub)
            assert message["type"] == "changes"
            assert all(t.get("tenant", "charnwood") == "charnwood" for t in message["changed"].values())
            json.dumps(message)
            ids.append(message["id"])
        assert ids == sorted(ids)
        assert len(set(ids)) == len(ids)


async def test_an_adviser_pausing_and_unpausing(
    consumer: AmiConsumer, fake: FakeAmi, redis: Redis, keys: RedisKeys, plan: CompiledPlan
) -> None:
    await started(consumer)
    async with LiveFeed(redis, lambda: plan, keys=keys) as feed:
        sub = feed.subscribe()
        tile = await next_tile(sub, TILE, lambda t: t["logged_in"] == 1)
        assert (tile["available"], tile["paused"]) == (1, 0)
        fake.pause_member(AGENT, True, "lunch")
        tile = await next_tile(sub, TILE, lambda t: t["paused"] == 1, timeout_s=1.0)
        assert (tile["logged_in"], tile["available"]) == (1, 0)
        fake.pause_member(AGENT, False)
        tile = await next_tile(sub, TILE, lambda t: t["paused"] == 0, timeout_s=1.0)
        assert (tile["logged_in"], tile["available"]) == (1, 1)


async def test_partner_capacity_ages_into_stale(redis: Redis, keys: RedisKeys, plan: CompiledPlan) -> None:
    published = QueueSnapshot("hdc-revenues", 0, 0.0, 3, 2, datetime.now(UTC))
    await redis.set(keys.centre_snapshot("harborough"), snapshot_json(published), px=10_000)
    async with LiveFeed(redis, lambda: plan, keys=keys, max_age_s=1.0) as feed:
        sub = feed.subscribe()
        fresh = await next_tile(sub, "partner:harborough", lambda t: t["present"])
        assert (fresh["available"], fresh["stale"]) == (2, False)
        stale = await next_tile(sub, "partner:harborough", lambda t: t["stale"], timeout_s=3.0)
        assert stale["age_s"] >= 1
        assert stale["available"] == 2  # still shown, marked stale


async def test_an_emergency_toggle_shows_with_its_reason(
    redis: Redis, keys: RedisKeys, plan: CompiledPlan
) -> None:
    async with LiveFeed(redis, lambda: plan, keys=keys, interval_s=5.0) as feed:  # only the notification
        sub = feed.subscribe()
        first = await anext(sub)
        assert "toggle:charnwood:emergency" not in first["tiles"]
        reason = "fire alarm <b>drill</b>"
        toggle = Toggle(reason, "duty manager", datetime.now(UTC) + timedelta(hours=2))
        key = keys.toggle("emergency", "charnwood")
        sent = time.monotonic()
        # as the supervisor API writes one (the stored form, then the change notice)
        await redis.set(key, toggle_json(toggle), px=7_200_000)
        await redis.publish(keys.toggles_changed_channel(), key)
        shown = await next_tile(sub, "toggle:charnwood:emergency", lambda t: True, timeout_s=1.0)
        assert time.monotonic() - sent < 1.0
        assert shown["reason"] == reason  # as typed: the page escapes it
        assert shown["by"] == "duty manager"
        assert 7190 <= shown["expires_in_s"] <= 7200
        assert feed.tiles is not None
        assert feed.tiles["tenant:charnwood"]["state"] == "emergency"  # changed in the same message


async def test_a_stuck_subscriber_is_dropped_and_the_others_keep_up(
    consumer: AmiConsumer, fake: FakeAmi, redis: Redis, keys: RedisKeys, plan: CompiledPlan
) -> None:
    await started(consumer)
    async with LiveFeed(redis, lambda: plan, keys=keys, queue_size=8) as feed:
        stuck = feed.subscribe()  # never read
        readers = [feed.subscribe() for _ in range(199)]
        seen = [0] * len(readers)

        async def read(i: int, sub: Subscription) -> None:
            async for message in sub:
                tile = (message.get("tiles") or message.get("changed") or {}).get(TILE)
                if tile is not None:
                    seen[i] = tile["waiting"]

        tasks = [asyncio.create_task(read(i, sub)) for i, sub in enumerate(readers)]
        try:
            for _ in range(20):
                fake.caller_joins(GENERAL)
                await asyncio.sleep(0.05)
            await wait_until(lambda: min(seen) == 20, timeout_s=5)
            await wait_until(lambda: stuck.dropped, timeout_s=2)
            assert feed.subscribers == 199
            assert feed.dropped == 1
            left = [stuck.queue.get_nowait() for _ in range(stuck.queue.qsize())]
            assert [m["type"] for m in left] == ["resync"]
            assert [m["type"] async for m in stuck] == []  # the iteration ended
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task


async def test_the_feed_survives_a_redis_restart(plan: CompiledPlan) -> None:
    keys = RedisKeys(prefix="restart:")
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="callrouter-live-"))
    options = ("--save", "", "--appendonly", "no")
    server = start_redis(port, workdir, *options, max_lifetime_s=120)
    redis = Redis.from_url(server.url, decode_responses=True, socket_timeout=0.5, socket_connect_timeout=0.5)

    async def join(count: int) -> None:
        lease = WriterLease(redis, "ctl-a", 60, keys)
        await lease.acquire()
        store = QueueStateStore(redis, "ctl-a", keys)
        now = time.time()
        events = [CallerJoined(GENERAL, f"u{i}", "PJSIP/x", "", "", i + 1, i + 1, now) for i in range(count)]
        assert await store.apply_many(events)

    try:
        await join(1)
        async with LiveFeed(redis, lambda: plan, keys=keys, timeout_s=0.5) as feed:
            sub = feed.subscribe()
            await next_tile(sub, TILE, lambda t: t["waiting"] == 1)
            server.stop()
            feed_tile = await next_tile(sub, "feed", lambda t: t["stale"], timeout_s=5)
            assert feed_tile["ok"] is False
            assert feed_tile["error"]
            assert feed.tiles is not None
            assert feed.tiles[TILE]["waiting"] == 1  # the last view is kept
            await next_tile(sub, "feed", lambda t: t["age_s"] >= 2, timeout_s=5)  # and it ages
            server = start_redis(port, workdir, *options, max_lifetime_s=120)
            await wait_until(lambda: True)
            joined = False
            for _ in range(50):  # the client reconnects on its next command
                with contextlib.suppress(Exception):
                    await join(2)
                    joined = True
                    break
                await asyncio.sleep(0.1)
            assert joined
            await next_tile(sub, TILE, lambda t: t["waiting"] == 2, timeout_s=5)
            assert feed.tiles["feed"]["ok"] is True
    finally:
        await redis.aclose()
        server.stop()


async def test_the_writer_publishes_each_change_and_not_a_bare_alive_mark(
    redis: Redis, keys: RedisKeys
) -> None:
    lease = WriterLease(redis, "ctl-a", 60, keys)
    assert await lease.acquire()
    store = QueueStateStore(redis, "ctl-a", keys)
    pubsub = redis.pubsub()
    await pubsub.subscribe(keys.live_changed_channel())
    try:
        assert await pubsub.get_message(timeout=1.0) is not None  # the subscribe confirmation
        now = time.time()
        assert await store.apply(CallerJoined(GENERAL, "u1", "PJSIP/x", "", "", 1, 1, now))
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
        assert message is not None
        assert float(message["data"]) == now
        assert await store.apply_many([], alive_at=now + 1)  # no change: nothing published
        assert await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.3) is None
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]


async def test_a_raw_write_that_is_not_a_toggle_does_not_take_the_view_down(
    redis: Redis, keys: RedisKeys, plan: CompiledPlan
) -> None:
    await redis.set(keys.toggle("closure", "charnwood"), "not json")
    await redis.set(keys.plan_in_force(), "[1, 2")
    async with LiveFeed(redis, lambda: plan, keys=keys) as feed:
        first = await anext(feed.subscribe())
        assert first["tiles"]["feed"]["ok"] is True
        assert "toggle:charnwood:closure" not in first["tiles"]
        rejected = first["tiles"]["toggle_rejected:charnwood:closure"]
        assert rejected["why"].startswith("not a stored toggle")
        assert first["tiles"]["plan"]["version"] is None


def only_signed(key: str, raw: Any) -> Toggle:
    """A toggle check like the controllers' MAC check, in miniature: a value must name its key."""
    data = json.loads(raw)
    if data.get("signed_for") != key:
        raise ValueError("bad_mac: not signed for this key")
    return toggle_from_json(raw)


async def test_the_view_shows_only_the_toggles_the_controllers_obey(
    redis: Redis, keys: RedisKeys, plan: CompiledPlan
) -> None:
    raw = Toggle("raw write", "nobody", datetime.now(UTC) + timedelta(hours=1))
    await redis.set(keys.toggle("emergency", "charnwood"), toggle_json(raw))
    async with LiveFeed(redis, lambda: plan, keys=keys, toggle_decoder=only_signed) as feed:
        tiles = (await anext(feed.subscribe()))["tiles"]
    assert "toggle:charnwood:emergency" not in tiles
    assert tiles["toggle_rejected:charnwood:emergency"]["why"] == "bad_mac: not signed for this key"
    assert tiles["tenant:charnwood"]["state"] != "emergency"


async def test_the_plan_store_generation_shows_and_its_notice_wakes_the_feed(
    redis: Redis, keys: RedisKeys, plan: CompiledPlan
) -> None:
    live_key, channel = f"{keys.prefix}store-live", f"{keys.prefix}store-changed"  # the store's, passed in
    await redis.set(keys.plan_in_force(), json.dumps({"path": "plan.yaml", "version": 3, "at": "x"}))
    await redis.hset(live_key, mapping={"generation": 6, "version": 4, "sha256": "ab" * 32})
    async with LiveFeed(
        redis, lambda: plan, keys=keys, interval_s=5.0, plan_live_key=live_key, also_wake_on=[channel]
    ) as feed:
        sub = feed.subscribe()
        first = (await anext(sub))["tiles"]["plan"]
        assert (first["generation"], first["version"], first["sha256"]) == (6, 4, "ab" * 32)
        async with asyncio.timeout(10):  # the listener has subscribed (a publish before is lost)
            while (await redis.pubsub_numsub(channel))[0][1] < 1:
                await asyncio.sleep(0.02)
        await redis.hset(live_key, mapping={"generation": 7, "version": 5})
        await redis.publish(channel, "7")
        changed = await next_tile(sub, "plan", lambda t: t["generation"] == 7, timeout_s=1.0)
        assert changed["version"] == 5
