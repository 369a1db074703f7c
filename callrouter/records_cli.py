"""``callrouter records``: the delivery worker and what an operator does about deliveries.

``records deliver`` runs the worker (its own process: nothing here touches the call path), which
also writes every version to the owner's archive (``records.archive_dir``, always on);
``status``, ``dead-letters``, ``retry`` and ``replay`` read and steer its state in Redis. All take
the plan and Redis from the settings (``--plan``, ``--redis``, ``docs/settings.md``); the plan
names each tenant's sinks (``crm:`` in ``docs/routing-plan.md``). Design and guarantees:
``docs/contact-records-delivery.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from callrouter import settings as settings_module
from callrouter import systemd
from callrouter.logs import configure_logging
from callrouter.ops import OpsListener, Readiness
from callrouter.settings import Settings, SettingsError
from ivr.controller import PlanHolder
from records import admin
from records.archive import NO_TENANT, Archive
from records.delivery import DeliveryWorker, Policy
from records.sinks import ARCHIVE_SINK, SecretError, archive_sinks, sinks_from_plan
from routing.core.plan import Plan
from routing.metrics import set_info
from routing.supervisor import shown

EXIT_OK, EXIT_NOTHING, EXIT_UNREACHABLE = 0, 1, 3


def _print(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, indent=2, default=str) if args.json else text)


def _plan(settings: Settings) -> Plan:
    return PlanHolder.load(settings.require_plan()).current.plan


def _sinks(plan: Plan, tenant: str | None = None, sink: str | None = None) -> list[str]:
    if tenant is not None and tenant not in plan.tenants:
        raise SettingsError(f"--tenant {tenant}: unknown tenant (known: {', '.join(sorted(plan.tenants))})")
    found = [
        f"{tid}/{name}"
        for tid, t in plan.tenants.items()
        if tenant in (None, tid)
        for name in (ARCHIVE_SINK, *(t.crm.sinks if t.crm else {}))
    ] + ([f"{NO_TENANT}/{ARCHIVE_SINK}"] if tenant is None else [])
    if sink is not None:
        found = [s for s in found if sink in (s, s.split("/", 1)[1])]
        if not found:
            raise SettingsError(f"--sink {sink}: no such CRM sink in the plan")
    return found


def _run(
    args: argparse.Namespace, command: Callable[[argparse.Namespace, Settings, Redis], Awaitable[int]]
) -> int:
    settings = settings_module.from_args(args)
    where = settings_module.redacted(settings.redis.url)

    async def go() -> int:
        redis = settings.redis_client(connect_timeout=2, timeout=10)
        try:
            return await command(args, settings, redis)
        finally:
            await redis.aclose()

    try:
        return asyncio.run(go())
    except (RedisError, OSError) as exc:
        print(f"callrouter: Redis at {where} did not answer: {type(exc).__name__}", file=sys.stderr)
        return EXIT_UNREACHABLE


# --- deliver ----------------------------------------------------------------------------------


async def _deliver(args: argparse.Namespace, settings: Settings, redis: Redis) -> int:
    plan = _plan(settings)
    root = settings.records.archive_dir
    if root is None:
        raise SettingsError(
            "no archive directory: the owner's archive is always written "
            "(give --archive DIR or set CALLROUTER_RECORDS_ARCHIVE_DIR)"
        )
    try:
        sinks = {**archive_sinks(plan, Archive(root)), **sinks_from_plan(plan)}
    except SecretError as exc:
        raise SettingsError(str(exc)) from None
    worker = DeliveryWorker(
        redis,
        plan.centre,
        sinks,
        consumer=args.consumer,
        policy=Policy(lease_s=args.lease_s),
        keys=settings.redis_keys(),
    )
    stop = asyncio.Event()
    readiness = Readiness({"worker_running": True, "not_stopping": True})
    notifier = systemd.Notifier.from_environ()

    def stopping() -> None:
        readiness.set("not_stopping", False)  # /ready says 503 before the worker winds down
        notifier.stopping()
        stop.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping)
    ops = None
    if settings.ops.port is not None:
        ops = OpsListener(settings.ops.host, settings.ops.port, readiness)
        await ops.start()
    set_info("deliver", worker.consumer)
    measuring = asyncio.create_task(measure_backlog(redis, worker, stop))
    notifier.ready("delivering")  # Type=notify units; watchdog pings from the loop
    try:
        await worker.run(stop)
    finally:
        readiness.set("worker_running", False)
        await notifier.close()
        measuring.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await measuring
        if ops is not None:
            await ops.stop()
    return EXIT_OK


BACKLOG_EVERY_S = 5.0
"""How often ``records deliver`` reads each sink's backlog from Redis for ``/metrics``."""


