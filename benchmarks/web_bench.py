"""Benchmark: the web service under 100 dashboard viewers, and routing beside a busy dashboard.

Run: ``.venv/bin/python -m benchmarks.web_bench [--rounds 3] [--seconds 5] [--limit-s 600]``.

Everything binds 127.0.0.1, runs under ``timeout`` and is stopped at the end. One redis-server
serves every process.

**(a) API latency at 100 concurrent dashboard viewers.** A real ``callrouter web`` process
(access log at ``info``, as in production) and, side by side in the same run, a bare aiohttp
server answering a static JSON body to any GET (the baseline: what aiohttp and the client cost
with no authentication, no Redis and no middleware). Each of ``--viewers`` viewers (its own
HTTP connection, as a browser; a user of its own, a viewer of every tenant, with an API token)
requests the dashboard's API endpoints in turn, as fast as answers come (closed loop: the
worst case, 100 requests always in flight). The endpoints are a parameter (``--endpoints``);
one that the service does not answer with 2xx (a feature not built yet) is left out with a
printed note. Rounds alternate the two servers; reported: p50/p99/max latency, requests/s and
the server's CPU per request; then the same with each viewer polling every ``--poll-s`` (the
dashboard's pace). Today's KPI
report (``--kpi``, over an archive of ``--records-today`` answered calls) is measured on its
own, with ``--kpi-viewers`` viewers: the page does not poll it every second.

**(b) routing's sessions/s while the dashboard is busy.** A real ``callrouter serve`` (the
example plan, a Tuesday 10:00 clock, ``call.routed`` logged per call) takes the route entry's
FastAGI sessions from :mod:`benchmarks.fastagi_bench`'s load generator (``--concurrency``
sessions in flight, closed loop) in this process. Rounds alternate *quiet* (only routing) and
*busy*: another process (``--dashboard``) keeps ``--viewers`` viewers polling the endpoints
every ``--poll-s`` and ``--streams`` Server-Sent Events streams open on
``/api/v1/live/events``, and stands in for the AMI writer by changing a queue's figures
and announcing it 10 times a second (Charnwood's general queue: not on the route's path), so
every stream receives changes. In each round, routing runs a closed loop (sessions/s: the
host's ceiling) and then an open loop of ``--rate`` sessions a second (latency at a fixed
arrival rate). Reported per round: sessions/s, p50/p99, serve's CPU per session, the latency at
the offered rate, the CPU of the web service, Redis and the dashboard's clients, and in busy
rounds the viewers' latencies, the streams open (the service's own ``/metrics``) and the SSE
messages received.

The machine's cores are shared with other work: compare rows within one run, and rerun.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from benchmarks import fastagi_bench
from benchmarks.route_bench import seed
from records.archive import Archive
from routing import metrics
from routing.redis_keys import KEYS
from routing.toggle_mac import write_key_file
from tests.records.factory import record
from tests.support.redis_server import free_port, running_redis
from tests.support.web import FAST_HASHER
from tests.web.records_rig import answered
from web.identity import IdentityStore

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "plan.yaml"
SSE_PATH = "/api/v1/live/events"
ENDPOINTS = "/api/v1/whoami,/api/v1/tenants/harborough/toggles,/api/v1/live"
"""What the dashboard page polls every second (a feature not built yet answers 404: left out)."""
KPI = "/api/v1/tenants/harborough/report?from={today}&to={today}"
"""Today's KPI report: the page reads it far less often; measured on its own."""
CHURN_QUEUE = "cbc-general"  # Charnwood's general queue: no part of the route's decision
PASSWORD = "benchmark viewer password"
CLOCK_START = "2026-11-24 10:00"  # a Tuesday: the route takes the open-hours path


def percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


# --- processes -----------------------------------------------------------------------------------


@dataclass
class Process:
    """A child started under ``timeout`` (so it ends even if this run is killed)."""

    popen: subprocess.Popen[bytes]
    port: int
    name: str

    @property
    def pid(self) -> int:
        """The real child's pid (``timeout``'s child)."""
        path = Path(f"/proc/{self.popen.pid}/task/{self.popen.pid}/children")
        children = path.read_text().split() if path.exists() else []
        return int(children[0]) if children else self.popen.pid

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()  # timeout passes SIGTERM on
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def start(name: str, argv: list[str], port: int, *, limit_s: int, log: Path, env: dict[str, str]) -> Process:
    with log.open("ab") as out:
        popen = subprocess.Popen(
            ["timeout", str(limit_s), *argv], stdout=out, stderr=subprocess.STDOUT, env=env
        )
    return Process(popen, port, name)


