"""Benchmark: two centres, each its own stack, overflowing to each other (``docs/partners.md``).

Run ``python -m benchmarks.stacks_bench``. It starts the two centres of
``tests/support/partnership.py`` as whole stacks on loopback (``tests/support/stacks.py``: per
centre a redis-server, a fake AMI, real ``callrouter serve``, ``callrouter web`` over HTTPS with
the signed partner exchange, ``callrouter records deliver``; the emulated Asterisk in this
process) with the shipped settings' intervals (``ami.publish_interval_s`` 1 s,
``partners.interval_s`` 1 s, serve's live state refreshed every 0.25 s), and measures in the same
run, each round after a random wait:

- **peak to overflow**: ten callers join Charnwood's queue at A (its overflow threshold) while B
  publishes free advisers; Charnwood calls are placed one after another until one is dialled to
  B: the time from the peak to the start of that call;
- **baseline, local overflow**: the same at A for Harborough's revenues queue, whose overflow
  goes to a queue of A's own (no partner involved): the AMI to Redis to controller path alone;
- **partner frees up to overflow**: A at its peak, B's advisers all busy (A's calls stay at A);
  B's advisers come free: the time from that to the start of the first call A dials to B
  (serve's publishing, the exchange and the controller's refresh, one after another);
- **snapshot age at the decision**: the age of B's snapshot in A's Redis as each call that
  overflowed to B started (the controller's own copy is at most 0.25 s behind it).

Times in milliseconds: median, p99 and max. Calls are placed back to back, so a time includes
up to one call's length (a few tens of ms) after the moment the controller would have decided.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from emulator.agi import CallerScript
from emulator.crm import FakeCrm
from tests.records.conftest import SECRET
from tests.support.partnership import (
    PEAK,
    TEAM,
    TO_B,
    A,
    B,
    charnwood_caller,
    harborough_caller,
    partnership,
)
from tests.support.stacks import Stack, running_stacks, until_snapshot

LOCAL_ASSIST = "queue cbc-assist"  # Harborough's revenues overflow at A (the example plan)
HARBOROUGH_PEAK = 6  # the example's revenues queue enters overflow at 6 waiting


def _row(label: str, seconds: list[float]) -> str:
    ms = sorted(s * 1000 for s in seconds)
    p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
    return f"| {label} | {len(ms)} | {statistics.median(ms):.0f} | {p99:.0f} | {ms[-1]:.0f} |"


def _calm(centre: Stack, queue: str) -> None:
    """Every caller waiting in ``queue`` hangs up."""
    for entry in list(centre.fake.model.queue(queue).waiting):
        centre.fake.abandon(entry.channel.uniqueid)


async def _until_routed(
    centre: Stack, script: Callable[[int], CallerScript], ended: Callable[[str], bool], since: float
) -> tuple[float, float]:
    """Calls one after another until one's summary passes ``ended``: (seconds from ``since``
    to the start of that call, B's snapshot age in A's Redis as it started)."""
    for n in range(1, 500):
        started = time.perf_counter()
        snap = await centre.partner_snapshot(B) if centre.name == A else None
        age = (datetime.now(UTC) - snap.observed_at).total_seconds() if snap else float("nan")
        record = await centre.call(script(n))
        if ended(record.summary()):
            return started - since, age
    raise AssertionError("no call went where expected")


async def _settle(centre: Stack, script: Callable[[int], CallerScript], stays: str) -> None:
    """Until a call goes to ``stays`` again (the controller saw the calm, left overflow)."""
    await asyncio.sleep(0.3)
    await _until_routed(centre, script, lambda summary: stays in summary, time.perf_counter())


async def _run(rounds: int) -> None:
    crms = {council: FakeCrm(SECRET) for council in (A, B)}
    for crm in crms.values():
        await crm.start()
    peak, local, frees, ages = [], [], [], []
    try:
        with tempfile.TemporaryDirectory() as name:
            folder = Path(name)
            urls = {council: crm.url for council, crm in crms.items()}
            async with running_stacks(partnership(folder, urls), folder) as (a, b):
                await until_snapshot(a, B, lambda s: s is not None and s.available == len(TEAM), 10)
                overflowed: Callable[[str], bool] = lambda summary: summary.endswith(f"dial {TO_B}")  # noqa: E731
                for _ in range(rounds):
                    # peak to overflow, B has room
                    await asyncio.sleep(random.uniform(0, 1))
                    since = time.perf_counter()
                    for _ in range(PEAK):
                        a.fake.caller_joins("cbc-general")
                    took, age = await _until_routed(a, charnwood_caller, overflowed, since)
                    peak.append(took)
                    ages.append(age)
                    # B full, then free: A at its peak overflows again once it sees B's room
                    for interface in TEAM:
                        b.fake.set_member_status(interface, 2, in_call=True)
                    await until_snapshot(a, B, lambda s: s is not None and s.available == 0, 10)
                    await asyncio.sleep(random.uniform(0.3, 1.3))
                    since = time.perf_counter()
                    for interface in TEAM:
                        b.fake.set_member_status(interface, 1, in_call=False)
                    took, age = await _until_routed(a, charnwood_caller, overflowed, since)
                    frees.append(took)
                    ages.append(age)
                    _calm(a, "cbc-general")
                    await _settle(a, charnwood_caller, "queue cbc-general")
                    # baseline: a local overflow at A
                    await asyncio.sleep(random.uniform(0, 1))
                    since = time.perf_counter()
                    for _ in range(HARBOROUGH_PEAK):
                        a.fake.caller_joins("hdc-revenues")
                    took, _ = await _until_routed(
                        a, harborough_caller, lambda summary: LOCAL_ASSIST in summary, since
                    )
                    local.append(took)
                    _calm(a, "hdc-revenues")
                    await _settle(a, harborough_caller, "queue hdc-revenues")
    finally:
        for crm in crms.values():
            await crm.stop()
    print(f"two stacks on loopback, {rounds} rounds\n")
    print("| measure | n | median ms | p99 ms | max ms |\n|---|---:|---:|---:|---:|")
    print(_row("A's peak to the first call overflowed to B", peak))
    print(_row("baseline: A's peak to the first call overflowed to A's own queue", local))
    print(_row("B's advisers free to the first call A overflows to B", frees))
    print(_row("B's snapshot age at A as an overflowed call starts", ages))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    asyncio.run(_run(args.rounds))


if __name__ == "__main__":
    main()
