"""``callrouter serve``: the controller process.

FastAGI on 127.0.0.1:4573 by default, live state from Redis (refreshed in the background, off
the call path), structured JSON logs on stdout. Every setting comes from ``callrouter.settings``
(flag > environment > settings file > default), as for ``toggle`` and ``state``.
SIGHUP, or a change to the plan file, reloads the plan only if it validates; SIGTERM drains
(stop accepting, let calls in progress finish their step, then close).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import gc
import os
import pickle
import pwd
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import structlog
from redis.asyncio import Redis

from callrouter import settings as settings_module
from callrouter.logs import configure_logging
from callrouter.settings import Settings
from ivr.controller import Clock, Controller, LiveSource, NoLiveState, PlanError, PlanHolder, utc_now
from ivr.fastagi import FastAgiServer, ServerConfig, serve_until_signal
from records.appender import Ownership, StreamSink, TeeSink
from records.builder import RecordBuilder
from records.journal import FactJournal, JournalInUse, read_journal
from records.model import ContactRecord
from records.outbox import JsonlSink, RecordPump, RecordSink, stop_pump
from records.stream import RecordStream
from routing.ami.consumer import AmiConsumer
from routing.ami.settings import AmiSettings
from routing.core.decide import CompiledPlan
from routing.core.plan import Plan, Tenant
from routing.live.source import CachedLiveSource
from routing.plan_file import (
    DEFAULT_LIMITS,
    LimitReached,
    Limits,
    LoadResult,
    load_source,
    plan_files,
    read_source,
    unreadable,
)
from routing.plan_worker import DEFAULT_WORKER_LIMITS, Checked, WorkerLimits, check_in_worker
from routing.redis_keys import KEYS
from routing.supervisor import audit, facts_json, plan_facts
from routing.withdrawer import ami_pipeline

log = structlog.get_logger("callrouter.service")
LONDON = ZoneInfo("Europe/London")
EXIT_CANNOT_LISTEN = 3


@dataclass(frozen=True)
class ServeOptions:
    plan: Path
    agi_host: str = "127.0.0.1"
    agi_port: int = 4573
    redis: str | None = "redis://127.0.0.1:6379/0"
    redis_password: str | None = field(default=None, repr=False)
    live_timeout: float = 0.25
    refresh_s: float = 0.25
    max_sessions: int = 1000
    call_timeout: float = 300.0
    drain_timeout: float = 30.0
    watch_interval: float = 2.0
    clock_start: datetime | None = None
    clock_speed: float = 1.0
    ami: AmiSettings | None = None
    withdraw_interval: float = 5.0
    allowed_peers: tuple[str, ...] = ("127.0.0.1/32", "::1/128")
    max_sessions_per_peer: int = 1000
    max_pending: int = 128
    plan_publish_interval: float = 1.0
    records_key: bytes | None = field(default=None, repr=False)
    records_outbox: Path | None = None
    records_journal: Path | None = None

    @classmethod
    def from_settings(cls, settings: Settings, centre: str, **options: object) -> ServeOptions:
        """The options of ``serve`` from the settings (``centre``: the plan's, unless set)."""
        ami = settings.ami
        if ami is not None and not ami.centre:
            ami = dataclasses.replace(ami, centre=centre)
        password = settings.redis.password
        key = settings.records.caller_hash_key
        values: dict[str, object] = {
            "plan": settings.require_plan(),
            "agi_host": settings.agi.host,
            "agi_port": settings.agi.port,
            "redis": settings.redis.url if settings.redis.enabled else None,
            "redis_password": password.get_secret_value() if password else None,
            "live_timeout": settings.live_timeout_s,
            "max_sessions": settings.agi.max_sessions,
            "call_timeout": settings.agi.call_timeout_s,
            "drain_timeout": settings.agi.drain_timeout_s,
            "watch_interval": settings.watch_interval_s,
            "ami": ami,
            "allowed_peers": settings.agi.allowed_peers,
            "max_sessions_per_peer": settings.agi.max_sessions_per_peer,
            "max_pending": settings.agi.max_pending,
            "records_key": key.get_secret_value().encode("utf-8") if key else None,
            "records_outbox": settings.records.outbox,
            "records_journal": settings.records.journal,
        }
        return cls(**{**values, **options})  # type: ignore[arg-type]


def rehearsal_clock(start: datetime, speed: float, real: Clock = utc_now) -> Clock:
    """A clock that starts at ``start`` and runs ``speed`` times faster than real time.

    For rehearsals and demonstrations only (``serve --clock-start``): see what the plan does
    at 17:29 without waiting for 17:29."""
    origin = real()

    def now() -> datetime:
        return start + (real() - origin) * speed

    return now


def plan_owner(path: Path) -> str:
    """The owner of the plan's newest file: who changed it."""
    files = [f for f in plan_files(path) if f.exists()]
    newest = max(files, key=lambda f: f.stat().st_mtime, default=None)
    if newest is None:
        return "unknown"
    uid = newest.stat().st_uid
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def first_plan(path: Path, limits: Limits = DEFAULT_LIMITS) -> tuple[PlanHolder, str]:
    """The plan to start with, and the sha256 of exactly the bytes it was read from."""
    try:
        source = read_source(path, limits)
    except (LimitReached, OSError) as exc:
        raise PlanError(unreadable(exc)) from None
    result = load_source(source, limits)
    if not result.ok or result.plan is None:
        raise PlanError(result)
    return PlanHolder(path, CompiledPlan.compile(result.plan)), source.digest()


# Between two pieces of a plan being built or freed, the event loop waits this long: calls in
# progress go first, and a reload takes the controller's core a fraction of the time only. With
# no pause (sleep(0)) calls took twice as long while a 5.7 MB plan was rebuilt (reload_bench).
PACE_S = 0.001


async def rebuild(checked: Checked) -> tuple[LoadResult, CompiledPlan | None]:
    """The worker's answer as a plan in this process, built a tenant at a time on the event
    loop, calls answered between tenants (``PACE_S``); then compiled (in a thread).

    The cyclic garbage collector is paused meanwhile: building a large plan's objects sets
    off full collections, each holding the interpreter lock for as long as it scans the heap
    (0.4 s with a 5.7 MB plan alive: benchmarks/reload_bench.py), and calls wait meanwhile."""
    if checked.shell is None:
        return LoadResult(None, checked.problems), None
    gc.disable()
    try:
        shell: Plan = pickle.loads(checked.shell)  # noqa: S301 - our own worker's answer
        tenants: dict[str, Tenant] = {}
        for tid, piece in checked.tenants:
            tenants[tid] = pickle.loads(piece)  # noqa: S301 - our own worker's answer
            await asyncio.sleep(PACE_S)
        plan = shell.model_copy(update={"tenants": tenants})
        compiled = await asyncio.to_thread(CompiledPlan.compile, plan)
    finally:
        settle_memory()  # before the collector restarts: else its first pass scans the new plan
        gc.enable()
    return LoadResult(plan, checked.problems), compiled


@contextlib.contextmanager
def short_turns(seconds: float = 0.0005) -> Iterator[None]:
    """While a thread builds or frees a plan, the event loop gets the interpreter lock back
    within ``seconds`` of asking, rather than Python's 5 ms: a call waits for the lock at each
    of its reads and writes, and 5 ms at each adds up (benchmarks/reload_bench.py)."""
    usual = sys.getswitchinterval()
    sys.setswitchinterval(seconds)
    try:
        yield
    finally:
        sys.setswitchinterval(usual)


def settle_memory() -> None:
    """Move the objects alive now (the plan in force above all) out of the collector's sight:
    with a large plan, each full collection would otherwise scan it again, holding up calls."""
    gc.freeze()


async def retire(box: list[CompiledPlan], wait_s: float = 10.0) -> None:
    """Free a replaced plan a tenant at a time, calls answered between tenants, once no call
    holds it any more (or after ``wait_s``). Freeing a 5.7 MB plan in one go holds the
    interpreter for about 60 ms."""
    old = box.pop()
    for _ in range(int(wait_s / 0.05)):  # nothing tells when the last call lets go: look
        if sys.getrefcount(old) <= 2:  # this function's reference and getrefcount's own
            break
        await asyncio.sleep(0.05)
    pieces: list[object] = [*old.plan.tenants.values(), *old.calendars.values()]
    del old
    while pieces:
        del pieces[-16:]  # freeing a tenant is cheaper than building one
        await asyncio.sleep(PACE_S)
    log.info("plan.retired")


@dataclass
class PlanReloader:
    """Reloads the plan without holding up calls; one change of the plan, one reload.

    SIGHUP and the file watcher both call :meth:`reload`. Reloads run one at a time; the
    files are read once, in a thread, and a plan whose bytes hash (sha256) to those of the
    last plan tried, taken or refused, is not tried again: a save followed by a SIGHUP (or a
    SIGHUP with nothing changed) is one reload and one audit entry, not two. The bytes are
    checked in a worker process (:mod:`routing.plan_worker`: memory cap, deadline), the
    result compiled in a thread, and the plan in force swapped in one assignment."""

    holder: PlanHolder
    redis: Redis | None
    last_digest: str | None = None
    limits: Limits = DEFAULT_LIMITS
    worker: WorkerLimits = DEFAULT_WORKER_LIMITS
    _lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)

    async def reload(self, trigger: str) -> str:
        """``"accepted"``, ``"rejected"`` or ``"unchanged"`` (nothing tried, nothing audited)."""
        async with self._lock:
            try:
                source = await asyncio.to_thread(read_source, self.holder.path, self.limits)
            except (LimitReached, OSError) as exc:
                refused = unreadable(exc)
                if self._seen("unreadable: " + str(refused.problems[0]), trigger):
                    return "unchanged"
                return await self._settle(refused, None, None, trigger)
            digest = source.digest()
            if self._seen(digest, trigger):
                return "unchanged"
            started = time.monotonic()
            checked = await check_in_worker(source, self.limits, self.worker)
            log.info("plan.checked", path=str(self.holder.path), seconds=round(time.monotonic() - started, 2))
            with short_turns():
                result, compiled = await rebuild(checked)
            replaced = [self.holder.current]
            outcome = await self._settle(result, compiled, digest, trigger)
            if outcome == "accepted":
                await retire(replaced)
            return outcome

    def _seen(self, key: str, trigger: str) -> bool:
        """Whether this plan was the last one tried; else remember it as the last one tried."""
        if key == self.last_digest:
            log.info(
                "plan.unchanged", path=str(self.holder.path), trigger=trigger, version=self.holder.version
            )
            return True
        self.last_digest = key
        return False

    async def _settle(
        self, result: LoadResult, compiled: CompiledPlan | None, digest: str | None, trigger: str
    ) -> str:
        """Take or refuse the plan and record it in the audit trail."""
        taken = self.holder.take(result, compiled)
        if taken:
            settle_memory()
        await self._audit(result, taken, digest, trigger)
        return "accepted" if taken else "rejected"

    async def _audit(self, result: LoadResult, taken: bool, digest: str | None, trigger: str) -> None:
        """Record the engineer's change in the audit trail."""
        if self.redis is None:
            return
        what = "plan.reload.accepted" if taken else "plan.reload.rejected"
        problems = [str(p) for p in result.problems if p.severity == "error"][:20]
        details = {"path": str(self.holder.path), "sha256": digest, "version": self.holder.version}
        try:
            owner = await asyncio.to_thread(plan_owner, self.holder.path)
            await audit(
                self.redis, what, owner, utc_now(), {**details, "trigger": trigger, "problems": problems}
            )
        except Exception as exc:  # the reload itself stands; the log line says the audit entry is missing
            log.warning("audit.not_written", what=what, error=type(exc).__name__)


