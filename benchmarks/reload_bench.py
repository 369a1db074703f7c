"""Benchmark: call latency while the controller reloads a large plan, against no reload.

Run ``python -m benchmarks.reload_bench`` (Linux). It writes a large plan (the example plan's
Harborough tenant copied ``--tenants`` times, about 4 KB each: 1,400 copies make 5.7 MB), starts
a redis-server on a free loopback port and the real controller (``callrouter serve``) on that
plan, pinned to CPU 0 with its plan worker (the worst case: one core for both); the emulator's
callers (:func:`emulator.dialplan.place_call`, whole calls: route, then the menu) run in this
process on CPU 1, ``--concurrency`` calls in flight.

With ``--no-redis`` the controller runs without live state (nor audit trail), isolating the
reload from the live-state refresh, whose own cost grows with the number of tenants.

In the same run it measures calls for ``--duration`` seconds with no reload (the baseline),
then, ``--reloads`` times, saves a changed plan, sends SIGHUP and keeps calling until the
controller logs ``plan.retired`` (the new plan in force, the old one freed): every call that
started during a reload counts as "during", split at ``plan.checked`` into the calls while the
worker process checks the plan and those while the controller rebuilds it, swaps it in and
frees the old one. (An older controller has neither: ``--until plan.reloaded``.)

Call latency on a shared machine also carries the machine's own noise; so last, in this
process, a 1 ms ticker on the event loop measures the loop's worst stall while the controller's
part of a reload runs (the worker's answer rebuilt, swapped in, the old plan freed), against
the same ticker idle.
``--source DIR`` runs the controller from another checkout (e.g. the previous release), for a
before/after comparison; its callers and report are this one's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import yaml

from callrouter.service import first_plan, rebuild, retire, settle_memory, short_turns
from emulator.agi import CallerScript
from emulator.dialplan import place_call
from routing.plan_file import read_source
from routing.plan_worker import check_in_worker
from tests.support.redis_server import free_port, running_redis

REPO = Path(__file__).parents[1]
EXAMPLE = REPO / "examples" / "plan.yaml"
HARBOROUGH = "01632960001"
CONTROLLER_CPU, CALLERS_CPU = 0, 1


def large_plan(tenants: int) -> str:
    """The example plan with ``tenants`` more copies of its Harborough tenant, each with its
    own number; a revision comment at the end makes each save different."""
    data = yaml.safe_load(EXAMPLE.read_text())
    model = data["tenants"]["harborough"]
    for i in range(tenants):
        copied = copy.deepcopy(model)
        copied["numbers"] = [f"020 7{i:07d}"]
        data["tenants"][f"council-{i:05d}"] = copied
    return yaml.safe_dump(data, sort_keys=False, width=200)


class Controller:
    """``callrouter serve`` in its own process, its JSON log in a file."""

    def __init__(self, plan: Path, redis_url: str | None, log: Path, source: Path) -> None:
        self.port = free_port()
        self.log = log
        self._read = 0
        self._seen: dict[str, int] = {}
        live = ["--redis", redis_url] if redis_url else ["--no-redis"]
        argv = [sys.executable, "-m", "callrouter.cli", "serve", "--plan", str(plan), "--agi-port",
                str(self.port), "--watch-interval", "3600", "--clock-start", "2026-11-24 10:00",
                "--log-level", "info", *live]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(source)}
        with log.open("w") as out:
            self.process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=source, env=env)
        with contextlib.suppress(AttributeError, OSError):
            os.sched_setaffinity(self.process.pid, {CONTROLLER_CPU})

    def count(self, event: str) -> int:
        """How many times the log has shown ``event`` so far (read incrementally: the callers
        share this process, so it must stay cheap)."""
        with self.log.open("rb") as stream:
            stream.seek(self._read)
            chunk = stream.read()
        complete = chunk.rfind(b"\n") + 1
        self._read += complete
        for line in chunk[:complete].splitlines():
            if b'"event"' in line:
                with contextlib.suppress(ValueError):
                    name = json.loads(line).get("event")
                    self._seen[name] = self._seen.get(name, 0) + 1
        return self._seen.get(event, 0)

    async def wait_for(self, event: str, count: int, within: float) -> None:
        deadline = time.monotonic() + within
        while self.count(event) < count:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"no {event} (see {self.log})")
            await asyncio.sleep(0.05)

    async def reloaded(self, count: int, checked: list[float], until: str = "plan.retired") -> None:
        """Wait for the ``count``-th reload to be over (the replaced plan freed); note when its
        plan.checked event was first seen."""
        while self.count(until) < count:
            if not checked and self.count("plan.checked") >= count:
                checked.append(time.perf_counter())
            if self.process.poll() is not None:
                raise RuntimeError(f"the controller stopped (see {self.log})")
            if self.count("plan.rejected") >= 1:
                raise RuntimeError(f"the plan was rejected (see {self.log})")
            await asyncio.sleep(0.01)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


Sample = tuple[float, float]  # (start, latency) in seconds


async def _caller(port: int, stop: asyncio.Event, samples: list[Sample], number: int) -> None:
    while not stop.is_set():
        started = time.perf_counter()
        record = await place_call("127.0.0.1", port, CallerScript(dial=HARBOROUGH, steps=[]), number=number)
        if not record.steps or not record.steps[0].startswith("route"):
            raise RuntimeError(f"call not routed: {record.ended}")
        samples.append((started, time.perf_counter() - started))


async def calls_while(port: int, concurrency: int, until: asyncio.Future[None]) -> list[Sample]:
    """Keep ``concurrency`` calls in flight until ``until`` is done."""
    stop = asyncio.Event()
    samples: list[Sample] = []
    callers = [asyncio.create_task(_caller(port, stop, samples, n + 1)) for n in range(concurrency)]
    try:
        await until
    finally:
        stop.set()
        await asyncio.gather(*callers)
    return samples


def row(label: str, latencies: Sequence[float]) -> str:
    cuts = statistics.quantiles(latencies, n=100)
    return (f"| {label} | {len(latencies):,} | {cuts[49] * 1e3:.1f} | {cuts[98] * 1e3:.1f} | "
            f"{max(latencies) * 1e3:.1f} |")  # fmt: skip


async def run(args: argparse.Namespace, workdir: Path, redis_url: str) -> str:
    plan = workdir / "plan.yaml"
    text = large_plan(args.tenants)
    plan.write_text(text)
    redis = None if args.no_redis else redis_url
    controller = Controller(plan, redis, workdir / "controller.log", Path(args.source))
    try:
        await controller.wait_for("controller.started", 1, within=600)
        await calls_while(controller.port, args.concurrency, asyncio.ensure_future(asyncio.sleep(1)))
        steady = await calls_while(
            controller.port, args.concurrency, asyncio.ensure_future(asyncio.sleep(args.duration))
        )
        during: list[float] = []
        checking: list[float] = []  # while the worker process checks the plan
        building: list[float] = []  # while the controller rebuilds it, swaps it in and frees the old one
        reload_seconds: list[float] = []
        for revision in range(1, args.reloads + 1):
            plan.write_text(f"{text}# revision {revision}\n")
            started = time.perf_counter()
            controller.process.send_signal(signal.SIGHUP)
            checked: list[float] = []
            done = asyncio.ensure_future(controller.reloaded(revision, checked, args.until))
            samples = await calls_while(controller.port, args.concurrency, done)
            reload_seconds.append(time.perf_counter() - started)
            during += [latency for start, latency in samples if start >= started]
            if checked:  # a controller without the plan.checked event (an older release) has one phase
                checking += [latency for start, latency in samples if started <= start < checked[0]]
                building += [latency for start, latency in samples if start >= checked[0]]
            await asyncio.sleep(1)
    finally:
        controller.stop()
    size = len(text.encode()) / 1e6
    lines = [
        f"plan: {size:.1f} MB, {args.tenants + 2:,} tenants; {args.concurrency} calls in flight; "
        f"{'no live state' if args.no_redis else 'live state from Redis'}; "
        f"reload took {statistics.mean(reload_seconds):.1f} s on average ({args.reloads} reloads)",
        "",
        "| calls | count | p50 ms | p99 ms | max ms |",
        "|---|---:|---:|---:|---:|",
        row("no reload", [latency for _, latency in steady]),
        row("during a reload", during),
        *([row("... while the worker checks the plan", checking)] if checking else []),
        *([row("... while the controller builds, swaps in and frees", building)] if building else []),
    ]
    return "\n".join(lines)


async def _ticks(lags: list[float], stop: asyncio.Event) -> None:
    """How late each 1 ms sleep wakes up: the event loop's stalls."""
    while not stop.is_set():
        asked = time.perf_counter()
        await asyncio.sleep(0.001)
        lags.append(time.perf_counter() - asked - 0.001)


