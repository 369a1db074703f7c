"""Benchmark: contact records from append to the CRM's acknowledgement, on one core.

Run: ``.venv/bin/python -m benchmarks.delivery_bench [--records N] [--backlog N] [--rate R]``.

A fake CRM (``emulator.crm``, a real aiohttp server that checks every signature and
de-duplicates by idempotency key) runs in its own process; redis-server runs with the project's
``redis.conf`` (append-only file, fsync every second). Both are pinned to CPU 1, this process
(appender and delivery) to CPU 0. Side by side in the same run, against the same CRM:

* baseline: a bare loop, ``XADD``, ``XREADGROUP`` 500 at a time, one signed HTTP POST per entry
  (64 at once, like the worker), ``XACK`` the batch; no idempotent append, no lease, no
  ordering per contact, no retries, no dead letters;
* callrouter: ``RecordStream.append_many`` (the idempotent append script) and the
  ``DeliveryWorker`` with one webhook sink, default policy.

Three figures each: records/s from the first append to the CRM having all of them
(``--records`` appended at once; ``--rounds`` rounds, the contenders alternating, the best
round counts); the time to drain a backlog of ``--backlog`` records appended
before delivery starts (an hour's outage at 50 calls/s is 180,000); append -> CRM latency
p50/p99 at a steady ``--rate`` records/s for ``--seconds``. Every phase checks the CRM got each
record exactly once (after de-duplication) or the run fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
from redis.asyncio import Redis

from records.delivery import DeliveryWorker
from records.sinks import WebhookSink
from records.stream import Envelope, RecordStream, entry_fields
from routing.core.plan import WebhookSink as WebhookSinkConfig
from routing.redis_keys import RedisKeys
from tests.support.redis_server import PROJECT_CONF, free_port, start_redis

SECRET = b"benchmark-secret"
CENTRE, TENANT = "charnwood", "harborough"
T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
APPEND_CHUNK = 1000


def make(n: int, run: str, stamp: bool = False) -> Envelope:
    payload: dict[str, object] = {"record_id": f"{run}.{n}", "version": 1, "outcome": "answered",
                                  "queue": "revenues", "wait_s": 41, "talk_s": 233}  # fmt: skip
    if stamp:
        payload["bench_t0"] = time.time()
    return Envelope(f"{run}.{n}", 1, TENANT, CENTRE, T0, T0, payload)


class Crm:
    """The fake CRM process, driven over HTTP."""

    def __init__(self, port: int, http: aiohttp.ClientSession) -> None:
        self.port, self.http = port, http
        self.url = f"http://127.0.0.1:{port}/contacts"

    async def stats(self) -> dict[str, object]:
        async with self.http.get(f"http://127.0.0.1:{self.port}/_stats") as response:
            data: dict[str, object] = await response.json()
            return data

    async def reset(self) -> None:
        async with self.http.post(f"http://127.0.0.1:{self.port}/_reset") as response:
            await response.read()

    async def wait_for(self, count: int, limit_s: float) -> dict[str, object]:
        deadline = time.monotonic() + limit_s
        while True:
            stats = await self.stats()
            if int(str(stats["accepted"])) >= count:
                return stats
            if time.monotonic() > deadline:
                raise SystemExit(f"the CRM has {stats['accepted']} of {count} records after {limit_s}s")
            await asyncio.sleep(0.05)


# --- the two contenders -------------------------------------------------------------------------


class Bare:
    """XADD + XREADGROUP + POST + XACK, nothing else."""

    name = "bare XADD/XREADGROUP/POST"

    def __init__(self, redis: Redis, crm: Crm, run: str) -> None:
        self.redis, self.crm = redis, crm
        self.stream = f"bench:{run}:bare"
        self.task: asyncio.Task[None] | None = None

    async def append(self, items: list[Envelope]) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            for e in items:
                pipe.xadd(self.stream, entry_fields(e))  # type: ignore[arg-type]
            await pipe.execute()

    async def _loop(self) -> None:
        await self.redis.xgroup_create(self.stream, "g", id="0", mkstream=True)
        slots = asyncio.Semaphore(64)
        connector = aiohttp.TCPConnector(limit=64)
        async with aiohttp.ClientSession(connector=connector) as http:

            async def post(fields: dict[bytes, bytes]) -> None:
                envelope = json.loads(fields[b"e"])
                key = f"{envelope['record_id']}:{envelope['version']}"
                event = json.dumps({"specversion": "1.0", "id": key, "source": "/bench", "type": "bench",
                                    "subject": envelope["record_id"], "recordversion": envelope["version"],
                                    "data": envelope["payload"]}).encode()  # fmt: skip
                headers = {"Content-Type": "application/cloudevents+json", "Idempotency-Key": key,
                           "X-Callrouter-Signature-256": "sha256="
                           + hmac.new(SECRET, event, hashlib.sha256).hexdigest()}  # fmt: skip
                async with slots, http.post(self.crm.url, data=event, headers=headers) as response:
                    await response.read()

            while True:
                got = await self.redis.xreadgroup("g", "c", {self.stream: ">"}, count=500, block=1000)
                if not got:
                    continue
                entries = got[0][1]
                await asyncio.gather(*(post(fields) for _sid, fields in entries))
                await self.redis.xack(self.stream, "g", *[sid for sid, _ in entries])

    def start(self) -> None:
        self.task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


class Ours:
    name = "callrouter records"

    def __init__(self, redis: Redis, crm: Crm, run: str, batch_size: int = 1) -> None:
        self.redis, self.crm, self.batch_size = redis, crm, batch_size
        self.keys = RedisKeys(prefix=f"bench:{run}:")
        self.stream = RecordStream(redis, CENTRE, keys=self.keys)
        self.stop_event = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def append(self, items: list[Envelope]) -> None:
        results = await self.stream.append_many(items)
        if None in results:
            raise SystemExit("an append was refused as a duplicate")

    def start(self) -> None:
        config = WebhookSinkConfig(
            type="webhook", url=self.crm.url, secret_env="X", timeout_s=10, batch_size=self.batch_size
        )
        sink = WebhookSink(f"{TENANT}/crm", config, SECRET)
        worker = DeliveryWorker(self.redis, CENTRE, {sink.name: sink}, keys=self.keys)
        self.task = asyncio.create_task(worker.run(self.stop_event))

    async def stop(self) -> None:
        self.stop_event.set()
        if self.task is not None:
            await self.task


Contender = Bare | Ours


async def append_all(contender: Contender, start: int, count: int, run: str, stamp: bool = False) -> None:
    for first in range(start, start + count, APPEND_CHUNK):
        await contender.append(
            [make(n, run, stamp) for n in range(first, min(first + APPEND_CHUNK, start + count))]
        )


def _check(stats: dict[str, object], count: int, label: str) -> None:
    if stats["accepted"] != count or stats["bad_signatures"] != 0 or stats["out_of_order"] != 0:
        raise SystemExit(f"{label}: the CRM's account is wrong: {stats}")


async def throughput(contender: Contender, crm: Crm, args: argparse.Namespace, run: str) -> float:
    records, limit_s = args.records, args.limit_s
    await crm.reset()
    contender.start()
    began = time.perf_counter()
    await append_all(contender, 0, records, run)
    stats = await crm.wait_for(records, limit_s)
    elapsed = time.perf_counter() - began
    await contender.stop()
    _check(stats, records, contender.name)
    return records / elapsed


async def drain(contender: Contender, crm: Crm, args: argparse.Namespace, run: str) -> float:
    backlog, limit_s = args.backlog, args.limit_s
    await crm.reset()
    await append_all(contender, 0, backlog, run)
    began = time.perf_counter()
    contender.start()
    stats = await crm.wait_for(backlog, limit_s)
    elapsed = time.perf_counter() - began
    await contender.stop()
    _check(stats, backlog, contender.name)
    return elapsed


async def latency(contender: Contender, crm: Crm, args: argparse.Namespace, run: str) -> tuple[float, float]:
    rate, seconds, limit_s = args.rate, args.seconds, args.limit_s
    await crm.reset()
    contender.start()
    total, tick = int(rate * seconds), 0.02
    per_tick = max(1, int(rate * tick))
    began = time.perf_counter()
    sent = 0
    while sent < total:  # steady arrivals, a few at a time, each stamped at its append
        batch = min(per_tick, total - sent)
        await contender.append([make(n, run, stamp=True) for n in range(sent, sent + batch)])
        sent += batch
        await asyncio.sleep(max(0.0, began + sent / rate - time.perf_counter()))
    stats = await crm.wait_for(total, limit_s)
    await contender.stop()
    _check(stats, total, contender.name)
    return float(str(stats["latency_p50_s"])), float(str(stats["latency_p99_s"]))


def contenders(batch: int) -> list[tuple[str, Callable[[Redis, Crm, str], Contender]]]:
    return [
        (Bare.name, Bare),
        (Ours.name + ", one event per POST", lambda r, c, run: Ours(r, c, run, 1)),
        (Ours.name + f", batches of {batch}", lambda r, c, run: Ours(r, c, run, batch)),
    ]


async def bench(args: argparse.Namespace, redis_url: str, crm_port: int) -> None:
    """Throughput in alternating rounds (so that load from elsewhere falls on every contender
    alike; the best round counts), then each contender's drain and latency."""
    redis = Redis.from_url(redis_url)
    async with aiohttp.ClientSession() as http:
        crm = Crm(crm_port, http)
        await crm.wait_for(0, 10)
        results: dict[str, dict[str, float]] = {name: {} for name, _ in contenders(args.batch)}
        for round_no in range(1, args.rounds + 1):
            for index, (name, build) in enumerate(contenders(args.batch)):
                run_id = f"r{round_no}c{index}"
                rate = await throughput(build(redis, crm, run_id), crm, args, run_id)
                results[name]["records_per_s"] = max(rate, results[name].get("records_per_s", 0.0))
                print(f"round {round_no}, {name}: append -> CRM ack {rate:,.0f} records/s", flush=True)
                await redis.flushdb()
        for index, (name, build) in enumerate(contenders(args.batch)):
            r = results[name]
            best = r["records_per_s"]
            print(f"{name}: best append -> CRM ack {best:,.0f} records/s", flush=True)
            r["drain_s"] = await drain(build(redis, crm, f"d{index}"), crm, args, f"d{index}")
            rate = args.backlog / r["drain_s"]
            print(f"{name}: {args.backlog:,} drained in {r['drain_s']:.1f} s ({rate:,.0f}/s)", flush=True)
            r["p50_s"], r["p99_s"] = await latency(build(redis, crm, f"l{index}"), crm, args, f"l{index}")
            p50, p99 = r["p50_s"] * 1000, r["p99_s"] * 1000
            print(f"{name}: append -> CRM at {args.rate}/s: p50 {p50:.1f} ms, p99 {p99:.1f} ms", flush=True)
            await redis.flushdb()
        if args.json:
            print(json.dumps(results, indent=2))
    await redis.aclose()


