"""FastAGI server benchmark: our FastAgiServer against a bare asyncio streams server.

Run ``python -m benchmarks.fastagi_bench`` (Linux: CPU time and RSS are read from /proc).

Each server runs in its own process pinned to CPU 0; the load generator (a lean client playing
Asterisk, with the emulator's environment block) runs in this process on CPU 1. The standard
session is the environment block, ANSWER, GET DATA, SET VARIABLE x3, close. For each
concurrency the generator keeps ``c`` sessions in flight for ``--duration`` seconds and reports
sessions/s, latency p50/p99 (connect to close) and the server's CPU time per session. The idle
test opens ``--idle`` sessions that stop at GET DATA (no reply) and reads the server's RSS.

``--handler module:function`` plugs another handler into our server (it must do the same
exchange for the figures to compare); the bare server always does the standard exchange.
``--guard-baseline`` adds our server with the step guard off (no ``SET AUTOHANGUP`` before
GET DATA), side by side in the same run: the cost of bounding a hung controller.
``--log-to pipe`` writes the server's log lines to a pipe another process drains (as a
service's stdout reaches journald) instead of ``/dev/null``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import importlib
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TextIO

from callrouter.logs import configure_logging
from emulator.agi import CallerScript, encode_env, env_lines
from ivr.fastagi import AgiChannel, AgiRequest, FastAgiServer, ServerConfig
from ivr.fastagi.server import DEFAULT_GUARD

STANDARD_REPLIES = {
    b"ANSWER": b"200 result=0\n",
    b"GET DATA": b"200 result=1\n",
    b"SET AUTOHANGUP": b"200 result=0\n",
}
DEFAULT_REPLY = b"200 result=1\n"
SERVER_CPU, CLIENT_CPU = 0, 1


async def standard_session(channel: AgiChannel, request: AgiRequest) -> None:
    """The benchmark exchange: ANSWER, GET DATA, SET VARIABLE x3."""
    await channel.answer()
    digits, _ = await channel.get_data("menu-main", 5000, 1)
    await channel.set_variable("ROUTE", "revenues")
    await channel.set_variable("MENU_CHOICE", digits)
    await channel.set_variable("TENANT", request.query.get("tenant", ""))


# -- servers (child process) ------------------------------------------------------------------

# What the bare servers send after the environment block, per ``--exchange``: the standard
# session, or what the production ``route`` handler sends on the example plan.
BARE_COMMANDS = {
    "standard": (
        b"ANSWER\n",
        b"GET DATA menu-main 5000 1\n",
        b'SET VARIABLE ROUTE "x"\n',
        b'SET VARIABLE MENU_CHOICE "x"\n',
        b'SET VARIABLE TENANT "x"\n',
    ),
    "route": (
        b'SET VARIABLE CR_ROUTE "menu|main||harborough|harborough|en||||open|'
        b'harborough/bin-collection-change:skip|"\n',
    ),
}


ClientCallback = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def _bare_streams(commands: Sequence[bytes]) -> ClientCallback:
    """A plain asyncio streams FastAGI server: read the block, send each command, read its reply."""

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\n\n")
            for line in commands:
                writer.write(line)
                await reader.readline()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    return session


class _BareProtocol(asyncio.Protocol):
    """The same exchange as :func:`_bare_streams` as a bare ``asyncio.Protocol``: no task, no
    parsing, the least any asyncio FastAGI server can do."""

    def __init__(self, commands: Sequence[bytes]) -> None:
        self.commands = commands
        self.buffer = bytearray()
        self.step = -1  # -1: reading the environment block
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer += data
        while True:
            sep = b"\n\n" if self.step < 0 else b"\n"
            end = self.buffer.find(sep)
            if end < 0:
                return
            del self.buffer[: end + len(sep)]
            self.step += 1
            if self.step >= len(self.commands):
                self.transport.close()
                return
            self.transport.write(self.commands[self.step])


PANORAMISK_REDIS_ENV = "CALLROUTER_BENCH_REDIS"
PANORAMISK_KEY = "callrouter:bench:panoramisk"


async def _panoramisk_app(commands: Sequence[bytes]) -> ClientCallback:
    """panoramisk 1.4's FastAGI ``Application`` with a handler that makes one Redis round trip
    (a GET, as a router reading live state would) and then sends the exchange's commands: the
    "bare panoramisk-with-Redis" baseline. Its per-call log lines are filtered (its logger at
    ``warning``): the baseline does no logging, the harder one to beat."""
    import logging

    from panoramisk.fast_agi import Application, Request
    from redis.asyncio import Redis

    logging.getLogger("panoramisk").setLevel(logging.WARNING)
    redis = Redis.from_url(os.environ[PANORAMISK_REDIS_ENV])
    await redis.set(PANORAMISK_KEY, b"x" * 64)
    texts = [line.decode().rstrip("\n") for line in commands]

    async def route(request: Request) -> None:
        await redis.get(PANORAMISK_KEY)
        for text in texts:
            await request.send_command(text)

    app = Application(loop=asyncio.get_running_loop())
    app.add_route("route?tenant=harborough", route)
    return app.handler  # type: ignore[no-any-return]


async def _settle_as_serve_does(handler_spec: str) -> None:
    """What ``callrouter serve`` does once started: the handler's module builds what it holds
    (``prepare()``, if it has one: the plan, the controller), then the objects alive are frozen
    out of the collector's sight and, where the code has it, the collector tuned
    (``callrouter.service.settle_memory`` and ``tune_collector``)."""
    from callrouter import service

    prepare = getattr(importlib.import_module(handler_spec.partition(":")[0]), "prepare", None)
    if prepare is not None:
        await prepare()
    service.settle_memory()
    tune = getattr(service, "tune_collector", None)  # absent in code from before it
    if tune is not None:
        tune()


def _load_handler(spec: str) -> object:
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


async def _serve(kind: str, handler_spec: str, exchange: str) -> None:
    commands = BARE_COMMANDS[exchange]
    loop = asyncio.get_running_loop()
    if kind == "bare":
        server = await asyncio.start_server(_bare_streams(commands), "127.0.0.1", 0, backlog=4096)
        port = server.sockets[0].getsockname()[1]
    elif kind == "panoramisk":
        handler = await _panoramisk_app(commands)
        server = await asyncio.start_server(handler, "127.0.0.1", 0, backlog=4096)
        port = server.sockets[0].getsockname()[1]
    elif kind == "bare-protocol":
        server = await loop.create_server(lambda: _BareProtocol(commands), "127.0.0.1", 0, backlog=4096)
        port = server.sockets[0].getsockname()[1]
    else:
        # One peer (the load generator) opens every connection, the idle test 500 at a time:
        # the caps are raised so that nothing is turned away (the checks still run each time).
        # "ours-unguarded" is the same server with the step guard off (the guard's baseline).
        config = ServerConfig(
            port=0,
            backlog=4096,
            max_sessions=50_000,
            max_sessions_per_peer=50_000,
            max_pending=1024,
            step_guard=None if kind == "ours-unguarded" else DEFAULT_GUARD,
        )
        ours = FastAgiServer(config)
        ours.register("route", _load_handler(handler_spec))  # type: ignore[arg-type]
        await ours.start()
        port = ours.port
        await _settle_as_serve_does(handler_spec)
    print(json.dumps({"port": port}), flush=True)
    await loop.run_in_executor(None, sys.stdin.read)


def _log_stream(where: str) -> TextIO:
    """The server's log stream: ``/dev/null``, or (``pipe``) a pipe drained by another process
    (``cat`` to ``/dev/null``), as a service's stdout reaches journald; it ends with the server."""
    if where == "pipe":
        drain = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
        assert drain.stdin is not None
        _DRAINS.append(drain)
        return io.TextIOWrapper(drain.stdin)  # buffered, as sys.stdout is on a pipe
    return open(os.devnull, "w")


