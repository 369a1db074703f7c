"""``callrouter records export|find|purge|archive`` and ``callrouter report``: the council's data.

All read the owner's archive (the setting ``records.archive_dir``: ``--archive DIR`` or
``CALLROUTER_RECORDS_ARCHIVE_DIR``; ``records.archive``), which ``records deliver`` writes,
and take the plan and Redis from the settings like ``toggle`` (``docs/settings.md``). A tenant is
always named (``--tenant``): nothing here reads across councils. Every export, search, report,
archiving and purge is audited (who: ``--by`` or the OS user; what; when) in the audit stream in
Redis, or, with ``--no-redis`` or Redis not reachable, in ``audit.jsonl`` in the archive directory
(stderr says which). Nothing is read before its audit entry is stored.

The caller hash key (for ``find``) is the one ``serve`` hashes with: the setting
``records.caller_hash_key`` (``CALLROUTER_RECORDS_CALLER_HASH_KEY`` or ``..._FILE``), or a file
named by ``--caller-key-file``; never logged.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import IO, Any
from zoneinfo import ZoneInfo

from redis.exceptions import RedisError

from callrouter import settings as settings_module
from callrouter.settings import Settings
from records.archive import Archive, ArchiveError, tenant_folder
from records.builder import MIN_KEY_BYTES, caller_hash
from records.export import WRITERS, FileAudit, audit_entry_for, find
from records.kpi import PERIODS, Range, report, settings_for
from routing.core.plan import Plan, Tenant
from routing.masking import mask_number
from routing.plan_file import load_plan
from routing.supervisor import MAX_BY, ToggleError, audit, check_text

EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE = 0, 1, 2
ARCHIVE_ENV = "CALLROUTER_RECORDS_ARCHIVE_DIR"  # the setting records.archive_dir
KEY_ENV = "CALLROUTER_RECORDS_CALLER_HASH_KEY"  # the setting records.caller_hash_key
KEY_FILE_ENV = KEY_ENV + "_FILE"
LONDON = ZoneInfo("Europe/London")
Handler = Callable[[argparse.Namespace], int]


class Refused(Exception):
    """A request this command will not carry out; the message says why. Exit 2."""


# --- what every command needs ------------------------------------------------------------------


def _settings(args: argparse.Namespace) -> Settings:
    return settings_module.from_args(args)


def _plan(settings: Settings) -> Plan | None:
    if settings.plan is None:
        return None
    result = load_plan(settings.plan)
    if not result.ok or result.plan is None:
        raise Refused(f"the plan {settings.plan} has errors: check it with `callrouter plan check`")
    return result.plan


def _tenant(plan: Plan | None, name: str) -> Tenant | None:
    tenant_folder(name)  # a plan name, or refused
    if plan is None:
        return None
    if name not in plan.tenants:
        raise Refused(f"--tenant {name}: not a tenant of the plan (known: {', '.join(sorted(plan.tenants))})")
    return plan.tenants[name]


def _archive(settings: Settings) -> Archive:
    root = settings.records.archive_dir
    if root is None:
        raise Refused(f"no archive: give --archive DIR or set {ARCHIVE_ENV} (or records.archive_dir)")
    return Archive(root)


def _by(args: argparse.Namespace) -> str:
    given = args.by if args.by is not None else getpass.getuser()
    try:
        return check_text("--by", given, MAX_BY)
    except ToggleError as exc:
        raise Refused(str(exc)) from None


def _day(text: str, flag: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise Refused(f"{flag} '{text}' is not a date (YYYY-MM-DD)") from None


def _range(first: str, last: str, prefix: str = "") -> Range:
    span = Range(_day(first, f"--{prefix}from"), _day(last, f"--{prefix}to"))
    if span.last < span.first:
        raise Refused(f"--{prefix}to {span.last} is before --{prefix}from {span.first}")
    return span


def caller_key(args: argparse.Namespace, settings: Settings) -> bytes:
    """The caller hash key: the one ``serve`` hashes with (the setting ``records.caller_hash_key``:
    ``CALLROUTER_RECORDS_CALLER_HASH_KEY`` or ``..._FILE``), or a file named by
    ``--caller-key-file`` (its bytes, without a final new line)."""
    if args.caller_key_file:
        try:
            key = Path(args.caller_key_file).read_bytes().rstrip(b"\r\n")
        except OSError as exc:
            raise Refused(f"caller hash key file {args.caller_key_file}: {exc.strerror}") from None
    elif settings.records.caller_hash_key is not None:
        key = settings.records.caller_hash_key.get_secret_value().encode("utf-8")
    else:
        raise Refused(f"no caller hash key: give --caller-key-file FILE, or set {KEY_FILE_ENV} or {KEY_ENV}")
    if len(key) < MIN_KEY_BYTES:
        raise Refused(f"the caller hash key must be at least {MIN_KEY_BYTES} bytes")
    return key


def record_audit(args: argparse.Namespace, settings: Settings, what: str, **details: Any) -> str:
    """Store the audit entry (Redis, else the archive's audit file); returns where it went."""
    by, now = _by(args), datetime.now(UTC)
    if settings.redis.enabled:
        try:
            asyncio.run(_audit_redis(settings, what, by, now, details))
            return "the audit stream in Redis"
        except (RedisError, OSError) as exc:
            reason = f"Redis not reachable ({type(exc).__name__})"
    else:
        reason = "--no-redis"
    trail = FileAudit(_archive(settings).root)
    trail.append(audit_entry_for(what, by, now, **details))
    print(f"callrouter: {reason}: audited in {trail.path}", file=sys.stderr)
    return str(trail.path)


async def _audit_redis(
    settings: Settings, what: str, by: str, now: datetime, details: dict[str, Any]
) -> None:
    redis = settings.redis_client(connect_timeout=2, timeout=5)
    try:
        await audit(redis, what, by, now, details, keys=settings.redis_keys())
    finally:
        await redis.aclose()


class Progress:
    """A one-line progress bar on ``stream`` (stderr), drawn only when it is a terminal."""

    def __init__(self, label: str, total: int, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stderr
        self.shown = self.stream.isatty()
        self.label, self.total, self.done, self.records = label, max(total, 1), 0, 0

    def day_done(self) -> None:
        self.done += 1
        self.draw()

    def draw(self) -> None:
        if not self.shown:
            return
        width = 30
        filled = width * self.done // self.total
        bar = "#" * filled + "-" * (width - filled)
        self.stream.write(f"\r{self.label} [{bar}] {self.done}/{self.total} days, {self.records:,} records")
        self.stream.flush()

    def close(self) -> None:
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()


def _days_in(archive: Archive, tenant: str, start: datetime, end: datetime) -> list[date]:
    first, last = start.astimezone(UTC).date(), end.astimezone(UTC).date()
    return [d for d in archive.days(tenant) if first <= d <= last]


# --- records export ----------------------------------------------------------------------------


def _zone(tenant: Tenant | None) -> ZoneInfo:
    return tenant.zone() if tenant is not None else LONDON


def _open_out(path: str | None) -> tuple[IO[str], Path | None]:
    """stdout, or a temporary file beside ``path`` (mode 0600: personal data) renamed when done."""
    if path is None:
        return sys.stdout, None
    target = Path(path)
    tmp = target.with_name(f".{target.name}.partial")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    return os.fdopen(fd, "w", encoding="utf-8", newline=""), tmp


def _close_out(out: IO[str], tmp: Path | None, target: str | None, ok: bool) -> None:
    if tmp is None or target is None:
        out.flush()
        return
    out.flush()
    os.fsync(out.fileno())
    out.close()
    if ok:
        os.replace(tmp, target)
    else:
        tmp.unlink(missing_ok=True)


def cmd_export(args: argparse.Namespace) -> int:
    settings = _settings(args)
    tenant = _tenant(_plan(settings), args.tenant)
    archive = _archive(settings)
    span = _range(args.date_from, args.date_to)
    start, end = span.bounds(_zone(tenant))
    record_audit(args, settings, "records.export", tenant=args.tenant, **{"from": span.first.isoformat()},
                 to=span.last.isoformat(), format=args.format, out=args.out or "stdout")  # fmt: skip
    days = _days_in(archive, args.tenant, start, end)
    progress = Progress(f"export {args.tenant}", len(days))
    out, tmp = _open_out(args.out)
    ok = False
    try:
        written = WRITERS[args.format](
            _by_day(archive, args.tenant, days, start, end, progress=progress), out
        )
        for _ in written:
            progress.records += 1
        ok = True
    finally:
        progress.close()
        _close_out(out, tmp, args.out, ok)
    if args.out:
        print(f"{progress.records:,} records of {args.tenant} written to {args.out}", file=sys.stderr)
    return EXIT_OK


def _by_day(
    archive: Archive, tenant: str, days: list[date], start: datetime, end: datetime, *, progress: Progress
) -> Iterator[Any]:
    for day in days:
        for record in archive.latest(tenant, day):
            if start <= record.arrived_at < end and record.tenant == tenant:
                yield record
        progress.day_done()


# --- records find ------------------------------------------------------------------------------


def cmd_find(args: argparse.Namespace) -> int:
    settings = _settings(args)
    tenant = _tenant(_plan(settings), args.tenant)
    archive = _archive(settings)
    key = caller_key(args, settings)
    number = sys.stdin.readline().strip() if args.caller == "-" else args.caller.strip()
    if not number or len(number) > 40:
        raise Refused(
            "--caller: give the caller's number (at most 40 characters), or - to read it from stdin"
        )
    days = archive.days(args.tenant)
    if args.date_from or args.date_to:
        span = _range(args.date_from or "1970-01-01", args.date_to or "9999-12-30")
        start, end = span.bounds(_zone(tenant))
        days = _days_in(archive, args.tenant, start, end)
    record_audit(args, settings, "records.find", tenant=args.tenant, caller_hash=caller_hash(key, number),
                 caller=mask_number(number), format=args.format)  # fmt: skip
    progress = Progress(f"find in {args.tenant}", len(days))
    found = _find_by_day(archive, args.tenant, key, number, days, progress=progress)
    try:
        if args.format == "text":
            count = 0
            for record in found:
                count += 1
                print(_summary(record))
            print(f"{count} record(s) of {args.tenant} for caller {mask_number(number)}", file=sys.stderr)
        else:
            out, tmp = _open_out(args.out)
            ok = False
            try:
                for _ in WRITERS[args.format](found, out):
                    pass
                ok = True
            finally:
                _close_out(out, tmp, args.out, ok)
    finally:
        progress.close()
    return EXIT_OK


def _find_by_day(
    archive: Archive, tenant: str, key: bytes, number: str, days: list[date], *, progress: Progress
) -> Iterator[Any]:
    for day in days:
        yield from find(archive, tenant, key, number, [day])
        progress.day_done()


def _summary(record: Any) -> str:
    outcome = (
        record.queues[-1].outcome if record.queues else ("ivr abandoned" if record.ivr.abandoned else "-")
    )
    disposition = record.disposition.kind if record.disposition else "-"
    return (
        f"{record.arrived_at.isoformat()}  {record.id} v{record.version}  centre {record.centre}  "
        f"queue {outcome}  disposition {disposition}"
    )


# --- records archive / purge -------------------------------------------------------------------


def _policy_tenants(args: argparse.Namespace, plan: Plan | None) -> dict[str, Tenant]:
    if plan is None:
        raise Refused("the tenants' archive age and retention come from the plan: give --plan PLAN")
    if args.all:
        return dict(plan.tenants)
    tenant = _tenant(plan, args.tenant)
    assert tenant is not None
    return {args.tenant: tenant}


def cmd_archive(args: argparse.Namespace) -> int:
    return _age_command(args, "archive")


def cmd_purge(args: argparse.Namespace) -> int:
    return _age_command(args, "purge")


def _age_command(args: argparse.Namespace, action: str) -> int:
    settings = _settings(args)
    tenants = _policy_tenants(args, _plan(settings))
    archive = _archive(settings)
    today = datetime.now(UTC).date()
    for name, tenant in tenants.items():
        days = tenant.records.archive_after_days if action == "archive" else tenant.records.retention_days
        if days is None:
            print(f"{name}: no records.{'archive_after_days' if action == 'archive' else 'retention_days'} "
                  "in the plan: nothing to do")  # fmt: skip
            continue
        if args.dry_run:
            cutoff = today - timedelta(days=days)
            due = [d.isoformat() for d in archive.days(name) if d < cutoff]
            print(f"{name}: would {action} {len(due)} day(s): {', '.join(due) or 'none'}")
            continue
        changes = (
            archive.compress(name, today, days) if action == "archive" else archive.purge(name, today, days)
        )
        if changes:
            record_audit(args, settings, f"records.{action}", tenant=name, older_than_days=days,
                         days=[c.day.isoformat() for c in changes],
                         record_versions=sum(c.versions for c in changes))  # fmt: skip
        verb = "compressed" if action == "archive" else "purged"
        print(f"{name}: {verb} {len(changes)} day(s), {sum(c.versions for c in changes)} record versions")
    return EXIT_OK


# --- report ------------------------------------------------------------------------------------


def cmd_report(args: argparse.Namespace) -> int:
    settings = _settings(args)
    plan = _plan(settings)
    tenant = _tenant(plan, args.tenant)
    archive = _archive(settings)
    span = _range(args.date_from, args.date_to)
    kpi_settings = settings_for(tenant, args.service_level)
    baseline = None
    if args.baseline_from or args.baseline_to:
        if not (args.baseline_from and args.baseline_to):
            raise Refused("give both --baseline-from and --baseline-to")
        base_span = _range(args.baseline_from, args.baseline_to, "baseline-")
        baseline = (base_span, archive.records(args.tenant, *base_span.bounds(kpi_settings.zone)))
    record_audit(args, settings, "records.report", tenant=args.tenant, **{"from": span.first.isoformat()},
                 to=span.last.isoformat(), format=args.format)  # fmt: skip
    records = archive.records(args.tenant, *span.bounds(kpi_settings.zone))
    data = report(args.tenant, records, span, args.period, kpi_settings,
                  generated_at=datetime.now(UTC), baseline=baseline)  # fmt: skip
    # imported here: matplotlib takes a while to load, and no other command needs it
    from records.report import render_csv, render_html, render_json  # noqa: PLC0415

    if args.format == "html":
        text = render_html(data, tenant.name if tenant is not None else args.tenant)
    elif args.format == "json":
        text = render_json(data)
    else:
        text = render_csv(data)
    if args.out is None:
        sys.stdout.write(text)
        return EXIT_OK
    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"report-{args.tenant}-{span.first}-{span.last}.{args.format}"
    tmp = target.with_name(f".{target.name}.partial")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, target)
    print(f"report written to {target}", file=sys.stderr)
    return EXIT_OK


# --- the command line --------------------------------------------------------------------------


def _guarded(handler: Handler) -> Handler:
    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except (Refused, ArchiveError) as exc:
            print(f"callrouter: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except OSError as exc:  # the archive or the output cannot be read or written
            print(f"callrouter: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
            return EXIT_PROBLEMS

    return run


def _common(parser: argparse.ArgumentParser) -> None:
    settings_module.add_flags(parser, ("plan", "redis.url", "redis.enabled", "records.archive_dir"))
    parser.add_argument("--by", help="who is asking, for the audit trail (default: the OS user)")


def add_records_commands(records: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``export``, ``find``, ``archive`` and ``purge`` under the ``records`` command's subparsers."""
    export = records.add_parser(
        "export", help="every record of a council in a date range (JSON Lines or CSV)"
    )
    export.add_argument("--tenant", required=True, help="the council (the plan's tenant id)")
    export.add_argument(
        "--from", dest="date_from", required=True, metavar="DATE", help="first day, YYYY-MM-DD"
    )
    export.add_argument("--to", dest="date_to", required=True, metavar="DATE", help="last day, included")
    export.add_argument("--format", choices=tuple(WRITERS), default="jsonl")
    export.add_argument("--out", metavar="FILE", help="write to FILE (mode 0600) instead of stdout")
    export.set_defaults(handler=_guarded(cmd_export))

    search = records.add_parser(
        "find", help="subject access: a caller's records, by their number's keyed hash"
    )
    search.add_argument("--tenant", required=True, help="the council (the plan's tenant id)")
    search.add_argument(
        "--caller", required=True, metavar="NUMBER", help="the number (- reads it from stdin)"
    )
    search.add_argument("--from", dest="date_from", metavar="DATE")
    search.add_argument("--to", dest="date_to", metavar="DATE")
    search.add_argument("--format", choices=("text", *WRITERS), default="text")
    search.add_argument("--out", metavar="FILE", help="with --format jsonl|csv: write to FILE")
    search.add_argument("--caller-key-file", metavar="FILE", help=f"the caller hash key (or {KEY_FILE_ENV})")
    search.set_defaults(handler=_guarded(cmd_find))

    for name, action, text in (
        ("archive", cmd_archive, "gzip the days older than each tenant's records.archive_after_days"),
        ("purge", cmd_purge, "delete the days older than each tenant's records.retention_days"),
    ):
        parser = records.add_parser(name, help=text)
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument("--tenant", help="one council")
        which.add_argument("--all", action="store_true", help="every tenant of the plan")
        parser.add_argument("--dry-run", action="store_true", help="say which days, change nothing")
        parser.set_defaults(handler=_guarded(action))

    for parser in (export, search, *(records.choices[n] for n in ("archive", "purge"))):
        _common(parser)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``callrouter report``."""
    parser = sub.add_parser("report", help="a council's KPIs from its contact records (HTML, JSON or CSV)")
    parser.add_argument("--tenant", required=True, help="the council (the plan's tenant id)")
    parser.add_argument(
        "--from", dest="date_from", required=True, metavar="DATE", help="first day, YYYY-MM-DD"
    )
    parser.add_argument("--to", dest="date_to", required=True, metavar="DATE", help="last day, included")
    parser.add_argument("--period", choices=PERIODS, default="day", help="one row per day, week or month")
    parser.add_argument("--format", choices=("html", "json", "csv"), default="html")
    parser.add_argument("--out", metavar="DIR", help="write report-TENANT-FROM-TO.FORMAT in DIR")
    parser.add_argument("--baseline-from", metavar="DATE", help="a baseline period to compare against")
    parser.add_argument("--baseline-to", metavar="DATE")
    parser.add_argument(
        "--service-level",
        type=float,
        metavar="SECONDS",
        help="service-level time (default: the plan's records.service_level_s, else 20)",
    )
    _common(parser)
    parser.set_defaults(handler=_guarded(cmd_report))
