"""Benchmark: the owner's archive as a delivery sink, from the stream to fsync'd archive lines.

Run: ``.venv/bin/python -m benchmarks.archive_sink_bench [--records N] [--rounds R] [--dir DIR]``.

``--records`` versions of real contact records (answered calls over one day, every fifth with a
second version) are appended to a centre's stream of a redis-server with the project's
``redis.conf`` (AOF, fsync every second); then, timed, each contender takes them all into an
empty archive directory, side by side in one run, alternating, the best round counting:

* baseline: a bare loop, ``XREADGROUP`` 500 at a time, parse each record,
  ``Archive.append_many``, ``XACK``: the least the archive's writing costs from a stream;
* callrouter: the ``DeliveryWorker`` with one :class:`records.sinks.ArchiveSink` (lease, batches
  in order, the record checked against its envelope, acknowledged after the fsync).

Each round checks the archive holds every version exactly once, or the run fails. ``DIR`` should
be on the disk the archive will use: fsync costs are the disk's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from redis.asyncio import Redis

from callrouter.logs import configure_logging
from records.archive import Archive
from records.delivery import DeliveryWorker, Policy
from records.model import ContactRecord
from records.sinks import ArchiveSink
from records.stream import Envelope, RecordStream, parse_entry
from routing.redis_keys import RedisKeys
from tests.records.factory import record
from tests.support.redis_server import PROJECT_CONF, free_port, start_redis

CENTRE, TENANT = "charnwood", "harborough"
DAY = datetime(2026, 11, 24, 8, 30, tzinfo=UTC)


def versions(n: int) -> list[Envelope]:
    """``n`` versions; every fifth is version 2 of the contact just before it."""
    made: list[Envelope] = []
    for i in range(n):
        second = i % 5 == 4
        contact = i if second else i + 1
        arrived = DAY + timedelta(seconds=2 * contact)
        doc = record(f"1795500000.{contact}", arrived, version=2 if second else 1)
        payload = doc.model_dump(mode="json")
        made.append(Envelope(doc.id, doc.version, TENANT, CENTRE, arrived, doc.updated_at, payload))
    return made


async def bare(redis: Redis, keys: RedisKeys, root: Path, total: int) -> None:
    stream, group, archive = keys.records_stream(CENTRE), "bare", Archive(root)
    await redis.xgroup_create(stream, group, id="0")
    done = 0
    while done < total:
        reply = await redis.xreadgroup(group, "c", {stream: ">"}, count=500, block=1000)
        entries = reply[0][1] if reply else []
        held = [ContactRecord.model_validate_json(json.dumps(parse_entry(sid.decode(), f).envelope.payload))
                for sid, f in entries]  # fmt: skip
        await asyncio.to_thread(archive.append_many, held)
        await redis.xack(stream, group, *[sid for sid, _ in entries])
        done += len(entries)


async def ours(redis: Redis, keys: RedisKeys, root: Path, total: int) -> None:
    sink = ArchiveSink(TENANT, Archive(root))
    worker = DeliveryWorker(redis, CENTRE, {sink.name: sink}, policy=Policy(block_ms=100), keys=keys)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    stream = keys.records_stream(CENTRE)
    while True:
        groups = {g["name"].decode(): g for g in await redis.xinfo_groups(stream)}
        g = groups.get(sink.name)
        if g is not None and g["lag"] == 0 and g["pending"] == 0:
            break
        await asyncio.sleep(0.01)
    stop.set()
    await task


def check(root: Path, expected: int) -> None:
    archive = Archive(root)
    found = [(r.id, r.version) for day in archive.days(TENANT) for r in archive.versions(TENANT, day)]
    lines = sum(len(p.read_bytes().splitlines()) for p in (root / TENANT).glob("*.jsonl"))
    if not (len(found) == len(set(found)) == lines == expected):
        raise SystemExit(f"archive holds {len(set(found))} versions in {lines} lines, not {expected}")


async def bench(args: argparse.Namespace, url: str, base: Path) -> dict[str, float]:
    redis = Redis.from_url(url)
    made = versions(args.records)
    best: dict[str, float] = {}
    try:
        for round_no in range(1, args.rounds + 1):
            for name, contender in (("baseline: bare XREADGROUP + append_many + XACK", bare),
                                    ("callrouter: DeliveryWorker + ArchiveSink", ours)):  # fmt: skip
                keys = RedisKeys(prefix=f"b{round_no}{name[:4]}:")
                stream = RecordStream(redis, CENTRE, keys=keys)
                for start in range(0, len(made), 1000):
                    await stream.append_many(made[start : start + 1000])
                root = base / f"r{round_no}-{name[:4]}"
                began = time.perf_counter()
                await asyncio.wait_for(contender(redis, keys, root, len(made)), timeout=args.limit_s)
                rate = len(made) / (time.perf_counter() - began)
                check(root, len(made))
                shutil.rmtree(root)
                await redis.flushdb()
                best[name] = max(rate, best.get(name, 0.0))
                print(f"round {round_no}, {name}: {rate:,.0f} versions/s", flush=True)
    finally:
        await redis.aclose()
    for name, rate in best.items():
        print(f"{name}: best {rate:,.0f} versions/s")
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--limit-s", type=float, default=300.0)
    parser.add_argument("--dir", help="where the archives are written (default: a temporary folder)")
    args = parser.parse_args()
    configure_logging(json=True, level="warning")
    base = Path(tempfile.mkdtemp(prefix="callrouter-archive-sink-bench-", dir=args.dir))
    server = start_redis(free_port(), base, conf=PROJECT_CONF, max_lifetime_s=int(args.limit_s * 8 + 60))
    try:
        asyncio.run(bench(args, server.url, base))
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
