"""Benchmark of ``callrouter serve --workers N``: sessions/s of the route entry, N=1 against N.

Run ``python -m benchmarks.workers_bench`` (Linux: CPU time is read from /proc). It starts a
redis-server on a free loopback port (seeded as :mod:`benchmarks.route_bench` seeds it), then,
in turn and in the same run, the real ``callrouter serve`` (example plan, that Redis, rehearsal
clock at a Tuesday 10:00, JSON logs at info to /dev/null, no contact records) as one process
(``--workers 1``: no supervisor) and as a supervisor with ``--workers N``. The load generator
plays :mod:`benchmarks.fastagi_bench`'s route exchange (the same environment block with the
dialled number, one ``SET VARIABLE CR_ROUTE``, close) as a bare protocol on uvloop, ``c``
sessions in flight in ``--clients`` processes of its own (``c`` split between them). Each configuration is
measured ``--rounds`` times, alternating, so a neighbour's load on a shared machine shows as a
spread between rounds rather than as a difference between configurations.

Nothing is pinned: the workers and the load generator share the machine's cores, so on a
machine with as many cores as workers, the generator's own CPU is taken from the workers
(the table shows the CPU seconds each side used per session). After the table the benchmark
works out from those CPU figures what N workers would serve with a core each and the load
elsewhere, and the most these cores can serve with the load generator on them too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from benchmarks import fastagi_bench, route_bench
from tests.support.redis_server import free_port, running_redis

PLAN = route_bench.PLAN


def _cpu_seconds(pid: int) -> float:
    """utime + stime of one process, from /proc (10 ms resolution); 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as found:
            return [int(p) for p in found.read().split()]
    except OSError:
        return []


@dataclass
class Serve:
    """``callrouter serve`` as a process (with its workers, if any)."""

    process: subprocess.Popen[bytes]
    port: int
    workers: int

    def pids(self) -> list[int]:
        return [self.process.pid, *_children(self.process.pid)]

    def cpu_seconds(self) -> float:
        return sum(_cpu_seconds(pid) for pid in self.pids())

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_serve(workers: int, redis_url: str, log: Path) -> Serve:
    port = free_port()
    command = [sys.executable, "-m", "callrouter.cli", "serve", "--plan", str(PLAN), "--agi-port", str(port),
               "--redis", redis_url, "--clock-start", "2026-11-24 10:00", "--workers", str(workers),
               "--log-level", "info"]  # fmt: skip
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while log.read_text().count('"controller.started"') < workers:
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            raise RuntimeError(f"serve --workers {workers} did not start: see {log}")
        time.sleep(0.05)
    return Serve(process, port, workers)


class _Session(asyncio.Protocol):
    """One route session as a bare protocol: the environment block, a reply to each command
    line, done when the server closes. The load generator shares the machine's cores with
    the workers, so it is kept cheaper than :func:`benchmarks.fastagi_bench.one_session`
    (streams); it sends the same bytes."""

    def __init__(self, env: bytes, done: asyncio.Future[None]) -> None:
        self.env, self.done, self.buffer = env, done, b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        transport.write(self.env)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            if line == b"failure":
                self.done.set_exception(RuntimeError("the server turned a session away"))
                self.transport.close()
                return
            self.transport.write(fastagi_bench._reply_to(line))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


def _client(
    port: int, concurrency: int, warm: float, until: float, out: multiprocessing.Queue[ClientResult]
) -> None:
    """One load generator process: ``concurrency`` sessions in flight until ``until`` (wall
    clock); each session's end time and latency, and the CPU seconds this process used
    between ``warm`` and ``until``."""
    import uvloop

    env = fastagi_bench.env_block("route")
    done: list[tuple[float, float]] = []

    async def keep_one() -> None:
        loop = asyncio.get_running_loop()
        while time.time() < until:
            started = time.perf_counter()
            ended = loop.create_future()
            await loop.create_connection(functools.partial(_Session, env, ended), "127.0.0.1", port)
            await ended
            done.append((time.time(), time.perf_counter() - started))

    cpu = [0.0, 0.0]

    async def clock_cpu() -> None:
        await asyncio.sleep(max(0.0, warm - time.time()))
        cpu[0] = time.process_time()
        await asyncio.sleep(max(0.0, until - time.time()))
        cpu[1] = time.process_time()

    async def run() -> None:
        await asyncio.gather(clock_cpu(), *(keep_one() for _ in range(concurrency)))

    uvloop.run(run())
    out.put((done, cpu[1] - cpu[0]))


ClientResult = tuple[list[tuple[float, float]], float]


@dataclass
class Point:
    label: str
    round: int
    sessions: int
    seconds: float
    p50_ms: float
    p99_ms: float
    server_cpu_us: float
    client_cpu_us: float = float("nan")
    loadavg: float = float("nan")

    @property
    def rate(self) -> float:
        return self.sessions / self.seconds


