"""Benchmark: what keeping each waiting caller's first join costs the AMI writer.

Run: ``.venv/bin/python -m benchmarks.first_joins_bench [--rounds N] [--joins J]``.

The wait loop (docs/callbacks.md) takes a caller out of Queue() and back in at every slice; the
AMI writer keeps their first join (``QueueStateStore.keep_first_joins``, one extra fenced script
call per batch) so the queue's longest wait counts from it. Side by side in the same run,
alternating: ``apply_many`` of one batch of ``J`` joins and ``J`` leaves over 20 queues (a
flood's batch) with that write, and the baseline without it (the store as it was before).
Each round uses fresh keys on a real redis-server on loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid

from redis.asyncio import Redis

from routing.live.events import CallerJoined, CallerLeft, QueueEvent
from routing.live.lease import WriterLease
from routing.live.store import QueueStateStore
from routing.redis_keys import RedisKeys
from tests.support.redis_server import running_redis


class WithoutFirstJoins(QueueStateStore):
    """The baseline: the store without the first-join write."""

    async def keep_first_joins(self, joins: object) -> bool:
        return True


def flood_batch(joins: int, base: float) -> list[QueueEvent]:
    events: list[QueueEvent] = []
    for i in range(joins):
        queue, uid, ts = f"queue-{i % 20}", f"{int(base)}.{i}", base + i / 1000
        events.append(CallerJoined(queue, uid, "PJSIP/sipp", "01632960123", "Caller", 1, 1, ts))
        events.append(CallerLeft(queue, uid, 1, 0, ts + 0.0005))
    return events


async def run(url: str, rounds: int, joins: int) -> dict[str, list[float]]:
    redis = Redis.from_url(url)
    times: dict[str, list[float]] = {"with first joins": [], "without (baseline)": []}
    try:
        for n in range(rounds):
            order = [(QueueStateStore, "with first joins"), (WithoutFirstJoins, "without (baseline)")]
            for cls, name in order if n % 2 else order[::-1]:
                keys = RedisKeys(prefix=f"bench-{uuid.uuid4().hex[:8]}:")
                assert await WriterLease(redis, "bench", 60, keys).acquire()
                store = cls(redis, "bench", keys)
                events = flood_batch(joins, 1_000_000.0 + n * 100)
                started = time.perf_counter()
                assert await store.apply_many(events)
                times[name].append(time.perf_counter() - started)
    finally:
        await redis.aclose()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--joins", type=int, default=1000)
    args = parser.parse_args()
    with running_redis() as server:
        times = asyncio.run(run(server.url, args.rounds, args.joins))
    print(f"apply_many of {args.joins} joins + {args.joins} leaves over 20 queues, {args.rounds} rounds (ms)")
    for name, values in times.items():
        ordered = sorted(values)
        p90 = ordered[int(len(ordered) * 0.9)]
        print(f"{name:20} median {statistics.median(values) * 1000:7.1f}  p90 {p90 * 1000:7.1f}")


if __name__ == "__main__":
    main()