def _stamp(path: Path) -> tuple[tuple[str, int, int], ...]:
    """Name, modification time and size of each file of the plan."""
    found = []
    for file in plan_files(path):
        with contextlib.suppress(OSError):
            info = file.stat()
            found.append((file.name, info.st_mtime_ns, info.st_size))
    return tuple(found)


async def watch_plan(
    reloader: PlanReloader, interval: float, seen: tuple[tuple[str, int, int], ...], settle: float = 0.1
) -> None:
    """Reload the plan when its file (or any file of its folder) changes from ``seen``, the
    files as they were before the plan in force was read (so a save while the controller was
    starting is not missed; if the bytes turn out the same, the reload says "unchanged").

    A change is acted on once the files have stopped changing for ``settle`` seconds, so
    an editor still writing does not cause a reload of half a file."""
    path = reloader.holder.path
    while True:
        await asyncio.sleep(interval)
        current = await asyncio.to_thread(_stamp, path)
        if current == seen:
            continue
        while True:
            await asyncio.sleep(min(settle, interval))
            again = await asyncio.to_thread(_stamp, path)
            if again == current:
                break
            current = again
        seen = current
        await reloader.reload("file changed")


def _live_source(
    options: ServeOptions, holder: PlanHolder
) -> tuple[LiveSource, CachedLiveSource | None, Redis | None]:
    if options.redis is None:
        return NoLiveState(), None, None
    redis = Redis.from_url(
        options.redis, password=options.redis_password, socket_connect_timeout=0.5, socket_timeout=2.0
    )
    cached = CachedLiveSource(redis, lambda: holder.current, refresh_s=options.refresh_s)
    return cached, cached, redis