def pin(cpu: int, pid: int = 0) -> str:
    """Pin ``pid`` and its children (servers run under ``timeout``) to one CPU."""
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


def run(args: argparse.Namespace, go: Callable[[str, int], Awaitable[None]]) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="callrouter-records-bench-"))
    lifetime = int(args.limit_s * 8 + 120)
    server = start_redis(free_port(), workdir, conf=PROJECT_CONF, max_lifetime_s=lifetime)
    crm_port = free_port()
    crm = subprocess.Popen(
        ["timeout", str(lifetime), sys.executable, "-m", "emulator.crm", "--port", str(crm_port)],
        env={**os.environ, "CRM_SECRET": SECRET.decode()}, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        other = 1 if len(os.sched_getaffinity(0)) > 1 else 0
        print(f"bench on {pin(0)}, redis-server (AOF everysec) and the fake CRM on "
              f"{pin(other, server.process.pid)}/{pin(other, crm.pid)}", flush=True)  # fmt: skip
        time.sleep(1.0)  # the CRM process starting
        asyncio.run(go(server.url, crm_port))
    finally:
        crm.terminate()
        crm.wait(timeout=10)
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--records", type=int, default=30_000, help="records for the throughput figure")
    parser.add_argument("--backlog", type=int, default=180_000, help="backlog to drain")
    parser.add_argument("--rate", type=int, default=200, help="steady records/s for the latency figure")
    parser.add_argument("--seconds", type=float, default=15.0, help="how long the steady load lasts")
    parser.add_argument("--limit-s", type=float, default=300.0, help="bound on each phase")
    parser.add_argument("--rounds", type=int, default=3, help="alternating throughput rounds")
    parser.add_argument("--batch", type=int, default=50, help="batch size of the batched-mode run")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    run(args, lambda url, port: bench(args, url, port))


if __name__ == "__main__":
    main()
