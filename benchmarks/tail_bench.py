"""Tail latency of AGI command turnaround at a steady call rate, and where the tail comes from.

Run ``python -m benchmarks.tail_bench`` (Linux). It starts a redis-server on a free loopback
port (seeded as :mod:`benchmarks.route_bench` seeds it) and, in turn, the real ``callrouter
serve`` (example plan, that Redis, rehearsal clock at a Tuesday 10:00, JSON logs at ``info`` to a
file, contact records on, the systemd watchdog pinging a socket of this benchmark) pinned to
CPU 0, through :func:`serve_wrapper`, which can switch one source of pauses off per variant:

* ``serve``: as it runs in production;
* ``gc-untuned``: without the collector tuning (``callrouter.service.tune_collector``);
* ``no-refresh``: live state read from Redis once, never refreshed in the background;
* ``no-watcher``: no plan file watcher;
* ``no-records``: contact records off (no facts, no pump);
* ``no-logs``: logs at ``warning`` (no per-call event written);
* ``no-watchdog``: no systemd watchdog pings;
* ``gc=A:B:C``: the collector's thresholds A, B, C in place of serve's (``GC_THRESHOLDS``);
* ``before``: ``serve`` from the ``--before`` checkout (an earlier commit, for a before/after);
* ``bare``: the baseline, a bare ``asyncio.Protocol`` server on uvloop (:class:`BareServer`,
  pinned the same way) sending the same number of commands with no parsing, no decision, no
  logging and nothing in the background: what loopback, the event loop and the machine's
  scheduling give at best, in the same run.

The load generator (this process, uvloop, CPU 1) plays Asterisk at ``--rate`` calls a second,
open loop (a call starts on time whatever the others do): each call is the route entry
(``AGI(agi://host/route,${EXTEN})``: one ``SET VARIABLE``) and then the menu it leads to
(``AGI(agi://host/menu,harborough,main,)``: the guard, the greeting, ``GET DATA``, the caller
presses 1, the destination), as two FastAGI sessions. The **turnaround** of a command is the
time from the moment the generator wrote what the server was waiting for (the environment
block, or the previous reply) to the moment the command's line arrived: the controller's own
latency, loopback included.

Inside the server, the wrapper times every garbage collection (``gc.callbacks``) and every task
step of half a millisecond or more over the measured window, in CPU time (a step that was long
only because the process lost its CPU meanwhile is counted apart as "preempted"). The report
gives the turnaround's p50, p99, p99.9 and max, the collections per generation and their longest
CPU time, the tasks with steps of 1 ms of CPU or more, and how long the server process waited for
a CPU (its run-queue wait from ``/proc/<pid>/schedstat``: time it was ready to run while other
processes had the core, e.g. a neighbour's work on a shared machine). Variants are measured in
interleaved rounds, so a neighbour's load spreads over all of them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from benchmarks import fastagi_bench, route_bench
from emulator.agi import CallerScript, encode_env, env_lines
from tests.support.redis_server import free_port, running_redis

VARIANTS = ("serve", "gc-untuned", "no-refresh", "no-watcher", "no-records", "no-logs", "no-watchdog")
SERVER_CPU, CLIENT_CPU = 0, 1
GC_ENV = "TAIL_BENCH_GC_FILE"
VARIANT_ENV = "TAIL_BENCH_VARIANT"
NICE_ENV = "TAIL_BENCH_NICE"


def _pin(cpu: int) -> None:
    """Pin this process to ``cpu`` and give it the run's niceness (``--nice``; negative: ahead
    of the machine's other work, as ``Nice=`` in a systemd unit would)."""
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setaffinity(0, {cpu})
    nice = int(os.environ.get(NICE_ENV, "0"))
    if nice:
        os.setpriority(os.PRIO_PROCESS, 0, nice)


RECORDS_KEY = "k" * 32


# -- inside the serve process -----------------------------------------------------------------


