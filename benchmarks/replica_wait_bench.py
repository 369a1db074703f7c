"""Benchmark: what ``redis.wait_replicas = 1`` costs a toggle and a contact record append, beside
the same write without WAIT (the baseline), in the same run.

Run ``python -m benchmarks.replica_wait_bench``. It starts a Sentinel set on loopback (a primary,
one replica, three sentinels; ``appendonly yes``, ``appendfsync everysec``), connects through the
sentinels as every command does, and for ``--rounds`` rounds, alternating:

- **toggle**: ``apply_toggle`` (signed, audited), with no WAIT and with WAIT 1;
- **record**: ``RecordStream.append`` of a new record version, with no WAIT and with WAIT 1;
- **records, batch of 20**: ``RecordStream.append_many`` (the record pump's batch), both ways.

Times are from the call to its answer, in milliseconds (median and p99).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable
from datetime import UTC, datetime

from callrouter.redis_client import RedisTarget, connect, parse_sentinel
from ivr.controller import PlanHolder
from records.appender import envelope_of
from records.stream import RecordStream
from routing.replicas import NO_WAIT, ReplicaWait
from routing.supervisor import ToggleRequest, apply_toggle, check_request
from tests.controller.conftest import EXAMPLE
from tests.records.factory import record
from tests.support.redis_sentinel import running_sentinel_set
from tests.support.toggle_keys import KEYRING

ARRIVED = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def _row(label: str, times: list[float]) -> str:
    ms = sorted(t * 1000 for t in times)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return f"| {label} | {statistics.median(ms):.3f} | {p99:.3f} |"


async def _timed(times: list[float], call: Awaitable[object]) -> None:
    started = time.perf_counter()  # the coroutine has not run yet: it starts at the await
    await call
    times.append(time.perf_counter() - started)


async def _run(rounds: int) -> None:
    plan = PlanHolder.load(EXAMPLE).current.plan
    with running_sentinel_set(max_lifetime_s=600) as found:
        target = RedisTarget(
            "redis://sentinel/0", sentinels=tuple(parse_sentinel(a) for a in found.addresses)
        )
        redis = connect(target, connect_timeout=1, timeout=5)
        waits = {"no WAIT": NO_WAIT, "WAIT 1": ReplicaWait(1, 500)}
        streams = {name: RecordStream(redis, "charnwood", wait=w) for name, w in waits.items()}
        times: dict[str, list[float]] = {}
        serial = 0
        try:
            for n in range(rounds):
                for name, wait in waits.items():
                    now = datetime.now(UTC)
                    on = n % 2 == 0
                    request = ToggleRequest("emergency", "harborough", on, "bench", "bench", expires="2h")
                    toggle = check_request(plan, request, now)
                    switch = apply_toggle(redis, request, toggle, now, keyring=KEYRING, wait=wait)
                    await _timed(times.setdefault(f"toggle, {name}", []), switch)
                    serial += 1
                    one = envelope_of(record(f"1795990000.{serial}", ARRIVED), "charnwood")
                    await _timed(times.setdefault(f"record, {name}", []), streams[name].append(one))
                    batch = []
                    for _ in range(20):
                        serial += 1
                        batch.append(envelope_of(record(f"1795990000.{serial}", ARRIVED), "charnwood"))
                    label = f"records, batch of 20, {name}"
                    await _timed(times.setdefault(label, []), streams[name].append_many(batch))
        finally:
            await redis.aclose()
    print("| write | median ms | p99 ms |\n|---|---|---|")
    for label in sorted(times):
        print(_row(label, times[label]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=500)
    asyncio.run(_run(parser.parse_args().rounds))


if __name__ == "__main__":
    main()
