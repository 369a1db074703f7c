"""The ``callrouter`` command line.

``callrouter plan check|explain|timeline|diff`` lets a telephony engineer see what
a plan does before it goes live. Results go to stdout (``--json`` for machines);
errors go to stderr with a non-zero exit: 1 for a plan with errors, 2 for a bad
command line or setting (``docs/settings.md``). ``plan diff`` exits as ``diff`` does: 0 the
same, 1 different, 2 trouble (a plan with errors included).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Callable, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo

from callrouter import (
    callbacks_cli,
    plan_store_cli,
    records_cli,
    redis_cli,
    report_cli,
    service,
    simulate,
    supervisor_cli,
    web_cli,
)
from callrouter.settings import SettingsError
from emulator import centre
from ivr import static_dialplan
from ivr.controller import PlanError
from routing.core import numbers
from routing.core.decide import Call, CompiledPlan, Decision, decide, describe
from routing.core.diff import Difference, differences, local_day_bounds
from routing.core.language import choice_for
from routing.core.live import LiveState, QueueSnapshot, Toggle, Toggles
from routing.core.problems import errors
from routing.core.prompts import Exists, missing_prompts
from routing.core.schedule import timeline
from routing.plan_file import LoadResult, load_plan
from routing.plan_store import difference_data, transition_data

EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE = 0, 1, 2
EXIT_DIFFERENT = 1  # plan diff: the plans differ
Handler = Callable[[argparse.Namespace], int]


class UsageError(Exception):
    """A command-line value that cannot be used; reported on stderr with exit 2."""


class PlanRejected(Exception):
    """The plan has errors; they were listed on stderr. Exit 1."""


def _emit(args: argparse.Namespace, data: Any, text: str, out: TextIO | None = None) -> None:
    stream = out or sys.stdout
    if args.json:
        json.dump(data, stream, indent=2, default=str)
        stream.write("\n")
    else:
        stream.write(text + ("\n" if text and not text.endswith("\n") else ""))


def _load(path: str) -> CompiledPlan:
    result = load_plan(path)
    if not result.ok or result.plan is None:
        for problem in errors(result.problems):
            print(problem, file=sys.stderr)
        raise PlanRejected

    return CompiledPlan.compile(result.plan)


# --- plan check ------------------------------------------------------------------------------


def recordings(root: Path) -> Exists:
    """What a folder of prompts holds, in Asterisk's layout ``<root>/<language>/<prompt>.<format>``
    (any format: wav, gsm, ulaw, sln16...): ``exists(language, prompt)``. Read once."""
    found = {
        path.relative_to(root).with_suffix("").as_posix()
        for path in root.rglob("*")
        if path.suffix and path.is_file()
    }
    return lambda language, prompt: f"{language}/{prompt}" in found


def cmd_check(args: argparse.Namespace) -> int:
    more_checks = None
    if args.prompts is not None:
        root = Path(args.prompts)
        if not root.is_dir():
            raise UsageError(f"--prompts '{args.prompts}' is not a folder")
        exists = recordings(root)
        more_checks = functools.partial(missing_prompts, exists=exists)
    result: LoadResult = load_plan(args.plan, more_checks=more_checks)
    failed = bool(errors(result.problems)) or result.plan is None
    lines = [str(p) for p in result.problems]
    if not failed:
        tenants = len(result.plan.tenants) if result.plan else 0
        lines.append(f"{args.plan}: OK ({tenants} tenants, {len(lines)} warnings)")
    data = {"ok": not failed, "problems": [p.as_dict() for p in result.problems]}
    _emit(args, data, "\n".join(lines), sys.stderr if failed and not args.json else None)
    return EXIT_PROBLEMS if failed else EXIT_OK


# --- plan explain ----------------------------------------------------------------------------


def parse_at(text: str, zone: ZoneInfo) -> datetime:
    """``"2026-04-03 10:00[:SS]"`` in ``zone`` (or with an explicit offset) -> aware datetime."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--at '{text}' is not a date-time (expected YYYY-MM-DD HH:MM[:SS])") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=zone)


def parse_queue_state(text: str, now: datetime) -> QueueSnapshot:
    """``NAME:waiting=N,longest=S,available=N[,logged_in=N]`` -> a snapshot observed now."""
    name, _, figures = text.partition(":")
    values: dict[str, float] = {}
    for item in filter(None, figures.split(",")):
        key, _, raw = item.partition("=")
        if key not in ("waiting", "longest", "available", "logged_in"):
            raise UsageError(
                f"--queue '{text}': unknown figure '{key}' (waiting, longest, available, logged_in)"
            )
        try:
            values[key] = float(raw)
        except ValueError:
            raise UsageError(f"--queue '{text}': '{raw}' is not a number") from None
    available = int(values.get("available", 0))
    logged_in = int(values.get("logged_in", max(available, 1 if "available" in values else 0)))
    return QueueSnapshot(
        name, int(values.get("waiting", 0)), values.get("longest", 0.0), logged_in, available, now
    )