_DRAINS: list[subprocess.Popen[bytes]] = []


def serve_main(args: argparse.Namespace) -> None:
    """Entry point of the server process: print the port, serve until stdin closes
    (``--profile``: a file to write the server's cProfile statistics to, when it stops)."""
    kind, loop, profile = args.serve, args.server_loop, args.profile
    _raise_fd_limit()
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setaffinity(0, {SERVER_CPU})
    configure_logging(level=args.log_level, stream=_log_stream(args.log_to))
    profiler = cProfile.Profile() if profile else None
    if profiler is not None:
        profiler.enable()
    if loop == "uvloop":
        import uvloop

        uvloop.run(_serve(kind, args.handler, args.exchange))
    else:
        asyncio.run(_serve(kind, args.handler, args.exchange))
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(f"{profile}.{kind}.{loop}.pstats")


# -- measurements of the server process -------------------------------------------------------

# utime and stime in /proc/PID/stat (after the command); ``--user-cpu``: utime alone. The system
# time includes interrupt work the kernel charges to whatever runs when it arrives: on a server
# busy all the time, the loopback's; on one idle at times, partly the idle task's. A change that
# makes the server idle at times can then lower its figure by more than the change itself.
CPU_FIELDS: tuple[int, ...] = (11, 12)


@dataclass
class ServerProcess:
    process: subprocess.Popen[str]
    port: int

    def cpu_seconds(self) -> float:
        """utime + stime of the server process (``--user-cpu``: utime), from /proc (10 ms
        resolution)."""
        with open(f"/proc/{self.process.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return sum(int(fields[i]) for i in CPU_FIELDS) / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> float:
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_server(kind: str, args: argparse.Namespace, loop: str) -> ServerProcess:
    """The server process; ``ours-before`` is our server from the ``--before`` checkout (its
    own code, this benchmark's harness copied over it), for a before/after in the same run."""
    cwd = None
    if kind == "ours-before":
        cwd = args.before
        kind = "ours"
    command = [sys.executable, "-m", "benchmarks.fastagi_bench", "--serve", kind]
    command += ["--handler", args.handler, "--server-loop", loop, "--log-level", args.log_level]
    command += ["--log-to", args.log_to, "--exchange", args.exchange]
    if args.profile:
        command += ["--profile", args.profile]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=cwd)
    assert process.stdout is not None
    port = json.loads(process.stdout.readline())["port"]
    return ServerProcess(process, port)