async def measure_backlog(redis: Redis, worker: DeliveryWorker, stop: asyncio.Event) -> None:
    """Keep ``callrouter_records_backlog`` per sink (as ``records status`` counts it)."""
    while not stop.is_set():
        for sink in worker.workers:
            try:
                status = await admin.sink_status(redis, worker.centre, sink.sink.name, worker.keys)
            except (RedisError, OSError):
                continue  # the worker logs Redis trouble; the gauge keeps its last value
            sink.metrics.backlog.set(status.backlog)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), BACKLOG_EVERY_S)


def cmd_deliver(args: argparse.Namespace) -> int:
    configure_logging(json=not sys.stdout.isatty())
    return _run(args, _deliver)


# --- status -------------------------------------------------------------------------------------


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return (
        f"{seconds:.0f}s"
        if seconds < 120
        else f"{seconds / 60:.0f}m"
        if seconds < 7200
        else f"{seconds / 3600:.1f}h"
    )


async def _status(args: argparse.Namespace, settings: Settings, redis: Redis) -> int:
    plan = _plan(settings)
    now = time.time()
    rows = [
        (await admin.sink_status(redis, plan.centre, s, settings.redis_keys())).as_dict(now)
        for s in _sinks(plan, args.tenant, args.sink)
    ]
    lines = [f"{'sink':<28} {'backlog':>9} {'oldest':>7} {'dead':>6} {'delivered':>10}  breaker"]
    for r in rows:
        backlog = f"{r['backlog']}{'' if r['backlog_exact'] else '+'}"
        lines.append(
            f"{r['sink']:<28} {backlog:>9} {_age(r['oldest_undelivered_age_s']):>7} "
            f"{r['dead_letters']:>6} {r['delivered']:>10}  {r['breaker']}"
            + (f"  last error: {shown(r['last_error'], 120)}" if r["last_error"] else "")
        )
    _print(
        args, {"centre": plan.centre, "at": now, "sinks": rows}, "\n".join(lines) if rows else "no CRM sinks"
    )
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    return _run(args, _status)


# --- dead letters and retry ---------------------------------------------------------------------


async def _dead(args: argparse.Namespace, settings: Settings, redis: Redis) -> int:
    plan = _plan(settings)
    letters = [
        letter
        for s in _sinks(plan, args.tenant, args.sink)
        for letter in await admin.dead_letters(redis, plan.centre, s, settings.redis_keys())
    ]
    lines = [
        f"{shown(d['sink'], 60)} {shown(d['id'], 140)}  {d['status']}  "
        f"{datetime.fromtimestamp(d['at'] or 0, UTC):%Y-%m-%d %H:%M:%S}Z  {shown(d['answer'], 200)}"
        for d in letters
    ]
    _print(args, letters, "\n".join(lines) or "no dead letters")
    return EXIT_OK


def cmd_dead_letters(args: argparse.Namespace) -> int:
    return _run(args, _dead)


async def _retry(args: argparse.Namespace, settings: Settings, redis: Redis) -> int:
    plan = _plan(settings)
    if (args.id is None) == (not args.all):
        raise SettingsError("give a dead letter's ID (RECORD_ID or RECORD_ID:VERSION) or --all")
    wanted = None if args.all else [args.id]
    queued = {
        s: await admin.retry(redis, plan.centre, s, wanted, settings.redis_keys())
        for s in _sinks(plan, args.tenant, args.sink)
    }
    total = sum(queued.values())
    _print(args, {"queued": queued, "total": total}, f"{total} dead letter(s) queued for delivery again")
    if args.id is not None and not total:
        print(f"callrouter: no dead letter matches {shown(args.id, 140)}", file=sys.stderr)
        return EXIT_NOTHING
    return EXIT_OK