def _time_collections(out: Path) -> None:
    """Record every collection (generation, seconds, when) and every long task step from now;
    written to ``out`` as JSON when the process exits (SIGTERM: serve drains and returns)."""
    pauses: list[tuple[int, float, float, float]] = []
    steps: list[tuple[str, float, float, float]] = []
    _time_task_steps(steps)
    started: list[float] = [0.0, 0.0]

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[:] = [time.perf_counter(), time.thread_time()]
        else:
            took, cpu = time.perf_counter() - started[0], time.thread_time() - started[1]
            pauses.append((info["generation"], took, cpu, time.time()))

    gc.callbacks.append(callback)

    def write() -> None:
        out.write_text(json.dumps({"pauses": pauses, "steps": steps, "at_exit": time.time()}))

    import atexit

    atexit.register(write)


LONG_STEP_S = 0.0005  # task steps at least this long are recorded (name, seconds, CPU seconds, when)


class _TimedCoroutine:
    """A task's coroutine whose every step (from a resumption to the next suspension) is
    timed: a long step holds up every call on the event loop. Long ones go to ``steps``."""

    __slots__ = ("_coro", "_name", "_steps")

    def __init__(self, coro: Any, steps: list[tuple[str, float, float, float]]) -> None:
        self._coro, self._steps = coro, steps
        self._name = getattr(coro, "__qualname__", type(coro).__name__)

    def _timed(self, step: Callable[..., Any], *args: Any) -> Any:
        started, cpu = time.perf_counter(), time.thread_time()
        try:
            return step(*args)
        finally:
            took = time.perf_counter() - started
            if took >= LONG_STEP_S:  # wall clock; its CPU time tells work from a preemption
                self._steps.append((self._name, took, time.thread_time() - cpu, time.time()))

    def send(self, value: Any) -> Any:
        return self._timed(self._coro.send, value)

    def throw(self, *args: Any) -> Any:
        return self._timed(self._coro.throw, *args)

    def close(self) -> None:
        self._coro.close()

    def __await__(self) -> Any:
        return self

    def __iter__(self) -> Any:
        return self

    def __next__(self) -> Any:
        return self.send(None)


def _time_task_steps(steps: list[tuple[str, float, float, float]]) -> None:
    """Run ``serve`` with every task's steps timed (a task factory set on its loop)."""
    from callrouter import service

    serve = service.serve

    async def timed_serve(*args: Any, **kw: Any) -> int:
        loop = asyncio.get_running_loop()

        def factory(loop: asyncio.AbstractEventLoop, coro: Any, **options: Any) -> asyncio.Task[Any]:
            return asyncio.Task(_TimedCoroutine(coro, steps), loop=loop, **options)  # type: ignore[arg-type]

        loop.set_task_factory(factory)  # type: ignore[arg-type]
        return await serve(*args, **kw)

    service.serve = timed_serve  # type: ignore[assignment]


def _switch_off(variant: str) -> None:
    """Patch ``serve`` so that the variant's source of pauses does not run."""
    from callrouter import service
    from routing.live.source import CachedLiveSource

    if variant == "gc-untuned":
        service.tune_collector = lambda: None  # type: ignore[assignment]
    elif variant.startswith("gc="):  # other thresholds in place of serve's, e.g. gc=2000,10,100
        thresholds = tuple(int(x) for x in variant[3:].split(":"))
        service.tune_collector = lambda: gc.set_threshold(*thresholds)  # type: ignore[assignment]
    elif variant == "no-watcher":

        async def no_watch(*_args: object, **_kw: object) -> None:
            await asyncio.Event().wait()

        service.watch_plan = no_watch  # type: ignore[assignment]
    elif variant == "no-refresh":

        async def once(self: CachedLiveSource, clock: Callable[..., Any]) -> None:
            await self.refresh(clock())  # the copy the calls read, then nothing in the background
            await asyncio.Event().wait()

        CachedLiveSource.run = once  # type: ignore[method-assign]


def serve_wrapper(argv: Sequence[str]) -> None:
    """``callrouter serve`` with the variant's source switched off and collections timed."""
    _pin(SERVER_CPU)
    _switch_off(os.environ.get(VARIANT_ENV, "serve"))
    _time_collections(Path(os.environ[GC_ENV]))
    from callrouter.cli import main as cli

    sys.exit(cli(list(argv)))


# -- the baseline server ----------------------------------------------------------------------