def _install_uvloop() -> str:
    try:
        import uvloop  # noqa: PLC0415 - optional speed-up, imported only when present
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


def server_config(options: ServeOptions) -> ServerConfig:
    """The FastAGI server's limits from the options."""
    return ServerConfig(
        host=options.agi_host,
        port=options.agi_port,
        max_sessions=options.max_sessions,
        call_timeout=options.call_timeout,
        allowed_peers=options.allowed_peers,
        max_sessions_per_peer=options.max_sessions_per_peer,
        max_pending=options.max_pending,
    )


async def publish_plan(holder: PlanHolder, redis: Redis, interval: float) -> None:
    """Keep the plan in force (its councils, zones, queues and announcements) in Redis, for
    ``callrouter toggle`` run without a plan; written at start and after each accepted reload."""
    published = -1
    failures = 0
    while True:
        if holder.version != published:
            version = holder.version
            value = facts_json(plan_facts(holder.current.plan), str(holder.path), version, utc_now())
            try:
                await redis.set(KEYS.plan_in_force(), value)
                published, failures = version, 0
            except Exception as exc:  # Redis down: try again next time round
                failures += 1
                if failures == 1:
                    log.warning("plan.not_published", error=type(exc).__name__)
        await asyncio.sleep(interval)


async def serve(options: ServeOptions, ready: Callable[[int], None] | None = None) -> int:
    """Run the controller until SIGTERM/SIGINT; returns the exit code."""
    try:
        stamp = _stamp(options.plan)  # before reading: a save from now on is seen by the watcher
        holder, digest = first_plan(options.plan)
    except PlanError as exc:
        print(f"callrouter: the plan has errors, not starting:\n{exc}", file=sys.stderr)
        return 1
    settle_memory()
    live, cached, redis = _live_source(options, holder)
    clock = rehearsal_clock(options.clock_start, options.clock_speed) if options.clock_start else utc_now
    controller = Controller(holder, live, clock=clock, live_timeout=options.live_timeout)
    instance = f"{socket.gethostname()}:{os.getpid()}"
    lease: list[AmiConsumer] = []  # the AMI consumer once started: is it the lease holder?
    pump = record_pump(options, holder, redis, instance, lambda: bool(lease) and lease[0].is_writer)
    if pump is not None:
        controller.facts = pump.fact
    server = FastAgiServer(server_config(options))
    controller.register(server)
    refused = await _listen(server)
    if refused is not None:
        print(
            f"callrouter: cannot listen for FastAGI on {options.agi_host}:{options.agi_port}: {refused}",
            file=sys.stderr,
        )
        if redis is not None:
            await redis.aclose()
        return EXIT_CANNOT_LISTEN
    ami = await _start_ami(options, redis, cached, holder, clock, pump=pump, instance=instance)
    if ami is not None:
        lease.append(ami[0])
    loop = asyncio.get_running_loop()
    reloader = PlanReloader(holder, redis, last_digest=digest)
    reloads: set[asyncio.Task[str]] = set()

    def on_sighup() -> None:
        task = loop.create_task(reloader.reload("SIGHUP"))
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, on_sighup)
    watcher = asyncio.create_task(watch_plan(reloader, options.watch_interval, stamp))
    refresher = asyncio.create_task(cached.run(clock)) if cached is not None else None
    publisher = (
        asyncio.create_task(publish_plan(holder, redis, options.plan_publish_interval)) if redis else None
    )
    pumping = asyncio.create_task(pump.run()) if pump is not None else None
    try:
        rehearsal = options.clock_start is not None
        log.info(
            "controller.started",
            port=server.port,
            plan=str(options.plan),
            redis=settings_module.redacted(options.redis) if options.redis else None,
            rehearsal_clock=rehearsal,
        )
        if ready is not None:
            ready(server.port)
        await serve_until_signal(server, drain_timeout=options.drain_timeout)
    finally:
        loop.remove_signal_handler(signal.SIGHUP)
        await _shut_down((watcher, refresher, publisher, ami[1] if ami else None), ami, pump, pumping, redis)
    log.info("controller.stopped", **asdict(server.counters))
    return 0