# -- load generator (this process) ------------------------------------------------------------


DIALLED = "01632960001"


def env_block(exchange: str = "standard") -> bytes:
    """The emulator's PJSIP block. For the ``route`` exchange its argument is the dialled
    number, as the dialplan calls it (``AGI(agi://host/route,${EXTEN})``)."""
    script = CallerScript(dial=DIALLED, caller="01632960123")
    net = "route?tenant=harborough"
    pairs = env_lines(script, net, f"agi://127.0.0.1:4573/{net}", "PJSIP/sipp-00000001", "1.1")
    return encode_env(pairs, [DIALLED] if exchange == "route" else ["menu-main"])


ENV = env_block()


def _reply_to(line: bytes) -> bytes:
    for prefix, reply in STANDARD_REPLIES.items():
        if line.startswith(prefix):
            return reply
    return DEFAULT_REPLY


async def one_session(port: int) -> float:
    """Play one standard session; return its latency in seconds."""
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(ENV)
    while line := await reader.readline():
        if line == b"failure\n":
            raise RuntimeError("the server turned a session away: the figures would be wrong")
        writer.write(_reply_to(line))
    writer.close()
    return time.perf_counter() - started


@dataclass
class Point:
    label: str
    concurrency: int
    sessions: int
    seconds: float
    p50_ms: float
    p99_ms: float
    cpu_us: float

    @property
    def rate(self) -> float:
        return self.sessions / self.seconds


async def _worker(port: int, until: float, latencies: list[float]) -> None:
    while time.perf_counter() < until:
        latencies.append(await one_session(port))


async def measure(server: ServerProcess, label: str, concurrency: int, duration: float) -> Point:
    """Warm up, then keep ``concurrency`` sessions in flight for ``duration`` seconds."""
    warm_until = time.perf_counter() + min(0.5, duration / 4)
    await asyncio.gather(*(_worker(server.port, warm_until, []) for _ in range(concurrency)))
    latencies: list[float] = []
    cpu_before, started = server.cpu_seconds(), time.perf_counter()
    until = started + duration
    await asyncio.gather(*(_worker(server.port, until, latencies) for _ in range(concurrency)))
    elapsed, cpu = time.perf_counter() - started, server.cpu_seconds() - cpu_before
    cuts = statistics.quantiles(latencies, n=100)
    return Point(label, concurrency, len(latencies), elapsed, cuts[49] * 1e3, cuts[98] * 1e3,
                 cpu / len(latencies) * 1e6)  # fmt: skip