def _worst(lags: list[float]) -> str:
    return f"{max(lags) * 1e3:.1f} ms (p99 {statistics.quantiles(lags, n=100)[98] * 1e3:.2f} ms)"


async def loop_stalls(plan: Path, rounds: int) -> str:
    """The controller's part of a reload, in this process with a 1 ms ticker on the loop: the
    worker's answer rebuilt, swapped in, the old plan freed; against the same ticker idle."""
    holder, _ = first_plan(plan)
    settle_memory()
    checked = await check_in_worker(read_source(plan))
    idle: list[float] = []
    busy: list[float] = []
    took: list[float] = []
    for _ in range(rounds):
        stop = asyncio.Event()
        ticker = asyncio.create_task(_ticks(idle, stop))
        await asyncio.sleep(1)
        stop.set()
        await ticker
        stop = asyncio.Event()
        ticker = asyncio.create_task(_ticks(busy, stop))
        started = time.perf_counter()
        with short_turns():
            result, compiled = await rebuild(checked)
        replaced = [holder.current]
        holder.take(result, compiled)
        settle_memory()
        await retire(replaced)
        took.append(time.perf_counter() - started)
        stop.set()
        await ticker
    return (
        f"event loop stalls in this process, {rounds} rounds: idle, worst {_worst(idle)}; rebuilding, "
        f"swapping in and freeing ({statistics.mean(took):.2f} s each), worst {_worst(busy)}"
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tenants", type=int, default=1400, help="copies of the example tenant")
    parser.add_argument("--concurrency", type=int, default=4, help="calls in flight")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of calls with no reload")
    parser.add_argument("--reloads", type=int, default=3)
    parser.add_argument("--source", default=str(REPO), help="the checkout to run the controller from")
    parser.add_argument("--until", default="plan.retired", help="the log event that ends a reload")
    parser.add_argument(
        "--no-redis",
        action="store_true",
        help="run the controller without live state (and audit): with a large plan, the live-state "
        "refresh every 0.25 s is itself a stall that hides the reload's",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setaffinity(0, {CALLERS_CPU})
    with tempfile.TemporaryDirectory() as workdir, running_redis(max_lifetime_s=1800) as redis:
        print(asyncio.run(run(args, Path(workdir), redis.url)))
        print()
        plan = Path(workdir) / "plan.yaml"
        print(asyncio.run(loop_stalls(plan, args.reloads)))


if __name__ == "__main__":
    main()