async def wait_http(url: str, timeout_s: float = 30) -> None:
    async with asyncio.timeout(timeout_s), aiohttp.ClientSession() as session:
        while True:
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(url) as answer:
                    if answer.status < 500:
                        return
            await asyncio.sleep(0.1)


async def wait_log(log: Path, text: str, timeout_s: float = 30) -> None:
    async with asyncio.timeout(timeout_s):
        while text not in log.read_text(errors="replace"):  # noqa: ASYNC110, ASYNC240 - another process's log
            await asyncio.sleep(0.1)


# --- the bare baseline server and the web process -------------------------------------------------


def bare_main(port: int) -> None:
    """A bare aiohttp server: a static JSON body for any GET."""
    body = json.dumps({"user": "viewer", "name": "Viewer", "roles": {"*": ["viewer"]}}).encode()

    async def answer(_request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/{tail:.*}", answer)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


# --- the dashboard's load -----------------------------------------------------------------------


@dataclass
class Viewers:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    events: int = 0
    streams_open: int = 0
    all_open_at: float | None = None  # when the last stream opened


async def viewer(
    base: str, paths: Sequence[str], token: str, done: Callable[[], bool], *, poll_s: float, out: Viewers
) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:
        if poll_s:  # viewers opened their pages at different moments
            await asyncio.sleep(random.uniform(0, poll_s))
        while not done():
            for path in paths:
                started = time.perf_counter()
                try:
                    async with session.get(base + path, headers=headers) as answer:
                        await answer.read()
                        ok = answer.status < 300
                except aiohttp.ClientError:
                    ok = False
                out.latencies.append(time.perf_counter() - started)
                out.errors += not ok
            if poll_s:
                await asyncio.sleep(poll_s)


def ends_at(moment: float) -> Callable[[], bool]:
    return lambda: time.perf_counter() >= moment


async def stream(base: str, token: str, streams: int, out: Viewers) -> None:
    headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.get(base + SSE_PATH, headers=headers) as answer,
    ):
        if answer.status != 200:
            out.errors += 1
            return
        out.streams_open += 1
        if out.streams_open == streams:
            out.all_open_at = time.perf_counter()
        async for line in answer.content:
            if line.startswith(b"data:") and out.all_open_at is not None:
                out.events += 1


async def churn(redis_url: str, done: Callable[[], bool]) -> int:
    """The AMI writer's part: a queue's figures change and are announced, 10 times a second."""
    redis = Redis.from_url(redis_url)
    key, n = KEYS.queue_snapshot(CHURN_QUEUE), 0
    try:
        while not done():
            n += 1
            now = time.time()
            await redis.hset(key, mapping={"waiting": n % 7, "oldest_join": now - 30, "logged_in": 5,
                                           "available": n % 3, "updated_at": now})  # fmt: skip
            await redis.publish(KEYS.live_changed_channel(), str(now))
            await asyncio.sleep(0.1)
    finally:
        await redis.aclose()
    return n


async def dashboard(args: argparse.Namespace) -> None:
    """The busy dashboard as its own process, until its stdin closes (or ``--seconds``); then
    its figures as one line of JSON."""
    born, cpu_at_birth = time.perf_counter(), time.process_time()  # after the imports
    tokens = args.token.split(",")
    out, stop = Viewers(), asyncio.Event()
    stdin_closed = asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    stdin_closed.add_done_callback(lambda _f: stop.set())
    deadline = time.perf_counter() + args.seconds

    def done() -> bool:
        return stop.is_set() or time.perf_counter() >= deadline

    streams = [
        asyncio.create_task(stream(args.base, tokens[i % len(tokens)], args.streams, out))
        for i in range(args.streams)
    ]
    paths = [p for p in args.endpoints.split(",") if p]
    jobs = [
        viewer(args.base, paths, tokens[i % len(tokens)], done, poll_s=args.poll_s, out=out)
        for i in range(args.viewers)
    ]
    changes, *_ = await asyncio.gather(churn(args.redis, done), *jobs)
    streamed_s = time.perf_counter() - out.all_open_at if out.all_open_at is not None else 0.0
    for task in streams:
        task.cancel()
    await asyncio.gather(*streams, return_exceptions=True)
    figures = {"latencies": out.latencies, "errors": out.errors, "events": out.events,
               "streamed_s": streamed_s, "streams_open": out.streams_open, "changes": changes,
               "cpu_s": time.process_time() - cpu_at_birth, "life_s": time.perf_counter() - born}  # fmt: skip
    print(json.dumps(figures), flush=True)
    os._exit(0)  # the stdin reader thread may still block