async def _idle_session(port: int, parked: list[asyncio.StreamWriter]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(ENV)
    while (line := await reader.readline()) and not line.startswith(b"GET DATA"):
        writer.write(_reply_to(line))
    parked.append(writer)


async def measure_idle(server: ServerProcess, sessions: int) -> tuple[float, float]:
    """RSS (MB) of the server before and with ``sessions`` parked at GET DATA."""
    baseline = server.rss_mb()
    parked: list[asyncio.StreamWriter] = []
    for start in range(0, sessions, 500):
        batch = min(500, sessions - start)
        await asyncio.gather(*(_idle_session(server.port, parked) for _ in range(batch)))
    await asyncio.sleep(0.5)
    loaded = server.rss_mb()
    for writer in parked:
        writer.close()
    await asyncio.sleep(0.5)
    return baseline, loaded


# -- report -----------------------------------------------------------------------------------


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def table(points: Sequence[Point]) -> str:
    head = "| server | concurrency | sessions/s | p50 ms | p99 ms | server CPU/session |"
    rows = [head, "|---|---:|---:|---:|---:|---:|"]
    for p in points:
        rows.append(f"| {p.label} | {p.concurrency} | {p.rate:,.0f} | {p.p50_ms:.2f} | "
                    f"{p.p99_ms:.2f} | {p.cpu_us:.0f} us |")  # fmt: skip
    return "\n".join(rows)


def _servers(args: argparse.Namespace) -> list[tuple[str, str, str]]:
    """(label, kind, loop) of every server row, in the order they are measured."""
    servers = [("bare asyncio streams", "bare", "asyncio")]
    if args.panoramisk:
        servers.append(("bare panoramisk with Redis", "panoramisk", "asyncio"))
    if args.baselines:
        servers.append(("bare asyncio Protocol", "bare-protocol", "asyncio"))
    if args.guard_baseline:
        servers.append(("FastAgiServer, step guard off", "ours-unguarded", "asyncio"))
    if args.before:
        servers.append(("FastAgiServer, before", "ours-before", "asyncio"))
    servers.append(("FastAgiServer", "ours", "asyncio"))
    if args.uvloop:
        if args.baselines:
            servers.append(("bare asyncio streams on uvloop", "bare", "uvloop"))
            servers.append(("bare asyncio Protocol on uvloop", "bare-protocol", "uvloop"))
        if args.panoramisk:
            servers.append(("bare panoramisk with Redis on uvloop", "panoramisk", "uvloop"))
        if args.guard_baseline:
            servers.append(("FastAgiServer on uvloop, step guard off", "ours-unguarded", "uvloop"))
        if args.before:
            servers.append(("FastAgiServer on uvloop, before", "ours-before", "uvloop"))
        servers.append(("FastAgiServer on uvloop", "ours", "uvloop"))
    if args.only:
        servers = [row for row in servers if f"{row[1]}@{row[2]}" in args.only]
    return servers


def medians(points: Sequence[Point]) -> str:
    """One row per (server, concurrency): the median of its rounds."""
    rows = ["| server | concurrency | rounds | sessions/s, median | server CPU/session, median |",
            "|---|---:|---:|---:|---:|"]  # fmt: skip
    groups: dict[tuple[str, int], list[Point]] = {}
    for p in points:
        groups.setdefault((p.label, p.concurrency), []).append(p)
    for (label, concurrency), group in groups.items():
        rate = statistics.median(p.rate for p in group)
        cpu = statistics.median(p.cpu_us for p in group)
        rows.append(f"| {label} | {concurrency} | {len(group)} | {rate:,.0f} | {cpu:.0f} us |")
    return "\n".join(rows)


async def run(args: argparse.Namespace) -> str:
    global ENV, CPU_FIELDS  # noqa: PLW0603 - the block the load generator sends, the CPU counted
    ENV = env_block(args.exchange)
    CPU_FIELDS = (11,) if args.user_cpu else (11, 12)
    servers = _servers(args)
    points: list[Point] = []
    # Rounds alternate the servers (baseline and subject interleaved), so a neighbour's load
    # on a shared machine shows as a spread between rounds, not as a difference between rows.
    for _round in range(args.rounds):
        for concurrency in args.concurrency:
            for label, kind, loop in servers:
                server = start_server(kind, args, loop)
                try:
                    points.append(await measure(server, label, concurrency, args.duration))
                finally:
                    server.stop()
    report = [table(points)]
    if args.user_cpu:
        report.insert(0, "Server CPU: user time only (--user-cpu).")
    if args.rounds > 1:
        report.append(medians(points))
    if args.idle:
        report.append(await _idle_report(args))
    return "\n\n".join(report)


async def _idle_report(args: argparse.Namespace) -> str:
    rows = [f"| server | RSS before | RSS with {args.idle:,} idle sessions | per session |",
            "|---|---:|---:|---:|"]  # fmt: skip
    for label, kind in (("bare asyncio streams", "bare"), ("FastAgiServer", "ours")):
        server = start_server(kind, args, "asyncio")
        try:
            before, loaded = await measure_idle(server, args.idle)
        finally:
            server.stop()
        per = (loaded - before) * 1024 / args.idle
        rows.append(f"| {label} | {before:.1f} MB | {loaded:.1f} MB | {per:.1f} KB |")
    return "\n".join(rows)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per point")
    parser.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")],
                        default=[1, 10, 100])  # fmt: skip
    parser.add_argument("--handler", default="benchmarks.fastagi_bench:standard_session")
    parser.add_argument("--idle", type=int, default=10_000, help="idle sessions (0: skip)")
    parser.add_argument("--uvloop", action="store_true", help="add rows for uvloop")
    parser.add_argument("--log-level", default="warning", help="server log level")
    parser.add_argument("--log-to", choices=["devnull", "pipe"], default="devnull",
                        help="server log stream: /dev/null or a pipe another process drains")  # fmt: skip
    parser.add_argument("--exchange", choices=sorted(BARE_COMMANDS), default="standard",
                        help="what the bare servers send (and the block's agi_arg_1)")  # fmt: skip
    parser.add_argument("--baselines", action="store_true",
                        help="also a bare asyncio.Protocol server; the bare servers on uvloop")  # fmt: skip
    parser.add_argument("--guard-baseline", action="store_true",
                        help="also our server with the step guard off (no SET AUTOHANGUP)")  # fmt: skip
    parser.add_argument("--panoramisk", action="store_true",
                        help="also panoramisk 1.4's FastAGI server with one Redis GET per call "
                        "(needs CALLROUTER_BENCH_REDIS)")  # fmt: skip
    parser.add_argument("--user-cpu", action="store_true",
                        help="count the server's user CPU time only (not its system time)")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure every row this many times, interleaved")  # fmt: skip
    parser.add_argument("--only", type=lambda s: set(s.split(",")), default=None,
                        help="rows to run, as kind@loop (e.g. panoramisk@asyncio,ours@uvloop)")  # fmt: skip
    parser.add_argument("--profile", default="",
                        help="write each server's cProfile statistics to "
                        "PREFIX.<kind>.<loop>.pstats")  # fmt: skip
    parser.add_argument("--before", default="",
                        help="also our server from this checkout of an earlier commit (rows 'before'; "
                        "copy benchmarks/ over it first)")  # fmt: skip
    parser.add_argument("--serve", choices=["ours", "ours-unguarded", "bare", "bare-protocol", "panoramisk"],
                        help=argparse.SUPPRESS)  # fmt: skip
    parser.add_argument("--server-loop", default="asyncio", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.serve:
        serve_main(args)
        return
    _raise_fd_limit()
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setaffinity(0, {CLIENT_CPU})
    try:
        import uvloop

        report = uvloop.run(run(args))
    except ImportError:
        report = asyncio.run(run(args))
    print(report)


if __name__ == "__main__":
    main()