BARE_ROUTE = (b'SET VARIABLE CR_ROUTE "menu|main||harborough|harborough|en||||open||"\n',)
BARE_MENU = (  # as many commands as serve sends for the menu call (the guard, prompts, GET DATA)
    b"SET AUTOHANGUP 30\n", b"STREAM FILE harborough/welcome \"\"\n", b"SET AUTOHANGUP 30\n",
    b"GET DATA harborough/main-menu 5000 1\n", b"SET VARIABLE CR_ROUTE \"queue|revenues\"\n",
    b"SET VARIABLE CR_MENU \"main\"\n", b"SET VARIABLE CR_DONE \"1\"\n",
)  # fmt: skip


class BareServer(asyncio.Protocol):
    """The exchange with nothing behind it: after the block, one canned command per reply."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.commands: tuple[bytes, ...] = ()
        self.step = -1

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\n\n" if self.step < 0 else b"\n")) >= 0:
            if self.step < 0:
                self.commands = BARE_MENU if b"agi_network_script: menu" in self.buffer else BARE_ROUTE
                del self.buffer[: end + 2]
            else:
                del self.buffer[: end + 1]
            self.step += 1
            if self.step >= len(self.commands):
                self.transport.close()
                return
            self.transport.write(self.commands[self.step])


def bare_main(port: int) -> None:
    """The baseline server's process: serve until SIGTERM."""
    _pin(SERVER_CPU)
    import uvloop

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(BareServer, "127.0.0.1", port, backlog=1024)
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        print('{"event": "controller.started"}', flush=True)
        await stop.wait()
        server.close()

    uvloop.run(serve())