async def _listen(server: FastAgiServer) -> str | None:
    """Start listening; the reason in the system's own words if it cannot (a busy port, an
    address this host does not have, an unknown host name)."""
    try:
        await server.start()
    except OSError as exc:
        if isinstance(exc, socket.gaierror) or not exc.errno:
            return exc.strerror or str(exc)
        return os.strerror(exc.errno)
    return None


async def _shut_down(
    tasks: tuple[asyncio.Task[None] | None, ...],
    ami: tuple[AmiConsumer, asyncio.Task[None]] | None,
    pump: RecordPump | None,
    pumping: asyncio.Task[None] | None,
    redis: Redis | None,
) -> None:
    """After the drain: background tasks, AMI, then every record held, then Redis."""
    for task in tasks:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if ami is not None:
        if pump is not None and pump.owner is not None and ami[0].is_writer:
            # it held the AMI lease to its last event: it still emits the calls nobody served
            # that it has seen end (the claim's SET NX settles a race with the next holder)
            pump.owner.lease_holder = lambda: True
        await ami[0].stop()
    if pump is not None:  # after the drain and the last AMI event: hand over every record held
        handed = await stop_pump(pump, pumping)
        log.info(
            "records.flushed",
            records=handed,
            appended=pump.appended,
            backlog=len(pump.backlog),
            forwarded=pump.owner.forwarded if pump.owner is not None else 0,
            received=pump.owner.received if pump.owner is not None else 0,
        )
    if redis is not None:
        await redis.aclose()