def _snapshots(
    texts: Sequence[str], plan: CompiledPlan, tenant: str | None, now: datetime
) -> dict[str, QueueSnapshot]:
    """Snapshots by Asterisk queue name; a plan queue name of the tenant is accepted too."""
    queues = plan.plan.tenants[tenant].queues if tenant else {}
    result = {}
    for text in texts:
        snap = parse_queue_state(text, now)
        asterisk = queues[snap.queue].asterisk_queue if snap.queue in queues else snap.queue
        result[asterisk] = snap
    return result


def _toggles(args: argparse.Namespace, plan: CompiledPlan, now: datetime) -> Toggles:
    far = datetime.max.replace(tzinfo=ZoneInfo("UTC"))
    made: dict[str, dict[str, Toggle]] = {"emergency": {}, "closure": {}}
    for kind, tenants in (("emergency", args.emergency), ("closure", args.closed)):
        for tid in tenants or ():
            if tid not in plan.plan.tenants:
                raise UsageError(f"--{'closed' if kind == 'closure' else kind} {tid}: unknown tenant")
            made[kind][tid] = Toggle(reason="explain --" + kind, by="cli", expires_at=far)
    return Toggles(emergency=made["emergency"], closure=made["closure"])


def decision_data(decision: Decision, at: datetime) -> dict[str, Any]:
    return {
        "at": at.isoformat(),
        "tenant": decision.tenant,
        "state": decision.state,
        "destination": decision.destination.model_dump(),
        "summary": describe(decision.destination),
        "language": decision.language,
        "prompts": decision.prompts,
        "prelude": [{"prompt": p.prompt, "skippable": p.skippable} for p in decision.prelude],
        "reasons": list(decision.reasons),
    }


def cmd_explain(args: argparse.Namespace) -> int:
    plan = _load(args.plan)
    tenant = plan.tenant_for(args.number)
    zone = plan.calendars[tenant].zone if tenant else ZoneInfo("Europe/London")
    now = parse_at(args.at, zone)
    digits = tuple(d.strip() for d in args.digits.split(",")) if args.digits is not None else None
    live = LiveState(
        queues=_snapshots(args.queue or (), plan, tenant, now),
        partners={s.queue: s for s in (parse_queue_state(t, now) for t in args.partner or ())},
        overflowing=frozenset(args.overflowing or ()),
    )
    decision = decide(Call(args.number, digits=digits), plan, live, _toggles(args, plan, now), now)
    choice = (
        choice_for(plan.plan.tenants[decision.tenant], decision.destination, bool(decision.prelude))
        if decision.tenant is not None
        else None
    )
    lines = [
        f"=> {describe(decision.destination)}  [{decision.state}]",
        *("   " + r for r in decision.reasons),
    ]
    data = decision_data(decision, now)
    if choice is not None:
        keys = ", ".join(f"{key} {language}" for key, language in choice.keys)
        lines.append(f"   language choice first ({choice.prompt}): {keys}; no key: {choice.default}")
        data["language_choice"] = {
            "keys": dict(choice.keys),
            "prompt": choice.prompt,
            "default": choice.default,
        }
    _emit(args, data, "\n".join(lines))
    return EXIT_OK


# --- plan timeline ---------------------------------------------------------------------------


