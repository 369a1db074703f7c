"""Benchmark: reading the expected wait's inputs from Redis, one script against three round trips.

Run: ``.venv/bin/python -m benchmarks.wait_inputs_bench [--rounds N] [--reads R]``.

Each wait announcement reads a queue's recent handle times and the callbacks holding places in
its order, each with whether it is being dialled (``RedisCallbackDesk.wait_inputs``). Side by
side in the same run, on a real redis-server on loopback, alternating in each round:

- **bare loop** (the baseline): one ``ZRANGE`` of the handle times per read, nothing parsed:
  what a single round trip costs here;
- **before**: the reads as they were, three in sequence: the handle times, the pending set,
  then one pipeline of an ``HGET`` per pending callback (two when none is pending);
- **one script**: :class:`routing.callbacks.WaitInputsReader` (one ``EVALSHA``).

The queue holds the 50 handle times the AMI writer keeps and 0, 5 or 50 pending callbacks (one
in five being dialled). Times are per read, from the call to its answer, in microseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis

from routing.callbacks import WaitInputsReader, callback_id, claim, pending_callbacks, request_callback
from routing.core.callback import CallbackRequest
from routing.core.plan import CallbackPolicy
from routing.core.wait import HeldPlace
from routing.live.events import AgentComplete
from routing.live.store import HANDLE_TIMES_KEPT, QueueStateStore, read_handle_times
from routing.redis_keys import RedisKeys
from tests.support.redis_server import running_redis

QUEUE = "bench-queue"
T0 = 1_795_600_000.0


async def before(redis: Redis, keys: RedisKeys, queue: str) -> tuple[list[float], list[HeldPlace]]:
    """The reads as they were before the script: three round trips in sequence."""
    handle = await read_handle_times(redis, keys, queue)
    pending = await pending_callbacks(redis, keys, queue)
    if not pending:
        return handle, []
    async with redis.pipeline(transaction=False) as pipe:
        for p in pending:
            pipe.hget(keys.callback(p.callback_id), "state")
        states = await pipe.execute()
    return handle, [HeldPlace(p.joined_at, s == b"dialling") for p, s in zip(pending, states, strict=True)]


async def fill(redis: Redis, keys: RedisKeys, callbacks: int) -> None:
    await redis.set(keys.ami_writer_lease(), "bench")
    done = [
        AgentComplete(QUEUE, f"u{n}", "PJSIP/a", "A", 20, 200 + n, "caller", T0 + n)
        for n in range(HANDLE_TIMES_KEPT)
    ]
    assert await QueueStateStore(redis, "bench", keys).record_handle_times(done)
    for n in range(callbacks):
        req = CallbackRequest(
            "harborough", QUEUE, "+441632960123", T0 + n, T0 + n + 60, f"{T0:.0f}.{n}", "en"
        )
        await request_callback(redis, keys, req, CallbackPolicy(initial_delay_s=0), T0 + 100)
        if n % 5 == 0:
            assert await claim(redis, keys, callback_id(req.call_id), "bench", T0 + 200) == 1


async def timed(reads: int, call: Callable[[], Awaitable[object]]) -> list[float]:
    out = []
    for _ in range(reads):
        started = time.perf_counter()
        await call()
        out.append(time.perf_counter() - started)
    return out


def variants(
    redis: Redis, keys: RedisKeys, reader: WaitInputsReader
) -> dict[str, Callable[[], Awaitable[object]]]:
    handle_key = keys.queue_handle_times(QUEUE)
    return {
        "bare loop (one ZRANGE)": lambda: redis.zrange(handle_key, 0, -1),
        "before (three round trips)": lambda: before(redis, keys, QUEUE),
        "one script": lambda: reader.read(QUEUE),
    }


async def run(url: str, rounds: int, reads: int) -> dict[int, dict[str, list[float]]]:
    redis = Redis.from_url(url)
    results: dict[int, dict[str, list[float]]] = {}
    try:
        for callbacks in (0, 5, 50):
            keys = RedisKeys(prefix=f"bench-{uuid.uuid4().hex[:8]}:")
            await fill(redis, keys, callbacks)
            reader = WaitInputsReader(redis, keys)
            one = await reader.read(QUEUE)
            assert (one.handle_times, one.held) == await before(redis, keys, QUEUE)  # same answer
            calls = variants(redis, keys, reader)
            times: dict[str, list[float]] = {name: [] for name in calls}
            for n in range(rounds):
                order = list(calls.items())
                for name, call in order if n % 2 else order[::-1]:
                    times[name] += await timed(reads, call)
            results[callbacks] = times
    finally:
        await redis.aclose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--reads", type=int, default=500)
    args = parser.parse_args()
    with running_redis(max_lifetime_s=600) as server:
        results = asyncio.run(run(server.url, args.rounds, args.reads))
    print(f"reads of one queue's wait inputs, {args.rounds} rounds x {args.reads} reads (us per read)")
    print("| pending callbacks | read | median | p99 |")
    print("|---:|---|---:|---:|")
    for callbacks, times in results.items():
        for name, values in times.items():
            ordered = sorted(values)
            p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
            print(f"| {callbacks} | {name} | {statistics.median(values) * 1e6:.0f} | {p99 * 1e6:.0f} |")


if __name__ == "__main__":
    main()
