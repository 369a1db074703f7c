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
import hashlib
import os
import pwd
import signal
import socket
import sys
from collections.abc import Callable
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
from records.builder import RecordBuilder
from records.model import ContactRecord
from records.outbox import JsonlSink, RecordPump, RecordSink, stop_pump
from routing.ami.consumer import AmiConsumer
from routing.ami.settings import AmiSettings
from routing.live.source import CachedLiveSource
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


def _plan_files(path: Path) -> list[Path]:
    return sorted(path.glob("*.y*ml")) if path.is_dir() else [path]


def plan_digest(path: Path) -> tuple[str, str]:
    """The plan's sha256 (over its files) and the owner of the newest file: who changed it."""
    files = [f for f in _plan_files(path) if f.exists()]
    digest = hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()
    newest = max(files, key=lambda f: f.stat().st_mtime, default=None)
    try:
        owner = pwd.getpwuid(newest.stat().st_uid).pw_name if newest else "unknown"
    except KeyError:
        owner = f"uid {newest.stat().st_uid}" if newest else "unknown"
    return digest, owner


async def reload_plan(holder: PlanHolder, redis: Redis | None, trigger: str) -> None:
    """Reload (only a plan that validates is taken) and record the engineer's change in the audit trail."""
    result = holder.reload()
    if redis is None:
        return
    digest, owner = plan_digest(holder.path)
    what = "plan.reload.accepted" if result.ok else "plan.reload.rejected"
    problems = [str(p) for p in result.problems if p.severity == "error"][:20]
    try:
        details = {"path": str(holder.path), "sha256": digest, "version": holder.version, "trigger": trigger}
        await audit(redis, what, owner, utc_now(), {**details, "problems": problems})
    except Exception as exc:  # the reload itself stands; the log line says the audit entry is missing
        log.warning("audit.not_written", what=what, error=type(exc).__name__)


async def watch_plan(holder: PlanHolder, redis: Redis | None, interval: float) -> None:
    """Reload the plan when its file (or any file of its folder) changes."""

    def stamp() -> tuple[float, ...]:
        return tuple(f.stat().st_mtime for f in _plan_files(holder.path) if f.exists())

    seen = stamp()
    while True:
        await asyncio.sleep(interval)
        current = stamp()
        if current != seen:
            seen = current
            await reload_plan(holder, redis, "file changed")


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
        holder = PlanHolder.load(options.plan)
    except PlanError as exc:
        print(f"callrouter: the plan has errors, not starting:\n{exc}", file=sys.stderr)
        return 1
    live, cached, redis = _live_source(options, holder)
    clock = rehearsal_clock(options.clock_start, options.clock_speed) if options.clock_start else utc_now
    controller = Controller(holder, live, clock=clock, live_timeout=options.live_timeout)
    pump = record_pump(options, holder)
    if pump is not None:
        controller.facts = pump.fact
    server = FastAgiServer(server_config(options))
    controller.register(server)
    try:
        await server.start()
    except OSError as exc:  # a busy port, an address this host does not have
        if isinstance(exc, socket.gaierror) or not exc.errno:
            reason = exc.strerror or str(exc)  # an unknown host name
        else:
            reason = os.strerror(exc.errno)
        print(
            f"callrouter: cannot listen for FastAGI on {options.agi_host}:{options.agi_port}: {reason}",
            file=sys.stderr,
        )
        if redis is not None:
            await redis.aclose()
        return EXIT_CANNOT_LISTEN
    ami = await _start_ami(options, redis, cached, holder, clock, pump=pump)
    loop = asyncio.get_running_loop()
    reloads: set[asyncio.Task[None]] = set()

    def on_sighup() -> None:
        task = loop.create_task(reload_plan(holder, redis, "SIGHUP"))
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, on_sighup)
    watcher = asyncio.create_task(watch_plan(holder, redis, options.watch_interval))
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
        await ami[0].stop()
    if pump is not None:  # after the drain and the last AMI event: hand over every record held
        handed = await stop_pump(pump, pumping)
        log.info("records.flushed", records=handed, appended=pump.appended, backlog=len(pump.backlog))
    if redis is not None:
        await redis.aclose()


def record_pump(options: ServeOptions, holder: PlanHolder) -> RecordPump | None:
    """Contact records: one builder for this controller, fed by its facts and the AMI tap,
    its due records handed to the sink about once a second. None without a caller hash key."""
    if options.records_key is None:
        log.warning("records.not_configured", reason="no caller hash key: no contact records")
        return None

    def avoidable(tenant: str | None) -> tuple[str, ...]:
        found = holder.current.plan.tenants.get(tenant or "")
        return tuple(found.avoidable_contact_reasons) if found else ()

    builder = RecordBuilder(holder.current.plan.centre, options.records_key, avoidable_reasons=avoidable)
    return RecordPump(builder, record_sink(options))


def record_sink(options: ServeOptions) -> RecordSink:
    """Where this controller's records go: the JSON Lines outbox when one is set."""
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
            log.warning("records.no_destination", detail="set records.outbox to keep contact records")
        self.dropped += 1


async def _start_ami(
    options: ServeOptions,
    redis: Redis | None,
    cached: CachedLiveSource | None,
    holder: PlanHolder,
    clock: Clock,
    *,
    pump: RecordPump | None = None,
) -> tuple[AmiConsumer, asyncio.Task[None]] | None:
    """The AMI consumer (live queue state into Redis) and the withdrawer, when AMI is set up."""
    if options.ami is None or redis is None or cached is None:
        log.info("ami.not_configured", live_state="unknown unless another instance writes it")
        return None
    instance = f"{socket.gethostname()}:{os.getpid()}"
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
    return asyncio.run(serve(options))


SERVE_SETTINGS = (
    "plan", "agi.host", "agi.port", "redis.url", "redis.enabled", "live_timeout_s", "agi.max_sessions",
    "agi.call_timeout_s", "agi.drain_timeout_s", "agi.allowed_peers", "agi.max_sessions_per_peer",
    "agi.max_pending", "watch_interval_s", "ami.host", "ami.port", "ami.username", "ami.centre",
    "ami.publish_queue", "log.level", "log.console", "records.outbox",
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