RECORD_GRACE_S = 0.5
"""A call's record is due this long after the caller's hang-up was received. The adviser's
``Hangup`` and the ``CallDisposition`` UserEvent their hangup handler raises come in the same
millisecond as the caller's ``Hangup`` or just after it, on the same AMI connection (the
captures: all within 1 ms), so they are read in the same burst; half a second also covers a
consumer that is a few hundred milliseconds behind. A disposition sent later makes version 2."""

RECORD_PUMP_INTERVAL_S = 0.1
"""How often the pump hands due records over: with the grace, hang-up to append is at most
0.6 s, leaving the rest of the 2 s goal (hang-up to the CRM) for delivery."""


def record_pump(
    options: ServeOptions,
    holder: PlanHolder,
    redis: Redis | None = None,
    instance: str = "",
    lease_holder: Callable[[], bool] = lambda: False,
) -> RecordPump | None:
    """Contact records: one builder for this controller, fed by its facts and the AMI tap, its
    due records handed to the sink every 0.1 s. None without a caller hash key. With Redis, the
    sink is the centre's records stream and records are emitted by their owner only
    (``records.appender``)."""
    if options.records_key is None:
        log.warning("records.not_configured", reason="no caller hash key: no contact records")
        return None

    def avoidable(tenant: str | None) -> tuple[str, ...]:
        found = holder.current.plan.tenants.get(tenant or "")
        return tuple(found.avoidable_contact_reasons) if found else ()

    centre = holder.current.plan.centre
    builder = RecordBuilder(centre, options.records_key, grace_s=RECORD_GRACE_S, avoidable_reasons=avoidable)
    owner = Ownership(redis, centre, instance, lease_holder=lease_holder) if redis is not None else None
    journal, found = None, None
    if options.records_journal is not None:  # locked first: then no one else writes it
        journal = FactJournal(options.records_journal, instance)
        found = read_journal(options.records_journal)
    pump = RecordPump(
        builder,
        record_sink(options, centre, redis, holder),
        interval_s=RECORD_PUMP_INTERVAL_S,
        owner=owner,
        journal=journal,
    )
    if found is not None and found.facts:
        calls = pump.replay(found)
        log.warning("records.journal_replayed", calls=calls, segments=len(found.segments))
    return pump