def cmd_retry(args: argparse.Namespace) -> int:
    return _run(args, _retry)


# --- replay -------------------------------------------------------------------------------------


def _moment(text: str, zone: Any, *, end: bool) -> datetime:
    """``YYYY-MM-DD`` (the whole day in the tenant's zone) or an ISO date-time."""
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            start = datetime.combine(day, clock_time(0), zone)
            return start + timedelta(days=1) - timedelta(microseconds=1) if end else start
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise SettingsError(f"'{text}' is not a date (YYYY-MM-DD) or a date-time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=zone)


async def _replay(args: argparse.Namespace, settings: Settings, redis: Redis) -> int:
    plan = _plan(settings)
    sinks = _sinks(plan, args.tenant, args.sink)
    if not sinks:
        raise SettingsError(f"tenant {args.tenant} has no CRM sink in the plan")
    zone = plan.tenants[args.tenant].zone()
    start, end = _moment(args.start, zone, end=False), _moment(args.end, zone, end=True)
    if end < start:
        raise SettingsError("--to is before --from")
    queued, kept_from = await admin.replay(
        redis, plan.centre, args.tenant, sinks, start=start, end=end, keys=settings.redis_keys()
    )
    note = ""
    if kept_from is not None and kept_from > start.timestamp():
        since = datetime.fromtimestamp(kept_from, UTC)
        note = f" (the stream keeps records appended since {since:%Y-%m-%d %H:%M}Z)"
    data = {"tenant": args.tenant, "sinks": sinks, "from": start, "to": end, "queued": queued}
    data["kept_from"] = kept_from
    _print(args, data, f"{queued} record version(s) queued again for {', '.join(sinks)}{note}")
    return EXIT_OK


def cmd_replay(args: argparse.Namespace) -> int:
    return _run(args, _replay)


def add_records_commands(cmds: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``callrouter records deliver|status|dead-letters|retry|replay``."""
    deliver = cmds.add_parser("deliver", help="run the delivery worker until SIGTERM/SIGINT")
    deliver.add_argument("--consumer", help="this worker's name in the consumer groups (default: random)")
    deliver.add_argument(
        "--lease-s", type=float, default=Policy().lease_s,
        help="how soon a standby worker takes over from one that died (seconds, default %(default)s)",
    )  # fmt: skip
    status = cmds.add_parser("status", help="backlog, oldest undelivered age and dead letters per sink")
    dead = cmds.add_parser("dead-letters", help="record versions a CRM refused, with its answer")
    retry = cmds.add_parser("retry", help="send dead letters again")
    retry.add_argument("id", nargs="?", help="RECORD_ID or RECORD_ID:VERSION")
    retry.add_argument("--all", action="store_true", help="every dead letter (of --tenant / --sink)")
    replay = cmds.add_parser("replay", help="send a tenant's records appended in a range again")
    replay.add_argument("--from", dest="start", required=True, help="YYYY-MM-DD or date-time (tenant's zone)")
    replay.add_argument("--to", dest="end", required=True, help="YYYY-MM-DD (whole day) or date-time")
    settings_module.add_flags(deliver, ("plan", "redis.url", "records.archive_dir", "ops.host", "ops.port"))
    for parser in (status, dead, retry, replay):
        settings_module.add_flags(parser, ("plan", "redis.url"))
    for parser in (status, dead, retry, replay):
        parser.add_argument("--json", action="store_true", help="machine-readable output")
        parser.add_argument("--sink", help="one sink: NAME or TENANT/NAME")
        if parser is not replay:
            parser.add_argument("--tenant")
    replay.add_argument("--tenant", required=True)
    deliver.set_defaults(handler=cmd_deliver)
    status.set_defaults(handler=cmd_status)
    dead.set_defaults(handler=cmd_dead_letters)
    retry.set_defaults(handler=cmd_retry)
    replay.set_defaults(handler=cmd_replay)
