"""Benchmark: AMI events per second turned into Redis queue state, on one core.

Run: ``.venv/bin/python -m benchmarks.ami_bench [--calls N] [--queues Q] [--uvloop]``.

A fake AMI server (``emulator.ami``) renders a peak (callers join, press
keys, agents answer, calls complete, callers abandon or time out, members pause,
channel noise) and sends it in one burst. Side by side in the same run:

* baseline: a bare panoramisk 1.4 ``Manager`` that only counts events;
* callrouter: the ``AmiConsumer`` (DTMF dropped, events converted and applied to
  Redis in batches by the writer-lease holder).

This process is pinned to CPU 0 and redis-server to CPU 1 (when the machine has two).
After the flood, the Redis state must equal the fake's model exactly (waiting callers
by Uniqueid, logged-in and available members per queue): the run fails otherwise.
The whole run is bounded by ``--limit-s``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from panoramisk import Manager
from redis.asyncio import Redis

from emulator.ami import FakeAmi
from routing.ami.consumer import AmiConsumer
from routing.ami.settings import AmiSettings
from routing.live.lease import WriterLease
from routing.live.store import QueueStateStore
from routing.redis_keys import RedisKeys
from tests.support.redis_server import running_redis

SECRET = "bench-secret"


@dataclass(frozen=True)
class Flood:
    data: bytes
    events: int
    dtmf: int
    expected: dict[str, tuple[int, int, int]]
    waiting: dict[str, set[str]]


async def render_flood(calls: int, queues: int, seed: int) -> Flood:
    """The peak's bytes and the model's final state (waiting, logged in, available)."""
    fake = FakeAmi(secret=SECRET)
    names = [f"council-q{i:02d}" for i in range(queues)]
    with fake.recording() as collected:
        await fake.peak(names, calls, seed=seed)
    data = b"".join(collected)
    model = fake.model
    expected = {}
    for q in model.queues.values():
        logged = [m for m in q.members.values() if m.status not in (4, 5)]
        free = [m for m in logged if m.status in (0, 1) and not m.paused and not m.in_call]
        expected[q.name] = (len(q.waiting), len(logged), len(free))
    waiting = {q.name: {c.channel.uniqueid for c in q.waiting} for q in model.queues.values()}
    return Flood(data, data.count(b"\r\n\r\n"), data.count(b"Event: DTMF"), expected, waiting)


async def wait_for(predicate: Callable[[], bool], limit_s: float) -> None:
    async with asyncio.timeout(limit_s):
        while not predicate():  # noqa: ASYNC110 (polls the consumer's counters; no hooks added for a bench)
            await asyncio.sleep(0.001)


async def baseline(flood: Flood, limit_s: float) -> float:
    """A bare panoramisk Manager that counts events: seconds to receive the flood."""
    async with FakeAmi(secret=SECRET) as fake:
        seen = [0]
        manager = Manager(
            loop=asyncio.get_running_loop(),
            host="127.0.0.1",
            port=fake.port,
            username="callrouter",
            secret=SECRET,
            ping_delay=3600,
        )
        manager.register_event("*", lambda _m, _e: seen.__setitem__(0, seen[0] + 1))
        await manager.connect()
        await wait_for(lambda: fake.sessions == 1 and seen[0] >= 1, limit_s)  # FullyBooted
        seen[0] = 0
        start = time.perf_counter()
        fake.broadcast(flood.data)
        await wait_for(lambda: seen[0] >= flood.events, limit_s)
        elapsed = time.perf_counter() - start
        manager.close()
        return elapsed


async def callrouter(flood: Flood, redis_url: str, limit_s: float) -> tuple[float, AmiConsumer]:
    """The AmiConsumer into Redis: seconds until every event is applied."""
    redis = Redis.from_url(redis_url, decode_responses=True)
    keys = RedisKeys(prefix=f"bench-{os.getpid()}-{time.monotonic_ns()}:")
    async with FakeAmi(secret=SECRET) as fake:
        settings = AmiSettings(port=fake.port, secret=SECRET, ping_interval_s=60, reconcile_interval_s=3600)
        lease = WriterLease(redis, "bench", 60, keys)
        consumer = AmiConsumer(settings, QueueStateStore(redis, "bench", keys), lease)
        await consumer.start()
        await wait_for(lambda: consumer.is_writer and consumer.stats.reconciles_applied == 1, limit_s)
        done_before = consumer.stats.items_processed
        start = time.perf_counter()
        fake.broadcast(flood.data)
        target = done_before + flood.events - flood.dtmf
        st = consumer.stats
        await wait_for(lambda: st.items_processed + st.queue_full_dropped >= target, limit_s)
        while st.queue_full_dropped and not await state_is_exact(consumer, flood):  # noqa: ASYNC110
            await asyncio.sleep(0.001)  # dropped events: the reconcile repairs the state
        elapsed = time.perf_counter() - start
        if not await state_is_exact(consumer, flood):
            raise SystemExit("STATE MISMATCH after the flood")
        await consumer.stop()
    await redis.aclose()
    return elapsed, consumer


async def state_is_exact(consumer: AmiConsumer, flood: Flood) -> bool:
    """Redis holds exactly the model's counts and waiting Uniqueids."""
    snaps = await consumer.store.snapshots(datetime.now(UTC))
    got = {q: (s.waiting, s.logged_in, s.available) for q, s in snaps.items()}
    if got != flood.expected:
        return False
    for queue, uids in flood.waiting.items():
        if set(await consumer.store.waiting_callers(queue)) != uids:
            return False
    return True


