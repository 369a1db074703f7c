"""Benchmark: the owner's archive and the council's report, on one core, in a temporary directory.

Run: ``.venv/bin/python -m benchmarks.archive_bench [--records N] [--dir DIR]``.

1. Appends: ``Archive.append`` (one fsync per record) and ``Archive.append_many`` in batches of
   100 (one fsync per batch and day file), side by side with a baseline that only writes the same
   JSON lines with ``os.write`` + ``fsync`` at the same batch sizes (no dedup, no lock, no index).
2. Export: reading every record back as the latest versions (``Archive.records``) and writing
   JSON Lines, against a baseline that reads the lines and ``json.loads`` them.
3. The report: ``records.kpi.report`` over the same records, and the HTML rendered (two charts).

The records are answered calls (the shape of the KPI test's) spread over 30 days in arrival order,
as the delivery worker sees them. Each figure is the best of three runs.
``DIR`` should be on the disk the archive will use: fsync costs are the disk's.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from records.archive import Archive
from records.export import write_jsonl
from records.kpi import KpiSettings, Range, report
from records.model import ContactRecord
from records.report import render_html
from tests.records.test_kpi import answered_call

START = datetime(2026, 11, 2, 8, tzinfo=UTC)


def make_records(count: int) -> list[ContactRecord]:
    records = []
    for n in range(count):
        day, nth = divmod(n * 30, count)  # in arrival order, as the delivery worker sees them
        arrived = START + timedelta(days=day, seconds=nth * 36000 // count)
        records.append(answered_call(n + 1, arrived, "hdc-revenues", n % 60, 120 + n % 300, survey=n % 3 - 1))
    return records


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def bare_append(root: Path, lines: list[bytes], batch: int) -> None:
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / "bare.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    try:
        for i in range(0, len(lines), batch):
            os.write(fd, b"".join(lines[i : i + batch]))
            os.fsync(fd)
    finally:
        os.close(fd)


def archive_append(root: Path, records: list[ContactRecord], batch: int) -> None:
    archive = Archive(root)
    if batch == 1:
        for record in records:
            archive.append(record)
    else:
        for i in range(0, len(records), batch):
            archive.append_many(records[i : i + batch])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--records", type=int, default=30_000)
    parser.add_argument("--single", type=int, default=2_000, help="records appended one fsync each")
    parser.add_argument("--dir", help="a directory on the archive's disk (default: a temporary one)")
    args = parser.parse_args()
    records = make_records(args.records)
    lines = [r.model_dump_json().encode("utf-8") + b"\n" for r in records]
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        base = Path(tmp)
        print(f"{args.records:,} records ({sum(map(len, lines)) / len(lines):.0f} bytes each), 30 days")
        print("appends                         archive           bare write+fsync")
        for batch, count in ((1, args.single), (100, args.records)):
            took = bare = float("inf")
            for run in range(3):
                bare = min(
                    bare, timed(lambda b=batch, c=count, r=run: bare_append(base / f"b{b}-{r}", lines[:c], b))
                )
                took = min(
                    took,
                    timed(lambda b=batch, c=count, r=run: archive_append(base / f"a{b}-{r}", records[:c], b)),
                )
            rates = f"{count / took:>9,.0f} rec/s   {count / bare:>9,.0f} rec/s"
            print(f"  batch {batch:>3} ({count:>6,} records)  {rates}")
        again = timed(lambda: archive_append(base / "a100-0", records, 100))
        print(f"  the same {args.records:,} again (all already stored): {args.records / again:,.0f} rec/s")

        archive = Archive(base / "a100-0")
        start, end = Range(date(2026, 11, 2), date(2026, 12, 1)).bounds(KpiSettings().zone)
        export = timed(
            lambda: sum(1 for _ in write_jsonl(archive.records("harborough", start, end), io.StringIO()))
        )
        files = sorted((base / "a100-0" / "harborough").iterdir())
        plain = timed(lambda: [json.loads(line) for path in files for line in path.read_bytes().splitlines()])
        print(f"export to JSON Lines: {args.records / export:,.0f} rec/s (read + json.loads only: "
              f"{args.records / plain:,.0f} rec/s)")  # fmt: skip

        span = Range(date(2026, 11, 2), date(2026, 12, 1))
        loaded = list(archive.records("harborough", start, end))
        data: dict[str, object] = {}
        kpis = timed(lambda: data.update(report("harborough", loaded, span, "week", KpiSettings(),
                                                generated_at=datetime.now(UTC))))  # fmt: skip
        html = timed(lambda: render_html(data, "Harborough District Council"))
        print(f"KPIs over {len(loaded):,} records: {kpis * 1000:,.0f} ms")
        print(f"HTML with two charts: {html * 1000:,.0f} ms")


if __name__ == "__main__":
    main()
