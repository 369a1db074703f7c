"""Benchmark: callrouter's Redis work on a three-primary Redis Cluster beside one redis-server (the
baseline), in the same run; and the record pump's pipelined append as it is now (EVAL in the
pipeline) beside the way it was (EVALSHA in the pipeline, after redis-py's SCRIPT EXISTS check).

Run ``python -m benchmarks.cluster_bench``. It starts one redis-server and a three-primary cluster
on loopback (nothing saved), connects to each through the project's client factory, and for
``--rounds`` rounds, alternating between the two:

- **live read**: ``QueueStateStore.snapshots`` (every queue's snapshot, the read behind each routing
  decision's cache refresh), with 10 queues of live state;
- **live write**: ``QueueStateStore.apply_many`` of 20 events (the AMI consumer's batch script);
- **toggle**: ``apply_toggle`` (signed, audited, announced);
- **record**: ``RecordStream.append`` of one record version;
- **records, batch of 20**: ``RecordStream.append_many`` (the record pump's batch); on the single
  server also the former EVALSHA pipeline.

Times are from the call to its answer, in milliseconds (median and p99).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import time
from collections.abc import Awaitable, Iterator
from datetime import UTC, datetime

from redis.asyncio import Redis

from callrouter.redis_client import RedisTarget, connect
from ivr.controller import PlanHolder
from records.appender import envelope_of
from records.stream import _APPEND, Envelope, RecordStream
from routing.live.events import CallerJoined, CallerLeft
from routing.live.lease import WriterLease
from routing.live.store import QueueStateStore
from routing.redis_keys import KEYS
from routing.supervisor import ToggleRequest, apply_toggle, check_request
from tests.controller.conftest import EXAMPLE
from tests.records.factory import record
from tests.support.redis_cluster import running_cluster
from tests.support.redis_server import running_redis
from tests.support.toggle_keys import KEYRING

ARRIVED = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
QUEUES = [f"bench-{i}" for i in range(10)]
PLAN = PlanHolder.load(EXAMPLE).current.plan


def _row(label: str, times: list[float]) -> str:
    ms = sorted(t * 1000 for t in times)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return f"| {label} | {statistics.median(ms):.3f} | {p99:.3f} |"


async def _timed(times: list[float], call: Awaitable[object]) -> None:
    started = time.perf_counter()  # the coroutine has not run yet: it starts at the await
    await call
    times.append(time.perf_counter() - started)


async def _evalsha_batch(redis: Redis, stream: RecordStream, envelopes: list[Envelope]) -> None:
    """The former ``append_many``: the registered script called with ``client=pipe`` (EVALSHA)."""
    script = redis.register_script(_APPEND)
    async with redis.pipeline(transaction=False) as pipe:
        for e in envelopes:
            keys = [stream.keys.record_appended(stream.centre, e.record_id), stream.stream]
            args = [e.version, stream.retention_s, e.record_id, e.tenant, e.to_json()]
            await script(keys=keys, args=args, client=pipe)
        await pipe.execute()


def _events(n: int, now: float) -> list[CallerJoined | CallerLeft]:
    queue = QUEUES[n % len(QUEUES)]
    joins: list[CallerJoined | CallerLeft] = [
        CallerJoined(queue, f"{n}.{i}", f"PJSIP/x-{n}-{i}", "", "", i + 1, i + 1, now) for i in range(10)
    ]
    return joins + [CallerLeft(queue, f"{n}.{i}", 1, 9 - i, now + 0.001) for i in range(10)]


def _envelopes(serials: Iterator[int], count: int) -> list[Envelope]:
    return [envelope_of(record(f"1795990000.{next(serials)}", ARRIVED), "charnwood") for _ in range(count)]


async def _round(
    name: str,
    redis: Redis,
    *,
    store: QueueStateStore,
    stream: RecordStream,
    n: int,
    serials: Iterator[int],
    times: dict[str, list[float]],
) -> None:
    now = datetime.now(UTC)
    await _timed(times.setdefault(f"live read, {name}", []), store.snapshots(now))
    await _timed(times.setdefault(f"live write, {name}", []), store.apply_many(_events(n, time.time())))
    request = ToggleRequest("emergency", "harborough", n % 2 == 0, "bench", "bench", expires="2h")
    toggle = check_request(PLAN, request, now)
    await _timed(
        times.setdefault(f"toggle, {name}", []), apply_toggle(redis, request, toggle, now, keyring=KEYRING)
    )
    await _timed(times.setdefault(f"record, {name}", []), stream.append(_envelopes(serials, 1)[0]))
    batch = _envelopes(serials, 20)
    await _timed(times.setdefault(f"records, batch of 20, {name}", []), stream.append_many(batch))
    if name == "one server":
        label = "records, batch of 20, one server, former EVALSHA pipeline"
        await _timed(times.setdefault(label, []), _evalsha_batch(redis, stream, _envelopes(serials, 20)))


async def _run(rounds: int) -> None:
    with running_redis(max_lifetime_s=900) as server, running_cluster(max_lifetime_s=900) as cluster:
        clients = {
            "one server": connect(RedisTarget(server.url), connect_timeout=1, timeout=5),
            "cluster": connect(RedisTarget(cluster.url, cluster=True), connect_timeout=1, timeout=5),
        }
        stores, streams = {}, {}
        for name, redis in clients.items():
            assert await WriterLease(redis, "bench", ttl_s=900).acquire()
            stores[name] = QueueStateStore(redis, writer="bench")
            streams[name] = RecordStream(redis, "charnwood")
            await stores[name].apply_many(
                [CallerJoined(q, f"w-{q}", "PJSIP/w", "", "", 1, 1, time.time()) for q in QUEUES]
            )
        times: dict[str, list[float]] = {}
        serials = itertools.count(1)
        try:
            for n in range(rounds):
                for name, redis in clients.items():
                    await _round(
                        name,
                        redis,
                        store=stores[name],
                        stream=streams[name],
                        n=n,
                        serials=serials,
                        times=times,
                    )
            slot_check = await clients["cluster"].xlen(KEYS.records_stream("charnwood"))
            assert slot_check == rounds * 21, slot_check
        finally:
            for redis in clients.values():
                await redis.aclose()
    print("| operation | median ms | p99 ms |\n|---|---|---|")
    for label in sorted(times):
        print(_row(label, times[label]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=500)
    asyncio.run(_run(parser.parse_args().rounds))


if __name__ == "__main__":
    main()