def sched_wait_s(pid: int) -> float:
    """Seconds ``pid`` has spent ready to run but waiting for a CPU (``/proc/<pid>/schedstat``)."""
    try:
        with open(f"/proc/{pid}/schedstat") as stat:
            return int(stat.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return float("nan")


# -- the serve process, from the benchmark ------------------------------------------------------


@dataclass
class Serve:
    process: subprocess.Popen[bytes]
    port: int
    gc_file: Path

    def stop(self) -> dict[str, Any]:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        try:
            return cast(dict[str, Any], json.loads(self.gc_file.read_text()))
        except (OSError, ValueError):
            return {"pauses": []}


def _listening(port: int) -> bool:
    """Whether something accepts on the port (the probe closes at once: ``agi.request.bad``)."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return False
    return True


def start_serve(variant: str, redis_url: str, folder: Path, notify: str, before: str) -> Serve:
    port = free_port()
    log = folder / f"serve-{variant}-{port}.log"
    plan = str(Path(before) / "examples" / "plan.yaml") if variant == "before" else str(route_bench.PLAN)
    level = "warning" if variant == "no-logs" else "info"
    args = ["serve", "--plan", plan, "--agi-port", str(port), "--redis", redis_url,
            "--clock-start", "2026-11-24 10:00", "--log-level", level]  # fmt: skip
    env = {**os.environ, VARIANT_ENV: variant, GC_ENV: str(folder / f"gc-{variant}-{port}.json")}
    if variant != "no-records":
        env["CALLROUTER_RECORDS_CALLER_HASH_KEY"] = RECORDS_KEY
    if variant != "no-watchdog":
        env.update({"NOTIFY_SOCKET": notify, "WATCHDOG_USEC": "1000000"})  # a ping every 0.5 s
    cwd = before if variant == "before" else None
    command = [sys.executable, "-m", "benchmarks.tail_bench", "--serve-wrapper", "--", *args]
    if variant == "bare":
        command = [sys.executable, "-m", "benchmarks.tail_bench", "--bare-server", str(port)]
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    deadline = time.monotonic() + 60
    while not _listening(port):  # not its log: at warning (no-logs) it says nothing on start
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            raise RuntimeError(f"serve ({variant}) did not start: see {log}")
        time.sleep(0.1)
    return Serve(process, port, Path(env[GC_ENV]))


# -- load generator -----------------------------------------------------------------------------

REPLIES = {
    b"GET DATA": b"200 result=49\n",  # the caller presses 1 (Asterisk answers the digit's code)
    b"STREAM FILE": b"200 result=0 endpos=8000\n",
    b"SET AUTOHANGUP": b"200 result=0\n",
    b"WAIT FOR DIGIT": b"200 result=49\n",
}
MAX_COMMANDS = 40  # a menu that asked more would be a loop: the session is closed


def _env(route: str, args: Sequence[str]) -> bytes:
    script = CallerScript(dial=fastagi_bench.DIALLED, caller="01632960123")
    pairs = env_lines(script, route, f"agi://127.0.0.1:4573/{route}", "PJSIP/sipp-00000001", "1.1")
    return encode_env(pairs, list(args))


ROUTE_ENV = _env("route", [fastagi_bench.DIALLED])
MENU_ENV = _env("menu", ["harborough", "main", ""])


def _reply(line: bytes) -> bytes:
    for prefix, reply in REPLIES.items():
        if line.startswith(prefix):
            return reply
    return b"200 result=1\n"


class _Session(asyncio.Protocol):
    """One FastAGI session as Asterisk plays it; turnarounds appended to ``out``."""

    def __init__(self, env: bytes, out: list[float], done: asyncio.Future[int]) -> None:
        self.env, self.out, self.done = env, out, done
        self.buffer = b""
        self.sent_at = 0.0
        self.commands = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.sent_at = time.perf_counter()
        self.transport.write(self.env)

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        self.buffer += data
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            if line == b"failure":
                self._finish(RuntimeError("the server sent failure"))
                return
            self.out.append(now - self.sent_at)
            self.commands += 1
            if self.commands > MAX_COMMANDS:
                self.transport.close()
                return
            self.sent_at = time.perf_counter()
            self.transport.write(_reply(line))

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish(exc)

    def _finish(self, exc: BaseException | None) -> None:
        if not self.done.done():
            if exc is None:
                self.done.set_result(self.commands)
            else:
                self.done.set_exception(exc)


async def session(port: int, env: bytes, out: list[float]) -> int:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[int] = loop.create_future()
    await loop.create_connection(lambda: _Session(env, out, done), "127.0.0.1", port)
    async with asyncio.timeout(10):
        return await done


async def call(port: int, out: list[float]) -> None:
    await session(port, ROUTE_ENV, out)
    await session(port, MENU_ENV, out)


async def open_loop(port: int, rate: float, seconds: float, out: list[float]) -> int:
    """Start ``rate`` calls a second for ``seconds``, on schedule; how many failed."""
    loop = asyncio.get_running_loop()
    tasks: list[asyncio.Task[None]] = []
    start = loop.time()
    for n in range(int(rate * seconds)):
        delay = start + n / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(call(port, out)))
    results = await asyncio.gather(*tasks, return_exceptions=True)
    return sum(1 for r in results if isinstance(r, BaseException))


# -- report -------------------------------------------------------------------------------------


@dataclass
class Point:
    variant: str
    round: int
    turnarounds: list[float]
    failed: int
    pauses: list[tuple[int, float]] = field(default_factory=list)  # generation, CPU seconds
    waited_s: float = float("nan")  # the server's run-queue wait over the window
    seconds: float = 1.0
    steps: list[tuple[str, float, float]] = field(default_factory=list)

    def steps_summary(self) -> str:
        """Task steps of 1 ms or more: those that used 1 ms of CPU or more (work), by task,
        and how many others were as long only because the process lost its CPU meanwhile."""
        work: dict[str, list[float]] = {}
        preempted = 0
        for name, took, cpu in self.steps:
            if took < 0.001:
                continue
            if cpu >= 0.001:
                work.setdefault(name, []).append(cpu)
            else:
                preempted += 1
        ranked = sorted(work.items(), key=lambda item: -max(item[1]))
        parts = [f"{name.split('.')[-1]} {len(t)}x max {max(t) * 1e3:.1f} CPU" for name, t in ranked]
        return ", ".join([*parts, f"{preempted} preempted"])

    def cut(self, q: float) -> float:
        ordered = sorted(self.turnarounds)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e3

    def gc_summary(self) -> str:
        parts = []
        for gen in (0, 1, 2):
            times = [d for g, d in self.pauses if g == gen]
            if times:
                parts.append(f"gen{gen} {len(times)}x max {max(times) * 1e3:.2f} CPU")
        return ", ".join(parts) or "none"


def table(points: Sequence[Point]) -> str:
    rows = ["| serve | round | commands | p50 ms | p99 ms | p99.9 ms | max ms | failed | "
            "server's wait for a CPU | collections (ms) | task steps of 1 ms or more (ms) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"]  # fmt: skip
    for p in points:
        cuts = " | ".join(f"{p.cut(q):.2f}" for q in (0.5, 0.99, 0.999))
        rows.append(f"| {p.variant} | {p.round} | {len(p.turnarounds):,} | {cuts} | "
                    f"{max(p.turnarounds) * 1e3:.2f} | {p.failed} | "
                    f"{p.waited_s / p.seconds * 1e3:.1f} ms/s | {p.gc_summary()} | "
                    f"{p.steps_summary()} |")  # fmt: skip
    return "\n".join(rows)


def medians(points: Sequence[Point]) -> str:
    rows = ["| serve | rounds | p50 ms | p99 ms | p99.9 ms | max ms (median of rounds) |",
            "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    by: dict[str, list[Point]] = {}
    for p in points:
        by.setdefault(p.variant, []).append(p)
    for variant, group in by.items():
        med = [statistics.median(f(p) for p in group) for f in (
            lambda p: p.cut(0.5), lambda p: p.cut(0.99), lambda p: p.cut(0.999),
            lambda p: max(p.turnarounds) * 1e3)]  # fmt: skip
        rows.append(f"| {variant} | {len(group)} | " + " | ".join(f"{m:.2f}" for m in med) + " |")
    return "\n".join(rows)


async def run(args: argparse.Namespace, redis_url: str, folder: Path) -> list[Point]:
    notify_path = str(folder / "notify.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(notify_path)
    listener.setblocking(False)
    loop = asyncio.get_running_loop()
    loop.add_reader(listener.fileno(), lambda: listener.recv(4096))  # systemd's side: read, drop
    variants = ["bare", *args.variants, *(["before"] if args.before else [])]
    points: list[Point] = []
    try:
        for index in range(args.rounds):
            for variant in variants:
                serve = await asyncio.to_thread(
                    start_serve, variant, redis_url, folder, notify_path, args.before
                )
                try:
                    await open_loop(serve.port, args.rate, args.warmup, [])
                    out: list[float] = []
                    gc.collect()
                    window, waited = time.time(), sched_wait_s(serve.process.pid)
                    failed = await open_loop(serve.port, args.rate, args.seconds, out)
                    window_end, waited = time.time(), sched_wait_s(serve.process.pid) - waited
                finally:
                    report = await asyncio.to_thread(serve.stop)
                pauses = [(g, c) for g, _d, c, at in report.get("pauses", []) if window <= at <= window_end]
                steps = [(n, d, c) for n, d, c, at in report.get("steps", []) if window <= at <= window_end]
                point = Point(variant, index + 1, out, failed, pauses, waited, window_end - window, steps)
                points.append(point)
                print(table([point]).splitlines()[-1], flush=True)
    finally:
        loop.remove_reader(listener.fileno())
        listener.close()
    return points


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--bare-server"]:
        bare_main(int(argv[1]))
        return
    if argv[:1] == ["--serve-wrapper"]:
        serve_wrapper(argv[2:] if argv[1:2] == ["--"] else argv[1:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=100.0, help="calls a second (each: route + menu)")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per round")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of calls before measuring")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variants", type=lambda s: s.split(","), default=list(VARIANTS),
                        help=f"comma-separated, of {', '.join(VARIANTS)}")  # fmt: skip
    parser.add_argument("--before", default="", help="also serve from this checkout (variant 'before')")
    parser.add_argument("--nice", type=int, default=0,
                        help="niceness of the servers and the load generator (e.g. -5)")  # fmt: skip
    args = parser.parse_args(argv)
    os.environ[NICE_ENV] = str(args.nice)
    _pin(CLIENT_CPU)
    import uvloop

    with running_redis(max_lifetime_s=3600) as server, tempfile.TemporaryDirectory(prefix="tail-") as tmp:
        asyncio.run(route_bench.seed(server.url))
        points = uvloop.run(run(args, server.url, Path(tmp)))
    print(f"\n{args.rate:g} calls/s (route + menu each), {args.seconds:g} s per round, nice {args.nice}; "
          f"load average {os.getloadavg()[0]:.1f} at the end\n")  # fmt: skip
    print(table(points))
    print()
    print(medians(points))


if __name__ == "__main__":
    main()