def pin(cpu: int, pid: int = 0) -> str:
    """Pin ``pid`` and its children (redis-server runs under ``timeout``) to one CPU."""
    with contextlib.suppress(AttributeError, OSError):
        if cpu in os.sched_getaffinity(0) or pid:
            for target in [pid, *children(pid)]:
                os.sched_setaffinity(target, {cpu})
            return f"cpu{cpu}"
    return "unpinned"


def children(pid: int) -> list[int]:
    path = f"/proc/{pid}/task/{pid}/children"
    with contextlib.suppress(OSError), open(path, encoding="ascii") as f:
        return [int(c) for c in f.read().split()]
    return []


async def main(args: argparse.Namespace, redis_url: str) -> None:
    flood = await render_flood(args.calls, args.queues, args.seed)
    queue_events = flood.events - flood.dtmf
    size_mb = len(flood.data) / 1e6
    print(f"flood: {flood.events} events ({flood.dtmf} DTMF, {queue_events} others), {size_mb:.1f} MB")
    for round_no in range(1, args.rounds + 1):
        base_s = await baseline(flood, args.limit_s)
        ours_s, consumer = await callrouter(flood, redis_url, args.limit_s)
        st = consumer.stats
        print(
            f"round {round_no}: panoramisk count-only {flood.events / base_s:,.0f} events/s "
            f"({base_s:.2f} s) | callrouter to Redis {flood.events / ours_s:,.0f} events/s "
            f"({ours_s:.2f} s; {st.events_applied} queue events in {st.batches_applied} batches, "
            f"{st.dtmf_dropped} DTMF dropped, {st.read_pauses} read pauses, "
            f"{st.queue_full_dropped} overflow drops) | state exact: yes"
        )


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--queues", type=int, default=20)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--limit-s", type=float, default=120.0)
    parser.add_argument("--uvloop", action="store_true")
    args = parser.parse_args()
    with running_redis(max_lifetime_s=int(args.limit_s * args.rounds * 2 + 60)) as server:
        redis_cpu = pin(1, server.process.pid) if (os.cpu_count() or 1) > 1 else "unpinned"
        loop = "uvloop" if args.uvloop else "asyncio"
        print(f"bench on {pin(0)}, redis-server on {redis_cpu}, loop={loop}")
        if args.uvloop:
            import uvloop

            uvloop.run(main(args, server.url))
        else:
            asyncio.run(main(args, server.url))


if __name__ == "__main__":
    run()