def record_sink(
    options: ServeOptions, centre: str = "", redis: Redis | None = None, holder: PlanHolder | None = None
) -> RecordSink:
    """Where this controller's records go: the centre's records stream when Redis is set (and
    the JSON Lines outbox too, when one is set); else the outbox alone."""
    if redis is not None:
        # the plan in force at each record, not at start: a lambda, not a bound method
        tenant_of = (lambda d: holder.current.tenant_for(d)) if holder is not None else None  # noqa: PLW0108
        stream = StreamSink(RecordStream(redis, centre), tenant_of)
        log.info("records.stream", centre=centre, outbox=str(options.records_outbox or "") or None)
        if options.records_outbox is not None:
            return TeeSink(stream, JsonlSink(options.records_outbox))
        return stream
    if options.records_outbox is not None:
        log.info("records.outbox", path=str(options.records_outbox))
        return JsonlSink(options.records_outbox)
    return UndeliveredSink()


class UndeliveredSink:
    """No destination configured: each record is counted and dropped (one warning)."""

    def __init__(self) -> None:
        self.dropped = 0

    async def append(self, record: ContactRecord) -> None:
        if self.dropped == 0:
            log.warning(
                "records.no_destination", detail="set redis.url (the records stream) or records.outbox"
            )
        self.dropped += 1


async def _start_ami(
    options: ServeOptions,
    redis: Redis | None,
    cached: CachedLiveSource | None,
    holder: PlanHolder,
    clock: Clock,
    *,
    pump: RecordPump | None = None,
    instance: str = "",
) -> tuple[AmiConsumer, asyncio.Task[None]] | None:
    """The AMI consumer (live queue state into Redis) and the withdrawer, when AMI is set up."""
    if options.ami is None or redis is None or cached is None:
        log.info("ami.not_configured", live_state="unknown unless another instance writes it")
        return None
    instance = instance or f"{socket.gethostname()}:{os.getpid()}"
    pipeline = ami_pipeline(
        options.ami,
        redis,
        instance,
        cached,
        clock=clock,
        withdraw_interval_s=options.withdraw_interval,
        on_message=pump.ami if pump is not None else None,
    )
    await pipeline.consumer.start()
    return pipeline.consumer, asyncio.create_task(pipeline.withdrawer.run())


def parse_clock_start(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=LONDON)


def cmd_serve(args: argparse.Namespace) -> int:
    settings = settings_module.from_args(args)
    configure_logging(json=not settings.log.console, level=settings.log.level)
    loop_kind = _install_uvloop()
    centre = PlanHolder.load(settings.require_plan()).current.plan.centre
    try:
        clock_start = parse_clock_start(args.clock_start) if args.clock_start else None
    except ValueError:
        raise settings_module.SettingsError(
            f"--clock-start {args.clock_start!r}: expected YYYY-MM-DD HH:MM"
        ) from None
    options = ServeOptions.from_settings(
        settings, centre, clock_start=clock_start, clock_speed=args.clock_speed
    )
    log.info("controller.starting", loop=loop_kind)
    try:
        return asyncio.run(serve(options))
    except JournalInUse as exc:  # raised before anything listens
        print(f"callrouter: {exc}, not starting", file=sys.stderr)
        return 1


SERVE_SETTINGS = (
    "plan", "agi.host", "agi.port", "redis.url", "redis.enabled", "live_timeout_s", "agi.max_sessions",
    "agi.call_timeout_s", "agi.drain_timeout_s", "agi.allowed_peers", "agi.max_sessions_per_peer",
    "agi.max_pending", "watch_interval_s", "ami.host", "ami.port", "ami.username", "ami.centre",
    "ami.publish_queue", "log.level", "log.console", "records.outbox", "records.journal",
)  # fmt: skip


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "serve",
        help="run the controller (FastAGI) with a plan",
        description="Settings: flag > environment > settings file > default (docs/settings.md).",
    )
    settings_module.add_flags(parser, SERVE_SETTINGS)
    parser.add_argument("--clock-start", help='rehearsal: start the clock at "YYYY-MM-DD HH:MM" (London)')
    parser.add_argument("--clock-speed", type=float, default=1.0, help="rehearsal: clock speed factor")
    parser.set_defaults(handler=cmd_serve)
