"""Benchmark: decide() on the example plan, p50/p99 per decision.

Run: ``.venv/bin/python -m benchmarks.decide_bench [--calls N]``. Side by side in
the same run, a baseline does only what any time-based router must do: look the
number up and convert the instant to the tenant's wall clock.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from routing.core import numbers
from routing.core.decide import Call, CompiledPlan, decide
from routing.core.live import NO_TOGGLES, LiveState, QueueSnapshot
from routing.plan_file import load_plan

PLAN = Path(__file__).parents[1] / "examples" / "plan.yaml"
LONDON = ZoneInfo("Europe/London")


def workload(count: int, seed: int = 7) -> list[tuple[Call, datetime]]:
    """A year of instants, both tenants, an unknown number, and typical key presses."""
    rng = random.Random(seed)
    start = datetime(2026, 1, 1, tzinfo=LONDON)
    dialled = ["01632 960001", "+441632960001", "01632960100", "01632 960555"]
    digits = [None, ("1",), ("2",), ("3",), ("4", "1"), ("", "", ""), ("9", "1")]
    year = 365 * 86400
    return [
        (Call(rng.choice(dialled), digits=rng.choice(digits)), start + timedelta(seconds=rng.randrange(year)))
        for _ in range(count)
    ]


def live_state(now: datetime) -> LiveState:
    queues = {
        "hdc-revenues": QueueSnapshot("hdc-revenues", 7, 200, 5, 1, now),
        "cbc-general": QueueSnapshot("cbc-general", 3, 40, 8, 2, now),
    }
    return LiveState(queues=queues, partners={}, max_age_s=1e12)


def measure(fn: Callable[[Call, datetime], object], work: list[tuple[Call, datetime]]) -> list[float]:
    samples = []
    clock = time.perf_counter_ns
    for call, now in work:
        began = clock()
        fn(call, now)
        samples.append((clock() - began) / 1000)
    return samples


def summary(name: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    p50 = ordered[len(ordered) // 2]
    p99 = ordered[int(len(ordered) * 0.99)]
    return f"| {name} | {len(samples):,} | {p50:.1f} | {p99:.1f} | {statistics.fmean(samples):.1f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=200_000)
    args = parser.parse_args()
    result = load_plan(PLAN)
    assert result.plan is not None
    plan = CompiledPlan.compile(result.plan)
    live = live_state(datetime(2026, 1, 1, tzinfo=LONDON))
    work = workload(args.calls)

    def baseline(call: Call, now: datetime) -> object:
        e164 = numbers.try_normalise(call.dialled)
        return plan.by_number.get(e164 or ""), now.astimezone(LONDON).time()

    def engine(call: Call, now: datetime) -> object:
        return decide(call, plan, live, NO_TOGGLES, now)

    for fn in (baseline, engine):  # warm caches (bank holidays per year, zone data)
        measure(fn, work[:2000])
    print("| what | decisions | p50 (us) | p99 (us) | mean (us) |")
    print("|---|---|---|---|---|")
    print(summary("baseline: number lookup + wall clock", measure(baseline, work)))
    print(summary("decide() with trace, menus, overflow", measure(engine, work)))


if __name__ == "__main__":
    main()
