"""Benchmark: the live view's delay from an AMI event to a subscriber (goal: under one second).

Run: ``.venv/bin/python -m benchmarks.live_feed_bench [--events N] [--subscribers S]``.

A fake AMI (``emulator.ami``) sends ``QueueCallerJoin`` events one at a time to a real AMI
consumer holding the writer lease, which writes Redis. For each event the delay is measured from
just before the fake sends it to the moment the reader sees the new ``waiting`` figure, with a
random pause (0-250 ms) between events so that they fall anywhere in a poll interval. Side by
side in the same run, against the same Redis and consumer:

* baseline: a bare loop of ``HGET <queue snapshot> waiting`` with no pause (the floor: AMI ->
  consumer -> Redis, then one read);
* feed, poll only: a :class:`LiveFeed` reading every 0.2 s (no notification), one subscriber;
* feed, notified: the same with the writer's ``live:changed`` notification, one subscriber;
* feed, notified, ``--subscribers`` subscribers: the delay until every one has the change;
* the cost of one read (one pipelined round trip) and of one whole refresh (read, view, diff).

The whole run is bounded by ``--limit-s``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from redis.asyncio import Redis

from emulator.ami import FakeAmi
from routing.ami.consumer import AmiConsumer
from routing.ami.settings import AmiSettings
from routing.core.decide import CompiledPlan
from routing.live.feed import LiveFeed, Subscription
from routing.live.lease import WriterLease
from routing.live.store import QueueStateStore
from routing.plan_file import load_plan
from routing.redis_keys import RedisKeys
from tests.support.redis_server import running_redis

SECRET = "bench-secret"
QUEUE = "cbc-general"  # Charnwood's general queue in the example plan
TILE = "queue:charnwood/general"
PLAN = Path(__file__).resolve().parents[1] / "examples" / "plan.yaml"

Seen = Callable[[int], Awaitable[None]]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


@dataclass
class Rig:
    """What every row shares: Redis, the key prefix, the plan, the fake AMI, the pauses' seed."""

    redis: Redis
    keys: RedisKeys
    plan: CompiledPlan
    fake: FakeAmi
    rng: random.Random
    sent: int = 0  # callers joined so far (the queue only fills: each row starts where the last ended)


async def measure(rig: Rig, events: int, seen: Seen) -> list[float]:
    """Send ``events`` joins one at a time; the delay until ``seen(waiting)`` returns for each.

    The pause before each is random over more than a poll interval, so events fall anywhere in it."""
    delays = []
    for _ in range(events):
        await asyncio.sleep(rig.rng.uniform(0, 0.25))
        rig.sent += 1
        started = time.perf_counter()
        rig.fake.caller_joins(QUEUE)
        await seen(rig.sent)
        delays.append(time.perf_counter() - started)
    return delays


async def baseline(rig: Rig, events: int) -> list[float]:
    key = rig.keys.queue_snapshot(QUEUE)

    async def seen(n: int) -> None:
        while int(await rig.redis.hget(key, "waiting") or 0) < n:
            pass

    return await measure(rig, events, seen)


async def feed_run(rig: Rig, events: int, *, notify: bool, subscribers: int) -> list[float]:
    async with LiveFeed(rig.redis, lambda: rig.plan, keys=rig.keys, notify=notify, queue_size=1024) as feed:
        subs = [feed.subscribe() for _ in range(subscribers)]
        latest = [0] * subscribers
        arrived = asyncio.Event()

        async def read(i: int, sub: Subscription) -> None:
            async for message in sub:
                tile = (message.get("tiles") or message.get("changed") or {}).get(TILE)
                if tile is not None:
                    latest[i] = tile["waiting"]
                    arrived.set()

        tasks = [asyncio.create_task(read(i, s)) for i, s in enumerate(subs)]

        async def seen(n: int) -> None:
            while min(latest) < n:
                arrived.clear()
                if min(latest) < n:
                    await arrived.wait()

        await seen(rig.sent)
        try:
            return await measure(rig, events, seen)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


async def refresh_cost(rig: Rig, rounds: int) -> tuple[list[float], list[float]]:
    """Seconds per read alone (one pipelined round trip) and per whole refresh (read, view, diff)."""
    feed = LiveFeed(rig.redis, lambda: rig.plan, keys=rig.keys)
    reads, refreshes = [], []
    for _ in range(rounds):
        started = time.perf_counter()
        await feed.reader.read(rig.plan, datetime.now(UTC))
        reads.append(time.perf_counter() - started)
        started = time.perf_counter()
        await feed.refresh()
        refreshes.append(time.perf_counter() - started)
    return reads, refreshes


def report(name: str, delays: list[float]) -> None:
    ms = [d * 1000 for d in delays]
    print(
        f"{name:<38} n={len(ms):4d}  p50 {statistics.median(ms):7.1f} ms  "
        f"p99 {percentile(ms, 99):7.1f} ms  max {max(ms):7.1f} ms"
    )


async def run(events: int, subscribers: int, seed: int) -> None:
    result = load_plan(PLAN)
    assert result.plan is not None, result.problems
    plan = CompiledPlan.compile(result.plan)
    rng = random.Random(seed)
    keys = RedisKeys(prefix="bench:")
    with running_redis(max_lifetime_s=900) as server:
        redis = Redis.from_url(server.url, decode_responses=True)
        async with FakeAmi("callrouter", SECRET) as fake:
            fake.add_member(QUEUE, "PJSIP/agent1", "Agent One", membership="static", send=False)
            settings = AmiSettings(port=fake.port, secret=SECRET, lease_ttl_s=6)
            store = QueueStateStore(redis, "bench", keys)
            consumer = AmiConsumer(settings, store, WriterLease(redis, "bench", 6, keys))
            await consumer.start()
            async with asyncio.timeout(10):
                while not (consumer.is_writer and consumer.stats.reconciles_applied):  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
            rig = Rig(redis, keys, plan, fake, rng)
            print(f"{events} QueueCallerJoin events per row, one at a time, 0-250 ms apart")
            report("baseline: bare HGET loop", await baseline(rig, events))
            poll = await feed_run(rig, events, notify=False, subscribers=1)
            report("feed, poll every 0.2 s, 1 subscriber", poll)
            notified = await feed_run(rig, events, notify=True, subscribers=1)
            report("feed, notified, 1 subscriber", notified)
            many = await feed_run(rig, events, notify=True, subscribers=subscribers)
            report(f"feed, notified, all {subscribers} subscribers", many)
            reads, refreshes = await refresh_cost(rig, events)
            report("cost: one read (LiveReader.read)", reads)
            report("cost: one refresh (read, view, diff)", refreshes)
            await consumer.stop()
        await redis.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument("--limit-s", type=float, default=600)
    args = parser.parse_args()

    async def bounded() -> None:
        async with asyncio.timeout(args.limit_s):
            await run(args.events, args.subscribers, args.seed)

    asyncio.run(bounded())


if __name__ == "__main__":
    main()
