"""``callrouter serve``: the controller process.

FastAGI on 127.0.0.1:4573 by default, live state from Redis (refreshed in the background, off
the call path), structured JSON logs on stdout.
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
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import structlog
from redis.asyncio import Redis

from callrouter.logs import configure_logging
from ivr.controller import Clock, Controller, LiveSource, NoLiveState, PlanError, PlanHolder, utc_now
from ivr.fastagi import FastAgiServer, ServerConfig, serve_until_signal
from routing.ami.consumer import AmiConsumer
from routing.ami.settings import AmiSettings, SettingsError
from routing.live.source import CachedLiveSource
from routing.supervisor import audit
from routing.withdrawer import ami_pipeline

log = structlog.get_logger("callrouter.service")
LONDON = ZoneInfo("Europe/London")


@dataclass(frozen=True)
class ServeOptions:
    plan: Path
    agi_host: str = "127.0.0.1"
    agi_port: int = 4573
    redis: str | None = "redis://127.0.0.1:6379/0"
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
    redis = Redis.from_url(options.redis, socket_connect_timeout=0.5, socket_timeout=2.0)
    cached = CachedLiveSource(redis, lambda: holder.current, refresh_s=options.refresh_s)
    return cached, cached, redis


def _install_uvloop() -> str:
    try:
        import uvloop  # noqa: PLC0415 - optional speed-up, imported only when present
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


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
    config = ServerConfig(
        host=options.agi_host,
        port=options.agi_port,
        max_sessions=options.max_sessions,
        call_timeout=options.call_timeout,
    )
    server = FastAgiServer(config)
    controller.register(server)
    ami = await _start_ami(options, redis, cached, holder, clock)
    loop = asyncio.get_running_loop()
    reloads: set[asyncio.Task[None]] = set()

    def on_sighup() -> None:
        task = loop.create_task(reload_plan(holder, redis, "SIGHUP"))
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, on_sighup)
    watcher = asyncio.create_task(watch_plan(holder, redis, options.watch_interval))
    refresher = asyncio.create_task(cached.run(clock)) if cached is not None else None
    try:
        await server.start()
        rehearsal = options.clock_start is not None
        log.info("controller.started", port=server.port, plan=str(options.plan), rehearsal_clock=rehearsal)
        if ready is not None:
            ready(server.port)
        await serve_until_signal(server, drain_timeout=options.drain_timeout)
    finally:
        loop.remove_signal_handler(signal.SIGHUP)
        for task in (watcher, refresher, ami[1] if ami else None):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if ami is not None:
            await ami[0].stop()
        if redis is not None:
            await redis.aclose()
    log.info("controller.stopped", **asdict(server.counters))
    return 0


async def _start_ami(
    options: ServeOptions,
    redis: Redis | None,
    cached: CachedLiveSource | None,
    holder: PlanHolder,
    clock: Clock,
) -> tuple[AmiConsumer, asyncio.Task[None]] | None:
    """The AMI consumer (live queue state into Redis) and the withdrawer, when AMI is set up."""
    if options.ami is None or redis is None or cached is None:
        log.info("ami.not_configured", live_state="unknown unless another instance writes it")
        return None
    instance = f"{socket.gethostname()}:{os.getpid()}"
    pipeline = ami_pipeline(
        options.ami, redis, instance, cached, clock=clock, withdraw_interval_s=options.withdraw_interval
    )
    await pipeline.consumer.start()
    return pipeline.consumer, asyncio.create_task(pipeline.withdrawer.run())


def _ami_settings(args: argparse.Namespace, centre: str) -> AmiSettings | None:
    if not (args.ami_host or os.environ.get("CALLROUTER_AMI_HOST")):
        return None
    try:
        settings = AmiSettings.from_env()
    except SettingsError as exc:
        raise SystemExit(f"callrouter: AMI: {exc}") from None
    overrides = {
        "host": args.ami_host,
        "port": args.ami_port,
        "username": args.ami_user,
        "publish_queue": args.publish_queue,
        "centre": args.centre or settings.centre or centre,
    }
    return dataclasses.replace(settings, **{k: v for k, v in overrides.items() if v})


def parse_clock_start(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=LONDON)


def cmd_serve(args: argparse.Namespace) -> int:
    configure_logging(json=not args.console_logs, level=args.log_level)
    loop_kind = _install_uvloop()
    centre = PlanHolder.load(args.plan).current.plan.centre
    options = ServeOptions(
        plan=Path(args.plan),
        ami=_ami_settings(args, centre),
        agi_host=args.agi_host,
        agi_port=args.agi_port,
        redis=None if args.no_redis else args.redis,
        live_timeout=args.live_timeout,
        max_sessions=args.max_sessions,
        call_timeout=args.call_timeout,
        clock_start=parse_clock_start(args.clock_start) if args.clock_start else None,
        clock_speed=args.clock_speed,
        watch_interval=args.watch_interval,
    )
    log.info("controller.starting", loop=loop_kind)
    return asyncio.run(serve(options))


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("serve", help="run the controller (FastAGI) with a plan")
    parser.add_argument("--plan", required=True)
    parser.add_argument("--agi-host", default="127.0.0.1")
    parser.add_argument("--agi-port", type=int, default=4573)
    parser.add_argument(
        "--redis", default="redis://127.0.0.1:6379/0", help="live state (default: a local server)"
    )
    parser.add_argument("--no-redis", action="store_true", help="run with live state unknown")
    parser.add_argument("--live-timeout", type=float, default=0.25, help="seconds to wait for live state")
    parser.add_argument("--max-sessions", type=int, default=1000)
    parser.add_argument("--call-timeout", type=float, default=300.0, help="longest FastAGI session (s)")
    parser.add_argument("--watch-interval", type=float, default=2.0, help="seconds between plan file checks")
    parser.add_argument(
        "--ami-host", help="Asterisk AMI host (or CALLROUTER_AMI_HOST); none: live state unknown"
    )
    parser.add_argument("--ami-port", type=int, help="AMI port (default 5038)")
    parser.add_argument("--ami-user", help="AMI username; the secret comes from CALLROUTER_AMI_SECRET(_FILE)")
    parser.add_argument("--centre", help="this centre's id for the published snapshot (default: the plan's)")
    parser.add_argument("--publish-queue", help="the Asterisk queue whose figures partners see")
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--console-logs", action="store_true", help="human-readable logs instead of JSON")
    parser.add_argument("--clock-start", help='rehearsal: start the clock at "YYYY-MM-DD HH:MM" (London)')
    parser.add_argument("--clock-speed", type=float, default=1.0, help="rehearsal: clock speed factor")
    parser.set_defaults(handler=cmd_serve)
