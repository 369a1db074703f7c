"""Benchmark: the records API over HTTP against reading the same archive in-process.

Run: ``.venv/bin/python -m benchmarks.records_api_bench [--per-day N] [--days D]``.

An archive of ``D`` days of ``N`` answered calls a day of one council (the shape of the KPI tests'
records), a real redis-server (the audit trail) and the real application on 127.0.0.1; one client
asks, one request at a time. Side by side, in the same run, the baseline does the same read with
the archive's own code in this process (no HTTP, no authentication, no audit, no JSON):

1. the first page of 50 records of one day (``GET .../records?from=&to=&limit=50``) against
   taking the first 50 of ``Archive.records`` for that day;
2. the last page of that day through its cursor;
3. a search by caller number over the whole range against ``records.export.find``;
4. one record with its versions (``GET .../records/{id}``) against reading its day;
5. the KPI report JSON of the whole range against ``records.kpi.report``.

Each figure is the median of several runs, in milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from redis.asyncio import Redis

from records.archive import Archive
from records.export import find
from records.kpi import Range, report, settings_for
from records.model import ContactRecord
from tests.records.factory import record
from tests.records.support import KEY
from tests.support.redis_server import running_redis
from tests.support.web import add_user, make_token, store_for
from tests.web.records_rig import answered, example_plan, records_app

START = datetime(2026, 11, 2, tzinfo=UTC)
CALLER = "01632960123"


def make_records(per_day: int, days: int) -> list[ContactRecord]:
    made = []
    for day in range(days):
        for n in range(per_day):
            arrived = START + timedelta(days=day, hours=8, seconds=n * 36000 // per_day)
            caller = CALLER if n == per_day // 2 else f"0163296{n % 10000:04d}"
            made.append(
                record(f"{int(arrived.timestamp())}.{n}", arrived, caller=caller, **answered(arrived))
            )
    return made


async def median_ms(action: Callable[[], Awaitable[object]], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        await action()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


async def bench(args: argparse.Namespace) -> None:
    records = make_records(args.per_day, args.days)
    first_day, last_day = START.date(), (START + timedelta(days=args.days - 1)).date()
    plan = example_plan()
    zone = plan.tenants["harborough"].zone()
    with running_redis() as server, tempfile.TemporaryDirectory(prefix="records-api-bench-") as tmp:
        redis = Redis(host=server.host, port=server.port)
        app = records_app(redis, Path(tmp), records, clock=lambda: datetime.now(UTC))
        archive = Archive(tmp)
        await add_user(store_for(redis), "bench", {"harborough": {"viewer"}})
        headers = {"Authorization": f"Bearer {await make_token(store_for(redis), 'bench')}"}
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        base = f"http://127.0.0.1:{port}/api/v1/tenants/harborough"
        one_day = {"from": first_day.isoformat(), "to": first_day.isoformat()}
        whole = {"from": first_day.isoformat(), "to": last_day.isoformat()}
        day_start, day_end = Range(first_day, first_day).bounds(zone)
        async with aiohttp.ClientSession(headers=headers) as http:

            async def get(path: str, params: dict[str, str] | None = None) -> Any:
                async with http.get(base + path, params=params) as answer:
                    assert answer.status == 200, await answer.text()
                    return await answer.json()

            last_cursor = None
            page = await get("/records", {**one_day, "limit": "50"})
            while page["next_cursor"] is not None:
                last_cursor = page["next_cursor"]
                page = await get("/records", {**one_day, "limit": "50", "cursor": last_cursor})
            assert last_cursor is not None

            middle = records[len(records) // 2]
            span = Range(first_day, last_day)
            kpi = settings_for(plan.tenants["harborough"])

            def first_page() -> object:
                return list(islice(archive.records("harborough", day_start, day_end), 50))

            def last_page() -> object:
                return list(archive.records("harborough", day_start, day_end))[-50:]

            def search() -> object:
                return list(find(archive, "harborough", KEY, CALLER))

            def versions() -> object:
                return [
                    r for r in archive.versions("harborough", middle.arrived_at.date()) if r.id == middle.id
                ]

            def kpis() -> object:
                found = archive.records("harborough", *span.bounds(zone))
                return report("harborough", found, span, "day", kpi, generated_at=datetime.now(UTC))

            def baseline(read: Callable[[], object]) -> Awaitable[float]:
                return median_ms(lambda: asyncio.to_thread(read), args.runs)

            def api(path: str, params: dict[str, str] | None = None) -> Awaitable[float]:
                return median_ms(lambda: get(path, params), args.runs)

            cursor = {**one_day, "limit": "50", "cursor": last_cursor}
            rows: list[tuple[str, float, float]] = [
                ("first page of 50, one day", await api("/records", {**one_day, "limit": "50"}),
                 await baseline(first_page)),
                ("last page of that day (cursor)", await api("/records", cursor), await baseline(last_page)),
                (f"caller search, {args.days} days",
                 await api("/records", {**whole, "caller": CALLER, "limit": "500"}), await baseline(search)),
                ("one record with its versions", await api(f"/records/{middle.id}"),
                 await baseline(versions)),
                (f"KPI report JSON, {args.days} days", await api("/report", whole), await baseline(kpis)),
            ]  # fmt: skip
        await runner.cleanup()
        await redis.aclose()
    print(f"records API, {args.per_day} records a day x {args.days} days, median of {args.runs} runs")
    print(f"{'operation':<34} {'API (ms)':>10} {'in-process (ms)':>16}")
    for name, api, baseline in rows:
        print(f"{name:<34} {api:>10.1f} {baseline:>16.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-day", type=int, default=2000)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--runs", type=int, default=5)
    asyncio.run(bench(parser.parse_args()))


if __name__ == "__main__":
    main()