def _day(text: str, flag: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{flag} '{text}' is not a date (expected YYYY-MM-DD)") from None


def cmd_timeline(args: argparse.Namespace) -> int:
    plan = _load(args.plan)
    if args.tenant not in plan.calendars:
        raise UsageError(
            f"--tenant {args.tenant}: unknown tenant (known: {', '.join(sorted(plan.calendars))})"
        )
    start, end = _day(args.start, "--from"), _day(args.end, "--to")
    if end < start:
        raise UsageError("--to is before --from")
    items = timeline(plan.calendars[args.tenant], start, end)
    lines = [
        f"{t.at:%Y-%m-%d %a %H:%M %Z} ({t.at:%z})  {'OPEN  ' if t.state.open else 'closed'}  {t.state.cause}"
        for t in items
    ]
    _emit(args, [transition_data(t) for t in items], "\n".join(lines))
    return EXIT_OK


# --- plan diff -------------------------------------------------------------------------------


def _difference_line(item: Difference, zone: ZoneInfo) -> str:
    start, end = (f"{t.astimezone(zone):%Y-%m-%d %a %H:%M}" for t in (item.start, item.end))
    return (
        f"{numbers.display(item.number)} {item.keys_text()}: {start} -> {end}\n"
        f"    old: {item.old}\n    new: {item.new}"
    )


def _load_both(old_path: str, new_path: str) -> tuple[CompiledPlan, CompiledPlan] | None:
    """Both plans compiled, or None after listing every error of each on stderr."""
    results = {path: load_plan(path) for path in (old_path, new_path)}
    for path, result in results.items():
        if not result.ok:
            print(f"callrouter: {path} has errors:", file=sys.stderr)
            for problem in errors(result.problems):
                print(f"  {problem}", file=sys.stderr)
    old, new = results[old_path].plan, results[new_path].plan
    if not all(r.ok for r in results.values()) or old is None or new is None:
        return None
    return CompiledPlan.compile(old), CompiledPlan.compile(new)


def _changes(count: int) -> str:
    return f"{count} change{'' if count == 1 else 's'}: the plans route calls differently"


def cmd_diff(args: argparse.Namespace) -> int:
    """Exit 0 when the plans route every call alike, 1 when they differ, 2 on an error (as diff does)."""
    start, end = local_day_bounds(_day(args.start, "--from"), _day(args.end, "--to"))
    if end <= start:
        raise UsageError("--to is before --from")
    plans = _load_both(args.old, args.new)
    if plans is None:
        return EXIT_USAGE
    items = differences(*plans, start, end)
    zone = ZoneInfo("Europe/London")
    lines = [_difference_line(i, zone) for i in items]
    text = (
        "\n".join([*lines, _changes(len(items))])
        if items
        else "no difference: both plans route every call alike"
    )
    _emit(args, {"changes": len(items), "differences": [difference_data(i) for i in items]}, text)
    return EXIT_DIFFERENT if items else EXIT_OK


# --- plan static-dialplan ---------------------------------------------------------------------


def cmd_static_dialplan(args: argparse.Namespace) -> int:
    plan = _load(args.plan)
    sys.stdout.write(static_dialplan.render(plan.plan))
    return EXIT_OK


# --- wiring ----------------------------------------------------------------------------------


def _plan_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    plan = sub.add_parser("plan", help="check, explain, timeline, diff and publish routing plans")
    cmds = plan.add_subparsers(dest="plan_command", required=True)
    check = cmds.add_parser("check", help="validate a plan: exit 0 clean, 1 with every problem listed")
    check.add_argument("plan")
    check.add_argument(
        "--prompts",
        metavar="DIR",
        help="also report every prompt with no recording in DIR/<language>/ for a tenant's language",
    )
    check.set_defaults(handler=cmd_check)

    explain = cmds.add_parser("explain", help="where a call to NUMBER goes at a given time, and why")
    explain.add_argument("plan")
    explain.add_argument("--number", required=True)
    explain.add_argument("--at", required=True, help='"YYYY-MM-DD HH:MM[:SS]" in the tenant\'s zone')
    explain.add_argument("--digits", help="menu keys pressed, comma separated; an empty item is a silence")
    explain.add_argument(
        "--queue", action="append", help="NAME:waiting=N,longest=S,available=N[,logged_in=N]"
    )
    explain.add_argument("--partner", action="append", help="CENTRE:waiting=N,available=N (published state)")
    explain.add_argument(
        "--overflowing", action="append", help="TENANT/QUEUE already overflowing (hysteresis)"
    )
    explain.add_argument("--emergency", action="append", metavar="TENANT")
    explain.add_argument("--closed", action="append", metavar="TENANT")
    explain.set_defaults(handler=cmd_explain)

    tl = cmds.add_parser("timeline", help="every open/closed transition of a tenant, with its cause")
    tl.add_argument("plan")
    tl.add_argument("--tenant", required=True)
    tl.add_argument("--from", dest="start", required=True)
    tl.add_argument("--to", dest="end", required=True)
    tl.set_defaults(handler=cmd_timeline)

    diff = cmds.add_parser(
        "diff", help="where and when two plans route calls differently: exit 0 same, 1 different, 2 error"
    )
    diff.add_argument("old")
    diff.add_argument("new")
    diff.add_argument("--from", dest="start", required=True)
    diff.add_argument("--to", dest="end", required=True)
    diff.set_defaults(handler=cmd_diff)
    static = cmds.add_parser("static-dialplan", help="the last-resort dialplan, from the plan")
    static.add_argument("plan")
    static.set_defaults(handler=cmd_static_dialplan)
    for parser in (check, explain, tl, diff):
        parser.add_argument("--json", action="store_true", help="machine-readable output")
    plan_store_cli.add_commands(cmds)


def _records_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    records = sub.add_parser(
        "records", help="contact records: CRM delivery, the council's export, search and archive"
    )
    cmds = records.add_subparsers(dest="records_command", required=True)
    records_cli.add_records_commands(cmds)
    report_cli.add_records_commands(cmds)


COMMAND_REGISTRARS: list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]] = [
    _plan_commands,
    service.register,
    simulate.register,
    supervisor_cli.register,
    callbacks_cli.register,
    centre.register,
    report_cli.register,
    _records_commands,
    web_cli.register,
    redis_cli.register,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="callrouter", description=__doc__.splitlines()[0] if __doc__ else None
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for register in COMMAND_REGISTRARS:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # serve --workers starts it again
    handler: Handler = args.handler
    try:
        return handler(args)
    except (UsageError, SettingsError) as exc:
        print(f"callrouter: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except PlanRejected:
        return EXIT_PROBLEMS
    except PlanError as exc:
        print(f"callrouter: the plan has errors:\n{exc}", file=sys.stderr)
        return EXIT_PROBLEMS
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
