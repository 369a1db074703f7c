"""What the metrics cost a call: the route entry with and without them, side by side in one run.

Run ``python -m benchmarks.metrics_bench``. It measures, alternating so that drift on a shared
machine falls on both alike:

1. in-process, per call, the two metric updates ``route`` makes (``callrouter_calls_routed``
   and ``callrouter_decision_seconds``): nothing; the label children cached
   (:class:`routing.metrics.RoutedCalls`, as the controller does); ``.labels(...)`` each time;
2. ``render()`` (one ``/metrics`` scrape) with 40 tenants' worth of children;
3. the route entry of :mod:`benchmarks.route_bench` over the wire (:mod:`benchmarks.fastagi_bench`,
   live state cached from a real Redis): without metrics, with them, and with them while the ops
   listener is scraped ten times a second over HTTP (a hundred times Prometheus's usual rate).
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
import urllib.request
from collections.abc import Callable

from benchmarks import fastagi_bench, route_bench
from ivr.controller import Controller
from ivr.fastagi import AgiChannel, AgiRequest
from routing import metrics
from routing.core.plan import MenuDest, QueueDest
from tests.support.redis_server import free_port, running_redis

OPS_PORT_ENV = "CALLROUTER_BENCH_OPS_PORT"
_controllers: dict[str, Controller] = {}
_ops: list[object] = []


async def _run(kind: str, channel: AgiChannel, request: AgiRequest) -> None:
    controller = _controllers.get(kind)
    if controller is None:
        controller = _controllers[kind] = route_bench._controller_for_this_process()
        if kind == "unmetered":
            controller.metrics = None
        if kind == "scraped":
            from callrouter.ops import OpsListener, Readiness

            ops = OpsListener("127.0.0.1", int(os.environ[OPS_PORT_ENV]), Readiness({"up": True}))
            await ops.start()
            _ops.append(ops)
    await controller.route(channel, request)


async def route_unmetered(channel: AgiChannel, request: AgiRequest) -> None:
    await _run("unmetered", channel, request)


async def route_metered(channel: AgiChannel, request: AgiRequest) -> None:
    await _run("metered", channel, request)


async def route_scraped(channel: AgiChannel, request: AgiRequest) -> None:
    await _run("scraped", channel, request)


def per_call_us(calls: int = 200_000, rounds: int = 5) -> dict[str, float]:
    """Microseconds per call of the two updates, best of ``rounds`` (alternated)."""
    tenants = [f"council{n}" for n in range(8)]
    dests = [QueueDest(type="queue", queue="q"), MenuDest(type="menu", menu="main")]
    cached = metrics.RoutedCalls()

    def nothing(tenant: str, dest: object) -> None:
        return None

    def with_cache(tenant: str, dest: object) -> None:
        cached.decided("route", 0.0002)
        cached.routed(tenant, dest, "open")

    def uncached(tenant: str, dest: object) -> None:
        metrics.DECISION_SECONDS.labels("route").observe(0.0002)
        metrics.CALLS_ROUTED.labels(tenant, metrics.destination_kind(dest), "open").inc()

    ways: dict[str, Callable[[str, object], None]] = {
        "none": nothing, "cached children": with_cache, ".labels() each call": uncached,
    }  # fmt: skip
    best = dict.fromkeys(ways, float("inf"))
    for _ in range(rounds):
        for name, way in ways.items():
            started = time.perf_counter()
            for n in range(calls):
                way(tenants[n & 7], dests[n & 1])
            best[name] = min(best[name], (time.perf_counter() - started) / calls * 1e6)
    return best


def render_ms(tenants: int = 40, rounds: int = 50) -> tuple[float, int]:
    """One scrape's render, with ``tenants`` councils each routed to two kinds in two states."""
    routed = metrics.RoutedCalls()
    for n in range(tenants):
        for dest in (QueueDest(type="queue", queue="q"), MenuDest(type="menu", menu="main")):
            for state in ("open", "closed"):
                routed.routed(f"bench{n}", dest, state)
    best, size = float("inf"), 0
    for _ in range(rounds):
        started = time.perf_counter()
        body, _ = metrics.render()
        best, size = min(best, time.perf_counter() - started), len(body)
    return best * 1000, size


def _scrape_forever(port: int, stop: threading.Event, every_s: float, done: list[int]) -> None:
    while not stop.wait(every_s):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:
                answer.read()
                done.append(1)
        except OSError:
            continue  # the server process is not up yet, or between points


def wire(extra: list[str], rounds: int) -> None:
    """The route entry over the wire, without then with the metrics, then scraped; ``rounds`` times."""
    for n in range(rounds):
        for label, handler in (("without metrics", "route_unmetered"), ("with metrics", "route_metered")):
            print(f"\nRound {n + 1}, route entry {label}:", flush=True)
            fastagi_bench.main(["--handler", f"benchmarks.metrics_bench:{handler}", "--log-level", "info",
                                "--exchange", "route", *extra])  # fmt: skip
        port = free_port()
        os.environ[OPS_PORT_ENV] = str(port)
        stop, done = threading.Event(), []
        scraper = threading.Thread(target=_scrape_forever, args=(port, stop, 0.1, done), daemon=True)
        scraper.start()
        print(f"\nRound {n + 1}, route entry with metrics, /metrics scraped every 0.1 s:", flush=True)
        try:
            fastagi_bench.main(["--handler", "benchmarks.metrics_bench:route_scraped", "--log-level", "info",
                                "--exchange", "route", *extra])  # fmt: skip
        finally:
            stop.set()
            scraper.join()
        print(f"({len(done)} scrapes answered)")


def main() -> None:
    extra = sys.argv[1:] or ["--duration", "3", "--idle", "0", "--concurrency", "10,100"]
    costs = per_call_us()
    print("Per call, in-process, the route's two metric updates (best of 5 x 200,000):")
    for name, us in costs.items():
        print(f"  {name}: {us:.3f} us")
    took, size = render_ms()
    print(f"render() of /metrics with 40 tenants' children: {took:.2f} ms, {size:,} bytes")
    with running_redis(max_lifetime_s=900) as server:
        asyncio.run(route_bench.seed(server.url))
        os.environ[route_bench.REDIS_ENV] = server.url
        wire(extra, rounds=2)


if __name__ == "__main__":
    main()