# --- (a) ----------------------------------------------------------------------------------------


Figures = tuple[list[float], float, int, float]
"""(latencies, seconds, errors, server CPU seconds)"""


async def viewers_round(server: Process, base: str, paths: Sequence[str], tokens: Sequence[str], *,
                        viewers: int, seconds: float, poll_s: float) -> Figures:  # fmt: skip
    """(latencies, seconds, errors, server CPU seconds) of ``viewers`` polling every ``poll_s``
    (0: a closed loop) for ``seconds``, after a warm-up."""
    warm = ends_at(time.perf_counter() + 0.5)
    await asyncio.gather(*(viewer(base, paths, tokens[i % len(tokens)], warm, poll_s=0, out=Viewers())
                           for i in range(viewers)))  # fmt: skip
    out = Viewers()
    cpu, started = server.cpu_seconds(), time.perf_counter()
    done = ends_at(started + seconds)
    await asyncio.gather(*(viewer(base, paths, tokens[i % len(tokens)], done, poll_s=poll_s, out=out)
                           for i in range(viewers)))  # fmt: skip
    return out.latencies, time.perf_counter() - started, out.errors, server.cpu_seconds() - cpu


def row(
    label: str, latencies: Sequence[float], seconds: float, errors: int, cpu: float, *, paced: bool
) -> str:
    """A table row; the server's CPU per request in a closed loop, else its share of one core (a
    few requests a second: the 10 ms ticks of ``/proc`` would swamp a figure per request)."""
    ms = [x * 1000 for x in latencies]
    used = f"{cpu / seconds * 100:.1f} % of a core" if paced else f"{cpu / len(ms) * 1e6:.0f} us/request"
    return (f"| {label} | {len(ms) / seconds:,.0f} | {statistics.median(ms):.1f} | {percentile(ms, 99):.1f} "
            f"| {max(ms):.1f} | {used} | {errors} |")  # fmt: skip


def metric_updates_cost(calls: int = 200_000) -> tuple[float, float]:
    """In this process: us per request of the middleware's two metric updates, with the label
    children cached (:class:`routing.metrics.WebRequests`) and with ``.labels()`` each time."""
    cached = metrics.WebRequests()
    started = time.perf_counter()
    for _ in range(calls):
        cached.answered("/api/v1/whoami", "GET", 200, 0.001)
    with_cache = (time.perf_counter() - started) / calls * 1e6
    started = time.perf_counter()
    for _ in range(calls):
        metrics.WEB_REQUESTS.labels("/api/v1/whoami", "GET", metrics.status_class(200)).inc()
        metrics.WEB_REQUEST_SECONDS.labels("/api/v1/whoami").observe(0.001)
    return with_cache, (time.perf_counter() - started) / calls * 1e6


