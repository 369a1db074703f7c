"""Benchmark of the ``route`` entry: the production handler making the real decision.

Run ``python -m benchmarks.route_bench``. It starts a redis-server on a free loopback port,
then runs :mod:`benchmarks.fastagi_bench` with this module's handler in place of the standard
session, side by side in the same run with bare asyncio servers (streams, and a bare
``asyncio.Protocol``, each on asyncio and on uvloop) doing the same exchange
(``--exchange route``: the environment block with the dialled number as ``agi_arg_1``, as the
dialplan calls ``AGI(agi://host/route,${EXTEN})``, one ``SET VARIABLE CR_ROUTE``, close). The
handler is the controller's ``route`` over the example plan with live state cached from that
Redis (as ``callrouter serve`` runs it), logging the ``call.routed`` event of every call
(``--log-level info``).

The same run measures the handler twice: without contact records, then as ``serve`` runs it
with records (``route_with_records``: every fact into an in-memory
:class:`records.builder.RecordBuilder`, its due records handed to a sink once a second; each
call gets its own Linkedid, as on Asterisk), then a third time with the fact journal on too
(``route_with_journal``: every fact also written to a :class:`records.journal.FactJournal` in a
temporary folder, as ``serve --records-journal`` does).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from redis.asyncio import Redis

from benchmarks import fastagi_bench
from ivr.controller import Controller, NoLiveState, PlanHolder
from ivr.fastagi import AgiChannel, AgiRequest
from records import facts
from records.builder import RecordBuilder
from records.journal import FactJournal
from records.outbox import MemorySink, RecordPump
from routing.core.decide import Call, decide, describe
from routing.core.live import NO_TOGGLES, UNKNOWN_LIVE_STATE, QueueSnapshot
from routing.live.source import CachedLiveSource
from routing.live.store import snapshot_json
from routing.redis_keys import KEYS
from tests.support.redis_server import running_redis

PLAN = Path(__file__).parents[1] / "examples" / "plan.yaml"
REDIS_ENV = "CALLROUTER_BENCH_REDIS"
_controller: Controller | None = None


_tasks: set[asyncio.Task[None]] = set()


def _controller_for_this_process() -> Controller:
    """The controller as ``callrouter serve`` builds it: live state cached from Redis."""
    holder = PlanHolder.load(PLAN)
    url = os.environ.get(REDIS_ENV)
    if not url:
        return Controller(holder, NoLiveState(), clock=_open_hours_clock)
    cached = CachedLiveSource(Redis.from_url(url), lambda: holder.current)
    task = asyncio.get_running_loop().create_task(cached.run(_open_hours_clock))
    _tasks.add(task)
    return Controller(holder, cached, clock=_open_hours_clock)


TUESDAY_10AM = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def _open_hours_clock() -> datetime:
    """A Tuesday 10:00 in London, so every call takes the full open-hours path."""
    return TUESDAY_10AM


async def prepare() -> None:
    """Build the controller before the first call (the benchmark server then freezes what is
    alive, as ``serve`` does once started)."""
    global _controller  # noqa: PLW0603 - built once per server process
    if _controller is None:
        _controller = _controller_for_this_process()


async def route(channel: AgiChannel, request: AgiRequest) -> None:
    """The production ``route`` handler (the dialled number is the block's ``agi_arg_1``)."""
    global _controller  # noqa: PLW0603 - built once per server process
    if _controller is None:
        _controller = _controller_for_this_process()
    await _controller.route(channel, request)


_recording: tuple[Controller, RecordPump] | None = None
_calls = itertools.count(1)


async def route_with_records(channel: AgiChannel, request: AgiRequest) -> None:
    """The same handler with contact records on, as ``serve`` wires them."""
    global _recording  # noqa: PLW0603 - built once per server process
    if _recording is None:
        controller = _controller_for_this_process()
        pump = RecordPump(RecordBuilder(controller.plans.current.plan.centre, b"k" * 32), MemorySink())
        controller.facts = pump.fact
        task = asyncio.get_running_loop().create_task(pump.run())
        _tasks.add(task)
        _recording = (controller, pump)
    call = dataclasses.replace(request, uniqueid=f"1795533300.{next(_calls)}")
    await _recording[0].route(channel, call)


_journalling: tuple[Controller, RecordPump] | None = None
JOURNAL_ENV = "ROUTE_BENCH_JOURNAL"


async def route_with_journal(channel: AgiChannel, request: AgiRequest) -> None:
    """The same handler with contact records and the fact journal on (``--records-journal``)."""
    global _journalling  # noqa: PLW0603 - built once per server process
    if _journalling is None:
        controller = _controller_for_this_process()
        journal = FactJournal(Path(os.environ[JOURNAL_ENV]) / str(os.getpid()), f"bench:{os.getpid()}")
        builder = RecordBuilder(controller.plans.current.plan.centre, b"k" * 32)
        pump = RecordPump(builder, MemorySink(), journal=journal)
        controller.facts = pump.fact
        task = asyncio.get_running_loop().create_task(pump.run())
        _tasks.add(task)
        _journalling = (controller, pump)
    call = dataclasses.replace(request, uniqueid=f"1795533300.{next(_calls)}")
    await _journalling[0].route(channel, call)


async def seed(url: str) -> None:
    """Live state as a busy morning would leave it: a published partner snapshot."""
    redis = Redis.from_url(url)
    partner = QueueSnapshot("harborough", 1, 20, 3, 2, TUESDAY_10AM)
    await redis.set(KEYS.centre_snapshot("harborough"), snapshot_json(partner))
    await redis.aclose()


def facts_cost(
    calls: int = 50_000, journal: Path | None = None, *, language: bool = True
) -> tuple[float, float, float]:
    """In-process, the route's facts alone: us per call into a builder, and into a no-op sink.

    What ``route`` reports per call on the example plan (the arrival, the call's language, the
    decision, the announcement heard), each call under its own Linkedid, ``due()`` once per
    1,000 calls. ``language=False``: without the language fact (as before it existed)."""
    holder = PlanHolder.load(PLAN)
    plan = holder.current
    decision = decide(Call(fastagi_bench.DIALLED, caller="01632960123"), plan, UNKNOWN_LIVE_STATE,
                      NO_TOGGLES, _open_hours_clock())  # fmt: skip
    destination = describe(decision.destination)

    def run(sink: Callable[[facts.IvrFact], None], tick: Callable[[float], object]) -> float:
        started = time.perf_counter()
        for n in range(calls):
            call_id, at = f"1795533300.{n}", 1795533300.0 + n / 50
            sink(facts.CallArrived(call_id, at, fastagi_bench.DIALLED, "01632960123", decision.tenant))
            if language:
                sink(facts.LanguageChosen(call_id, at, decision.language, "single"))
            sink(facts.route_decided(call_id, at, decision, destination))
            for item in decision.prelude:
                sink(facts.AnnouncementPlayed(call_id, at, item.prompt, False))
            if n % 1000 == 999:
                tick(at)
        return (time.perf_counter() - started) / calls * 1e6

    baseline = run(lambda _fact: None, lambda _at: None)
    pump = RecordPump(RecordBuilder(plan.plan.centre, b"k" * 32), MemorySink())
    with_records = run(pump.fact, pump.builder.due)
    if journal is None:
        return baseline, with_records, float("nan")
    journalled = RecordPump(
        RecordBuilder(plan.plan.centre, b"k" * 32), MemorySink(), journal=FactJournal(journal, "bench")
    )
    return baseline, with_records, run(journalled.fact, journalled.builder.due)


def main() -> None:
    extra = sys.argv[1:] or ["--duration", "3", "--idle", "0", "--uvloop"]
    route_only = "--route-only" in extra  # the route entry and its baselines, no records runs
    extra = [arg for arg in extra if arg != "--route-only"]
    with running_redis(max_lifetime_s=900) as server:
        asyncio.run(seed(server.url))
        os.environ[REDIS_ENV] = server.url
        fastagi_bench.main(
            ["--handler", "benchmarks.route_bench:route", "--log-level", "info", "--exchange", "route",
             "--baselines", "--panoramisk", *extra]
        )  # fmt: skip
        if route_only:
            return
        folder = Path(tempfile.mkdtemp(prefix="route-bench-journal-"))
        os.environ[JOURNAL_ENV] = str(folder)
        baseline, with_records, with_journal = facts_cost(journal=folder / "in-process")
        print(
            f"\nThe route's facts alone, in-process: {with_records:.1f} us per call into the builder, "
            f"{with_journal:.1f} us with the fact journal too "
            f"({baseline:.1f} us building the same facts for a no-op sink)"
        )
        print("\nWith contact records (facts into the builder, due records to a sink each second):")
        fastagi_bench.main(
            ["--handler", "benchmarks.route_bench:route_with_records", "--log-level", "info",
             "--exchange", "route", *extra]
        )  # fmt: skip
        print("\nWith contact records and the fact journal (every fact also written to a local file):")
        fastagi_bench.main(
            ["--handler", "benchmarks.route_bench:route_with_journal", "--log-level", "info",
             "--exchange", "route", *extra]
        )  # fmt: skip
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
