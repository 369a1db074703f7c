"""``callrouter toggle`` and ``callrouter state``: the supervisor's command line."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis

from ivr.controller import PlanHolder
from routing.live.source import RedisLiveSource
from routing.live.store import QueueStateStore
from routing.supervisor import KINDS, ToggleError, ToggleRequest, apply_toggle, audit_tail, check_request

DEFAULT_REDIS = "redis://127.0.0.1:6379/0"


def _print(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, indent=2, default=str) if args.json else text)


async def _toggle(args: argparse.Namespace) -> int:
    plan = PlanHolder.load(args.plan).current.plan
    request = ToggleRequest(
        kind=args.kind,
        tenant=args.tenant,
        on=args.on,
        by=args.by or "",
        reason=args.reason or "",
        expires=args.expires or "",
        service=args.service,
    )
    now = datetime.now(UTC)
    try:
        toggle = check_request(plan, request, now)
    except ToggleError as exc:
        print(f"callrouter: refused: {exc}", file=sys.stderr)
        return 2
    redis = Redis.from_url(args.redis, socket_connect_timeout=2, socket_timeout=5)
    try:
        audit_id, previous = await apply_toggle(redis, request, toggle, now)
    finally:
        await redis.aclose()
    state = f"on until {toggle.expires_at:%Y-%m-%d %H:%M %Z}" if toggle else "off"
    was = f"on until {previous.expires_at:%Y-%m-%d %H:%M %Z}" if previous else "off"
    scope = f"{args.tenant}" + (f"/{args.service}" if args.service else "")
    text = f"{args.kind} for {scope}: {state} (was {was}); audit {audit_id}"
    data = {"kind": args.kind, "tenant": args.tenant, "service": args.service, "on": toggle is not None,
            "expires_at": toggle.expires_at if toggle else None, "previous_on": previous is not None,
            "audit_id": audit_id}  # fmt: skip
    _print(args, data, text)
    return 0


def cmd_toggle(args: argparse.Namespace) -> int:
    return asyncio.run(_toggle(args))


async def _state(args: argparse.Namespace) -> dict[str, Any]:
    holder = PlanHolder.load(args.plan)
    now = datetime.now(UTC)
    redis = Redis.from_url(args.redis, socket_connect_timeout=2, socket_timeout=5)
    try:
        source = RedisLiveSource(redis)
        tenants: dict[str, Any] = {}
        for tid in holder.current.plan.tenants:
            live, toggles = await source.read(holder.current, tid, now)
            tenants[tid] = {
                "toggles": {
                    kind: asdict(found[tid]) for kind in KINDS if tid in (found := getattr(toggles, kind))
                },
                "overflowing": sorted(live.overflowing),
                "partners": {c: asdict(s) for c, s in live.partners.items()},
            }
        queues = {q: asdict(s) for q, s in (await QueueStateStore(redis, "reader").snapshots(now)).items()}
        timestamps = asdict(await QueueStateStore(redis, "reader").last_update())
        audit = await audit_tail(redis, 10)
    finally:
        await redis.aclose()
    return {"at": now, "tenants": tenants, "queues": queues, "ami": timestamps, "audit": audit}


def _state_text(data: dict[str, Any]) -> str:
    lines = [f"State at {data['at']:%Y-%m-%d %H:%M:%S %Z}"]
    for tid, info in data["tenants"].items():
        toggles = ", ".join(f"{k} ({v['reason']}; by {v['by']}; until {v['expires_at']:%H:%M %Z})"
                            for k, v in info["toggles"].items()) or "none"  # fmt: skip
        lines.append(f"  {tid}: toggles: {toggles}; overflowing: {', '.join(info['overflowing']) or 'no'}")
    lines.append("Queues:" if data["queues"] else "Queues: no live state (no AMI writer yet)")
    for name, q in sorted(data["queues"].items()):
        lines.append(f"  {name}: waiting {q['waiting']}, longest {q['longest_wait_s']:.0f}s, "
                     f"logged in {q['logged_in']}, available {q['available']}")  # fmt: skip
    lines.append("Audit (newest first):")
    lines += [f"  {a['at']} {a['by']}: {a['what']} {a.get('tenant') or ''} {a.get('reason') or ''}".rstrip()
              for a in data["audit"]] or ["  (empty)"]  # fmt: skip
    return "\n".join(lines)


def cmd_state(args: argparse.Namespace) -> int:
    data = asyncio.run(_state(args))
    _print(args, data, _state_text(data))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    toggle = sub.add_parser("toggle", help="switch emergency cover, a closure or an announcement on or off")
    toggle.add_argument("kind", choices=KINDS)
    toggle.add_argument("tenant")
    onoff = toggle.add_mutually_exclusive_group(required=True)
    onoff.add_argument("--on", dest="on", action="store_true")
    onoff.add_argument("--off", dest="on", action="store_false")
    toggle.add_argument("--reason", help="why (recorded in the audit trail)")
    toggle.add_argument("--expires", help="90m, 2h, 1d, 18:00 or 2026-11-24 18:00 (London)")
    toggle.add_argument("--by", help="who is making the change")
    toggle.add_argument("--service", help="emergency: one queue only; announcement: its id")
    state = sub.add_parser("state", help="live queues, toggles in force and the latest audit entries")
    for parser in (toggle, state):
        plan = os.environ.get("CALLROUTER_PLAN")
        parser.add_argument("--plan", default=plan, required=plan is None, help="the plan in force")
        parser.add_argument("--redis", default=os.environ.get("CALLROUTER_REDIS", DEFAULT_REDIS))
        parser.add_argument("--json", action="store_true")
    toggle.set_defaults(handler=cmd_toggle)
    state.set_defaults(handler=cmd_state)