async def part_a(
    args: argparse.Namespace, web_proc: Process, bare: Process, tokens: list[str], paths: list[str]
) -> None:
    print(f"\n(a) {args.viewers} viewers, {args.seconds:g} s per round, {args.rounds} rounds alternating the "
          f"servers; endpoints: {', '.join(paths)}")  # fmt: skip
    labels = {"bare": "bare aiohttp, static JSON", "web": "callrouter web"}
    for poll_s in (0.0, args.poll_s):
        mode = "closed loop" if not poll_s else f"each polling every {poll_s:g} s"
        print(f"\n{args.viewers} viewers, {mode}:\n")
        print("| server | req/s | p50 ms | p99 ms | max ms | server CPU | errors |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        totals: dict[str, list[Any]] = {"bare": [[], 0.0, 0, 0.0], "web": [[], 0.0, 0, 0.0]}
        for n in range(args.rounds):
            order = [("bare", bare), ("web", web_proc)]
            for name, server in order if n % 2 == 0 else order[::-1]:
                base = f"http://127.0.0.1:{server.port}"
                result = await viewers_round(server, base, paths, tokens, viewers=args.viewers,
                                             seconds=args.seconds, poll_s=poll_s)  # fmt: skip
                print(row(f"{labels[name]}, round {n + 1}", *result, paced=bool(poll_s)))
                total = totals[name]
                total[0].extend(result[0])
                for i in (1, 2, 3):
                    total[i] += result[i]
        for name in ("bare", "web"):
            print(row(f"**{labels[name]}, all rounds**", *totals[name], paced=bool(poll_s)))
    if args.kpi:
        print(f"\nToday's KPI report ({args.records_today:,} records today in the archive), "
              f"{args.kpi_viewers} viewers, closed loop, one round:\n")  # fmt: skip
        print("| server | req/s | p50 ms | p99 ms | max ms | server CPU | errors |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        base = f"http://127.0.0.1:{web_proc.port}"
        result = await viewers_round(web_proc, base, [args.kpi], tokens, viewers=args.kpi_viewers,
                                     seconds=args.seconds, poll_s=0)  # fmt: skip
        print(row("callrouter web, GET .../report (today)", *result, paced=False))
    cached, uncached = metric_updates_cost()
    print(f"\nthe request metrics' updates, in-process: {cached:.2f} us per request with the label children "
          f"cached (what the middleware does), {uncached:.2f} us with .labels() each time")  # fmt: skip


# --- (b) ----------------------------------------------------------------------------------------


async def streams_reach(port: int, token: str, target: float, *, at_least: bool) -> None:
    """Wait until ``/metrics`` shows ``target`` streams open or more (``at_least``), or fewer."""
    async with asyncio.timeout(30):
        while True:
            n = await sse_streams_open(port, token)
            if (n >= target) if at_least else (n <= target):
                return
            await asyncio.sleep(0.2)


async def busy_dashboard(
    args: argparse.Namespace, web_port: int, tokens: list[str], paths: list[str]
) -> asyncio.subprocess.Process:
    """The dashboard's load (its own process), running once ``/metrics`` shows every stream open."""
    token = tokens[0]
    await streams_reach(web_port, token, 0, at_least=False)  # the last round's streams have closed
    argv = [sys.executable, "-m", "benchmarks.web_bench", "--dashboard", "--base", f"http://127.0.0.1:{web_port}",
            "--token", ",".join(tokens), "--redis", args.redis, "--viewers", str(args.viewers), "--streams",
            str(args.streams), "--poll-s", str(args.poll_s), "--endpoints", ",".join(paths),
            "--seconds", str(args.seconds * 3 + 60)]  # fmt: skip
    pipe = asyncio.subprocess.PIPE
    load = await asyncio.create_subprocess_exec("timeout", str(int(args.seconds) * 3 + 90), *argv,
                                                stdin=pipe, stdout=pipe)  # fmt: skip
    await streams_reach(web_port, token, args.streams, at_least=True)
    await asyncio.sleep(1.0)  # every viewer has polled once: the load is steady
    return load


async def offered(serve: Process, rate: float, seconds: float) -> tuple[list[float], float, int]:
    """Sessions started at ``rate`` a second whatever the answers (an open loop, as calls arrive):
    (latencies, seconds until the last ended, sessions that failed)."""
    started = time.perf_counter()
    tasks = []
    for i in range(int(rate * seconds)):
        delay = started + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(fastagi_bench.one_session(serve.port)))
    results = await asyncio.gather(*tasks, return_exceptions=True)
    latencies = [r for r in results if isinstance(r, float)]
    return latencies, time.perf_counter() - started, len(results) - len(latencies)


@dataclass
class Round:
    name: str
    closed: fastagi_bench.Point
    open_ms: tuple[float, float, float]  # p50, p99, max at the offered rate
    open_rate: float
    open_failed: int
    cpu_pct: dict[str, float]  # web, redis, dashboard clients: % of one core over the round
    dashboard: str


async def one_round(args: argparse.Namespace, procs: dict[str, Process], tokens: list[str], paths: list[str],
                    busy: bool) -> Round:  # fmt: skip
    web_proc, serve = procs["web"], procs["serve"]
    load = await busy_dashboard(args, web_proc.port, tokens, paths) if busy else None
    open_streams = await sse_streams_open(web_proc.port, tokens[0])
    before = {name: procs[name].cpu_seconds() for name in ("web", "redis")}
    started = time.perf_counter()
    closed = await fastagi_bench.measure(serve, "busy" if busy else "quiet", args.concurrency, args.seconds)  # type: ignore[arg-type]
    latencies, seconds, failed = await offered(serve, args.rate, args.seconds)
    elapsed = time.perf_counter() - started
    cpu = {name: (procs[name].cpu_seconds() - before[name]) / elapsed * 100 for name in before}
    dashboard = "—"
    if load is not None:
        stdout, _ = await load.communicate(b"")
        figures = json.loads(stdout.decode().strip().splitlines()[-1])
        cpu["clients"] = figures["cpu_s"] / figures["life_s"] * 100
        ms = [x * 1000 for x in figures["latencies"]]
        per_s = figures["events"] / max(figures["streamed_s"], 1e-9)
        dashboard = (f"viewers p50 {statistics.median(ms):.1f} / p99 {percentile(ms, 99):.1f} ms "
                     f"({len(ms)} requests, {figures['errors']} failed); {open_streams:.0f} streams, "
                     f"{per_s:,.0f} SSE messages/s")  # fmt: skip
    ms = sorted(x * 1000 for x in latencies)
    return Round("busy" if busy else "quiet", closed, (statistics.median(ms), percentile(ms, 99), ms[-1]),
                 len(latencies) / seconds, failed, cpu, dashboard)  # fmt: skip


async def part_b(
    args: argparse.Namespace, procs: dict[str, Process], tokens: list[str], paths: list[str]
) -> None:
    print(f"\n(b) routing through callrouter serve: {args.concurrency} sessions in flight (closed loop) "
          f"for {args.seconds:g} s, then {args.rate:g} sessions/s offered (open loop) for "
          f"{args.seconds:g} s; "
          f"busy: {args.viewers} viewers polling every {args.poll_s:g} s + {args.streams} SSE streams, "
          "a queue change announced 10 times a second")  # fmt: skip
    print("| round | dashboard | closed loop: sessions/s | p50 ms | p99 ms | serve CPU/session "
          f"| at {args.rate:g}/s offered: p50 / p99 / max ms | CPU % web / redis / dashboard clients | "
          "the dashboard's own figures |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---:|---:|---|")
    rounds: list[Round] = []
    await fastagi_bench.measure(procs["serve"], "warm-up", args.concurrency, 2.0)  # type: ignore[arg-type]
    for n in range(args.rounds * 2):
        busy = (n % 2 == 1) if (n // 2) % 2 == 0 else (n % 2 == 0)  # quiet, busy, busy, quiet, ...
        r = await one_round(args, procs, tokens, paths, busy)
        rounds.append(r)
        c = r.closed
        cpu = " / ".join(
            f"{r.cpu_pct[k]:.1f}" if k in r.cpu_pct else "—" for k in ("web", "redis", "clients")
        )
        failed = f" ({r.open_failed} failed)" if r.open_failed else ""
        at_rate = f"{r.open_ms[0]:.2f} / {r.open_ms[1]:.2f} / {r.open_ms[2]:.1f}{failed}"
        print(f"| {n + 1} | {r.name} | {c.rate:,.0f} | {c.p50_ms:.2f} | {c.p99_ms:.2f} | {c.cpu_us:.0f} us | "
              f"{at_rate} | {cpu} | {r.dashboard} |")  # fmt: skip
    quiet = [r for r in rounds if r.name == "quiet"]
    busy_rounds = [r for r in rounds if r.name == "busy"]
    pairs = [b.closed.rate / q.closed.rate for q, b in zip(quiet, busy_rounds, strict=True)]
    print(f"busy / quiet closed-loop sessions/s, per pair of adjacent rounds: "
          f"{', '.join(f'{x:.2f}' for x in pairs)}; median {statistics.median(pairs):.2f}")  # fmt: skip
    for name, group in (("quiet", quiet), ("busy", busy_rounds)):
        rates = [r.closed.rate for r in group]
        print(f"{name}: closed-loop sessions/s median {statistics.median(rates):,.0f} "
              f"(min {min(rates):,.0f}, max {max(rates):,.0f}); serve CPU/session median "
              f"{statistics.median(r.closed.cpu_us for r in group):.0f} us; at {args.rate:g}/s offered: p50 "
              f"median {statistics.median(r.open_ms[0] for r in group):.2f} ms, p99 median "
              f"{statistics.median(r.open_ms[1] for r in group):.2f} ms")  # fmt: skip


async def sse_streams_open(port: int, token: str) -> float:
    """``callrouter_web_sse_streams`` as the web service's ``/metrics`` says now."""
    async with aiohttp.ClientSession() as session:
        url = f"http://127.0.0.1:{port}/metrics"
        async with session.get(url, headers={"Authorization": f"Bearer {token}"}) as answer:
            text = await answer.text()
    for family in text_string_to_metric_families(text):
        if family.name == "callrouter_web_sse_streams":
            return family.samples[0].value
    return float("nan")


# --- the run ------------------------------------------------------------------------------------


def seed_archive(root: Path, calls: int) -> None:
    """Today's contact records of harborough in an archive (for the KPI report): ``calls``
    answered calls since the day began, as ``records deliver`` would have archived them."""
    now = datetime.now(UTC)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    span = max(1.0, (now - day).total_seconds() - 600)
    made = []
    for n in range(calls):
        arrived = day + timedelta(seconds=span * n / calls)
        made.append(record(f"{int(arrived.timestamp())}.{n}", arrived, caller=f"0163296{n % 10000:04d}",
                           **answered(arrived)))  # fmt: skip
    Archive(root).append_many(made)


async def users(redis_url: str, n: int) -> list[str]:
    """``n`` viewers of every tenant, each with a token (as ``callrouter users add/token`` make
    them; the password hash with small costs: no request here checks a password)."""
    redis = Redis.from_url(redis_url)
    store = IdentityStore(redis, FAST_HASHER)
    now = datetime.now(UTC)
    tokens = []
    for i in range(n):
        await store.add_user(f"viewer{i:03d}", f"Viewer {i}", PASSWORD, {"*": frozenset({"viewer"})}, now)
        token, _info = await store.create_token(f"viewer{i:03d}", "web_bench", now, timedelta(days=1))
        tokens.append(token)
    await redis.aclose()
    return tokens


async def present(base: str, paths: Sequence[str], token: str) -> list[str]:
    found = []
    async with aiohttp.ClientSession() as session:
        for path in paths:
            async with session.get(base + path, headers={"Authorization": f"Bearer {token}"}) as answer:
                if 200 <= answer.status < 300:
                    found.append(path)
                else:
                    print(f"note: {path} answers {answer.status}: left out of the viewers' endpoints")
    return found


async def run(args: argparse.Namespace) -> None:
    with (
        running_redis(max_lifetime_s=int(args.limit_s) + 60) as redis_server,
        tempfile.TemporaryDirectory() as tmp,
    ):
        args.redis = redis_server.url
        await seed(redis_server.url)
        tokens = await users(redis_server.url, max(args.viewers, args.streams, args.kpi_viewers))
        token = tokens[0]
        folder, limit = Path(tmp), int(args.limit_s) + 30
        web_port, bare_port, agi_port = free_port(), free_port(), free_port()
        seed_archive(folder / "archive", args.records_today)
        key_file = folder / "toggle.key"
        write_key_file(key_file)  # the toggle key web and serve share (toggles signed and checked)
        env = {**os.environ, "CALLROUTER_REDIS": redis_server.url, "CALLROUTER_WEB_PORT": str(web_port),
               "CALLROUTER_WEB_COOKIE_SECURE": "false", "CALLROUTER_LOG_LEVEL": args.web_log_level,
               "CALLROUTER_PLAN": str(EXAMPLE),
               "CALLROUTER_RECORDS_ARCHIVE_DIR": str(folder / "archive"),
               "CALLROUTER_TOGGLE_KEY_FILE": str(key_file)}  # fmt: skip
        me = [sys.executable, "-m", "benchmarks.web_bench"]
        web_argv = [sys.executable, "-m", "callrouter.cli", "web"]
        serve_argv = [sys.executable, "-m", "callrouter.cli", "serve", "--plan", str(EXAMPLE), "--agi-port",
                      str(agi_port), "--redis", redis_server.url, "--clock-start", CLOCK_START]  # fmt: skip
        processes = [
            start("web", web_argv, web_port, limit_s=limit, log=folder / "web.log", env=env),
            start(
                "bare",
                [*me, "--bare", str(bare_port)],
                bare_port,
                limit_s=limit,
                log=folder / "bare.log",
                env=env,
            ),
            start(
                "serve",
                serve_argv,
                agi_port,
                limit_s=limit,
                log=folder / "serve.log",
                env={**os.environ, "CALLROUTER_TOGGLE_KEY_FILE": str(key_file)},
            ),
        ]
        web_proc, bare, serve = processes
        procs = {
            "web": web_proc,
            "serve": serve,
            "redis": Process(redis_server.process, redis_server.port, "redis"),
        }
        try:
            await wait_http(f"http://127.0.0.1:{web_port}/health")
            await wait_http(f"http://127.0.0.1:{bare_port}/health")
            await wait_log(folder / "serve.log", "controller.started")
            base = f"http://127.0.0.1:{web_port}"
            today = datetime.now(UTC).date().isoformat()
            paths = await present(base, args.endpoints.replace("{today}", today).split(","), token)
            kpi = await present(base, [args.kpi.replace("{today}", today)], token) if args.kpi else []
            args.kpi = kpi[0] if kpi else None
            fastagi_bench.ENV = fastagi_bench.env_block("route")
            if "a" in args.parts:
                await part_a(args, web_proc, bare, tokens, paths)
            if "b" in args.parts:
                await part_b(args, procs, tokens, paths)
        finally:
            for process in processes:
                process.stop()
            failures = (folder / "serve.log").read_text(errors="replace").count('"agi.session.failed"')
            if failures:
                print(f"warning: serve logged {failures} failed sessions")
            errors = [line for line in (folder / "web.log").read_text(errors="replace").splitlines()
                      if '"level": "error"' in line]  # fmt: skip
            if errors:
                print(f"warning: the web service logged {len(errors)} errors, the first: {errors[0][:3000]}")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per measured round")
    parser.add_argument("--viewers", type=int, default=100)
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument(
        "--poll-s", type=float, default=1.0, help="a busy round's viewers' pause between polls"
    )
    parser.add_argument(
        "--concurrency", type=int, default=10, help="FastAGI sessions in flight (closed loop)"
    )
    parser.add_argument("--rate", type=float, default=100, help="FastAGI sessions a second (open loop)")
    parser.add_argument("--endpoints", default=ENDPOINTS,
                        help="the viewers' GET paths, comma-separated ({today}: today's date)")  # fmt: skip
    parser.add_argument("--parts", default="ab")
    parser.add_argument("--kpi", default=KPI, help="the KPI report's path, measured on its own ('': skip)")
    parser.add_argument("--kpi-viewers", type=int, default=10)
    parser.add_argument("--records-today", type=int, default=2000, help="answered calls in today's archive")
    parser.add_argument("--web-log-level", default="info", help="the web process's (info: its access log on)")
    parser.add_argument("--limit-s", type=float, default=600, help="the whole run's bound")
    parser.add_argument("--bare", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--dashboard", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--base", help=argparse.SUPPRESS)
    parser.add_argument("--token", help=argparse.SUPPRESS)
    parser.add_argument("--redis", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.bare is not None:
        bare_main(args.bare)
    elif args.dashboard:
        asyncio.run(dashboard(args))
    else:

        async def bounded() -> None:
            async with asyncio.timeout(args.limit_s):
                await run(args)

        asyncio.run(bounded())


if __name__ == "__main__":
    main()