def measure(serve: Serve, label: str, round_: int, args: argparse.Namespace) -> Point:
    """Warm up for half a second, then count the sessions that end in the next ``--duration`` s."""
    context = multiprocessing.get_context("spawn")
    results: multiprocessing.Queue[ClientResult] = context.Queue()
    shares = [
        args.concurrency // args.clients + (i < args.concurrency % args.clients) for i in range(args.clients)
    ]
    warm = time.time() + 1.5  # the client processes are up and warm by then
    until = warm + args.duration
    clients = [context.Process(target=_client, args=(serve.port, c, warm, until, results)) for c in shares]
    for client in clients:
        client.start()
    time.sleep(max(0.0, warm - time.time()))
    cpu_before = serve.cpu_seconds()
    time.sleep(max(0.0, until - time.time()))
    cpu = serve.cpu_seconds() - cpu_before
    reports = [results.get(timeout=60) for _ in clients]
    for client in clients:
        client.join()
    ended = [x for done, _cpu in reports for x in done]
    client_cpu = sum(cpu for _done, cpu in reports)
    kept = [latency for at, latency in ended if warm <= at <= until]
    cuts = statistics.quantiles(kept, n=100)
    per = 1e6 / len(kept)
    return Point(label, round_, len(kept), args.duration, cuts[49] * 1e3, cuts[98] * 1e3, cpu * per,
                 client_cpu * per, os.getloadavg()[0])  # fmt: skip


def table(points: Sequence[Point]) -> str:
    lines = [
        "| serve | round | sessions/s | p50 ms | p99 ms | serve CPU us/session | load generator CPU "
        "us/session | load average |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in points:
        figures = f"{p.rate:,.0f} | {p.p50_ms:.2f} | {p.p99_ms:.2f} | {p.server_cpu_us:.0f}"
        lines.append(f"| {p.label} | {p.round} | {figures} | {p.client_cpu_us:.0f} | {p.loadavg:.1f} |")
    return "\n".join(lines)


def capacity(points: Sequence[Point], workers: int) -> str:
    """What the CPU figures say when the load generator does not share the workers' cores.

    On a machine with no core to spare for the load generator, sessions/s at N workers is
    capped by the cores the generator leaves: ``cores / (serve CPU + generator CPU per
    session)``. With the generator elsewhere (Asterisk on its own machine, as in production)
    N workers serve ``N / (serve CPU per session at N)`` sessions a second."""
    cpu = {
        n: statistics.median(p.server_cpu_us for p in points if (p.label == "--workers 1") == (n == 1))
        for n in (1, workers)
    }
    client = statistics.median(p.client_cpu_us for p in points)
    cores = os.cpu_count() or 1
    alone = 1e6 / cpu[1]
    scaled = workers * 1e6 / cpu[workers]
    shared = cores * 1e6 / (cpu[workers] + client)
    return (
        f"median CPU per session: serve {cpu[1]:.0f} us (1), {cpu[workers]:.0f} us ({workers}); "
        f"load generator {client:.0f} us\n"
        f"one core's worth of serve: {alone:,.0f} sessions/s; {workers} workers each with a core of "
        f"its own (the load elsewhere): {scaled:,.0f} sessions/s, {scaled / alone:.2f}x; on these "
        f"{cores} cores shared with the load generator at most {shared:,.0f} sessions/s "
        f"({shared / alone:.2f}x one core's worth)"
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--workers", type=int, default=2, help="N to compare with one process")
    parser.add_argument("--concurrency", type=int, default=100, help="sessions in flight")
    parser.add_argument("--clients", type=int, default=2, help="load generator processes")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per point")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of each")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    fastagi_bench._raise_fd_limit()
    points: list[Point] = []
    with running_redis(max_lifetime_s=900) as redis, tempfile.TemporaryDirectory() as folder:
        asyncio.run(route_bench.seed(redis.url))
        for round_ in range(1, args.rounds + 1):
            for workers in (1, args.workers):
                serve = start_serve(workers, redis.url, Path(folder) / f"serve-{workers}.log")
                try:
                    points.append(measure(serve, f"--workers {workers}", round_, args))
                finally:
                    serve.stop()
    print(f"route entry, c={args.concurrency}, {args.clients} load generator process(es), "
          f"{args.duration:g} s per point, {os.cpu_count()} CPUs\n")  # fmt: skip
    print(table(points))
    one = statistics.median(p.rate for p in points if p.label == "--workers 1")
    many = statistics.median(p.rate for p in points if p.label != "--workers 1")
    print(f"\nmedian sessions/s: {one:,.0f} (1) vs {many:,.0f} ({args.workers}): {many / one:.2f}x")
    print(capacity(points, args.workers))
    with contextlib.suppress(OSError):
        print(json.dumps({"loadavg": os.getloadavg()}))


if __name__ == "__main__":
    main()
