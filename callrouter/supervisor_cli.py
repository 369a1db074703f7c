"""``callrouter toggle`` and ``callrouter state``: the supervisor's command line.

Both are clients of the web service's API (``callrouter web``; ``callrouter/api_client.py``):
the URL and an API token come from ``CALLROUTER_API_URL`` and ``CALLROUTER_API_TOKEN_FILE``
(or ``CALLROUTER_API_TOKEN``), the change is checked, signed and audited
by the service with the token's user, and a supervisor needs neither Redis nor the toggle key.

``--direct`` is the administrators' break-glass path on the service's host, for when the web
service is down: it reads the plan and Redis from the settings (``--plan``, ``--redis``) like
``serve``, signs with the toggle key (``toggle_key_file``) and records ``--by`` as given.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from redis.asyncio import Redis
from redis.exceptions import AuthenticationError, RedisError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from callrouter import settings as settings_module
from callrouter.api_client import ApiClient, ApiConfigError, ApiError, ApiUnreachable
from callrouter.settings import Settings, SettingsError
from ivr.controller import PlanHolder
from routing.live.source import partner_centres
from routing.live.store import QueueStateStore, snapshot_from_json
from routing.replicas import NotReplicated
from routing.supervisor import (
    KINDS,
    PlanFacts,
    ToggleError,
    ToggleRequest,
    apply_toggle,
    audit_tail,
    check_request,
    facts_from_json,
    plan_facts,
    shown,
    toggles_for_tenant,
    when,
)

EXIT_REFUSED, EXIT_UNREACHABLE = 2, 3
LONDON = ZoneInfo("Europe/London")


class Unreachable(Exception):
    """Redis did not answer; the message says which (without its password)."""


def _print(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, indent=2, default=str) if args.json else text)


def _redis(settings: Settings) -> Redis:
    return settings.redis_client(connect_timeout=2, timeout=5)


async def _facts(settings: Settings, redis: Redis) -> PlanFacts:
    """The plan to check against: the one configured, else the one the controller published."""
    if settings.plan is not None:
        return plan_facts(PlanHolder.load(settings.plan).current.plan)
    raw = await redis.get(settings.redis_keys().plan_in_force())
    if raw is None:
        raise SettingsError(
            "no plan: give --plan PLAN (or CALLROUTER_PLAN, or plan in the settings file), "
            "or start `callrouter serve` so that the plan in force is known"
        )
    return facts_from_json(raw)


async def _toggle(args: argparse.Namespace, settings: Settings) -> int:
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
    keyring = settings.toggle_keyring()
    if keyring is None:
        raise SettingsError(
            "no toggle key: set CALLROUTER_TOGGLE_KEY_FILE (or toggle_key_file in the settings file) "
            "to the key file the controllers use; they ignore a toggle that is not signed"
        )
    redis = _redis(settings)
    try:
        facts = await _facts(settings, redis)
        try:
            toggle = check_request(facts, request, now)
            if args.preview:
                zone = facts[args.tenant].zone
                state = f"on until {when(toggle.expires_at, zone)}" if toggle else "off"
                by = shown(args.by, 80)
                print(f"preview (nothing changed): {args.kind} {state} for {args.tenant}; by {by}")
                return 0
            audit_id, previous = await apply_toggle(
                redis,
                request,
                toggle,
                now,
                settings.redis_keys(),
                keyring=keyring,
                wait=settings.replica_wait(),
            )
        except ToggleError as exc:
            print(f"callrouter: refused: {exc}", file=sys.stderr)
            return EXIT_REFUSED
        except NotReplicated as exc:
            print(f"callrouter: not confirmed: {exc}; look at the toggle and try again", file=sys.stderr)
            return EXIT_REFUSED
    finally:
        await redis.aclose()
    zone = facts[args.tenant].zone
    state = f"on until {when(toggle.expires_at, zone)}" if toggle else "off"
    was = f"on until {when(previous.expires_at, zone)}" if previous else "off"
    scope = f"{args.tenant}" + (f"/{args.service}" if args.service else "")
    text = f"{args.kind} for {scope}: {state} (was {was}); audit {audit_id}"
    data = {"kind": args.kind, "tenant": args.tenant, "service": args.service, "on": toggle is not None,
            "expires_at": toggle.expires_at if toggle else None, "previous_on": previous is not None,
            "audit_id": audit_id}  # fmt: skip
    _print(args, data, text)
    return 0


def _run(args: argparse.Namespace, command: Any) -> int:
    settings = settings_module.from_args(args)
    where = settings_module.redacted(settings.redis.url)
    try:
        result: int = asyncio.run(command(args, settings))
    except AuthenticationError as exc:  # Redis's own words, which hold no secret
        print(f"callrouter: Redis at {where} refused: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
        print(f"callrouter: Redis at {where} did not answer: {type(exc).__name__}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except RedisError as exc:  # e.g. NOAUTH: Redis's own words
        print(f"callrouter: Redis at {where} refused: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    return result


def _segment(value: str) -> str:
    """``value`` as one path segment: a tenant or kind typed by the user cannot add a path."""
    return quote(value, safe="")


def _api(args: argparse.Namespace, command: Callable[[argparse.Namespace, ApiClient], int]) -> int:
    """Run ``command`` through the web service; its refusals and failures as one line."""
    try:
        return command(args, ApiClient.from_env())
    except ApiConfigError as exc:
        print(f"callrouter: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except ApiUnreachable as exc:
        print(f"callrouter: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except ApiError as exc:
        if exc.status == 401:
            print("callrouter: token refused (unknown, expired or revoked): ask an administrator for a new "
                  "one (callrouter users token)", file=sys.stderr)  # fmt: skip
            return EXIT_REFUSED
        if exc.status >= 500:
            print(
                f"callrouter: the web service failed ({exc.status}): {shown(exc.detail, 600)}",
                file=sys.stderr,
            )
            return EXIT_UNREACHABLE
        print(f"callrouter: refused ({exc.status}): {shown(exc.detail, 600)}", file=sys.stderr)
        return EXIT_REFUSED


def _toggle_api(args: argparse.Namespace, api: ApiClient) -> int:
    body: dict[str, Any] = {"on": args.on, "reason": args.reason or "", "confirm": not args.preview}
    if args.expires:
        body["expires"] = args.expires
    if args.service:
        body["service"] = args.service
    path = f"/api/v1/tenants/{_segment(args.tenant)}/toggles/{_segment(args.kind)}"
    try:
        _status, answer = api.post(path, body)
    except ApiError as exc:
        preview = exc.body.get("preview")
        if exc.status != 409 or not isinstance(preview, dict):
            raise
        _print(args, preview, f"preview (nothing changed): {shown(preview['summary'])}")
        return 0
    state = f"on until {answer['expires_local']}" if answer["on"] else "off"
    previous = answer["previous"]
    was = f"on until {previous['expires_local']}" if previous else "off"
    scope = args.tenant + (f"/{args.service}" if args.service else "")
    _print(args, answer, shown(f"{args.kind} for {scope}: {state} (was {was}); audit {answer['audit_id']}"))
    return 0


def cmd_toggle(args: argparse.Namespace) -> int:
    if args.direct:
        return _run(args, _toggle)
    if args.by is not None:
        print(
            "callrouter: --by is for --direct only: the service records the user of the API token, "
            "not a typed name",
            file=sys.stderr,
        )
        return EXIT_REFUSED
    return _api(args, _toggle_api)


async def _state(settings: Settings) -> dict[str, Any]:
    now = datetime.now(UTC)
    keyring = settings.toggle_keyring()
    keys = settings.redis_keys()
    redis = _redis(settings)
    try:
        plan = PlanHolder.load(settings.plan).current.plan if settings.plan is not None else None
        facts = plan_facts(plan) if plan is not None else await _facts(settings, redis)
        tenants: dict[str, Any] = {}
        for tid, fact in facts.items():
            stored = await toggles_for_tenant(redis, tid, keyring, keys)
            latches = [keys.overflow_latch(tid, q) for q in fact.queues]
            latched = await redis.mget(latches) if latches else []
            centres = partner_centres(plan.tenants[tid]) if plan is not None else []
            snapshots = await redis.mget([keys.centre_snapshot(c) for c in centres]) if centres else []
            overflowing = sorted(f"{tid}/{q}" for q, on in zip(fact.queues, latched, strict=True) if on)
            pairs = zip(centres, snapshots, strict=True)
            partners = {c: asdict(snapshot_from_json(v)) for c, v in pairs if v}
            tenants[tid] = {
                "toggles": {kind: asdict(t) for kind, t in stored.in_force.items()},
                "ignored_toggles": {k: {"reason": r, "detail": d} for k, (r, d) in stored.ignored.items()},
                "overflowing": overflowing,
                "partners": partners,
            }
        store = QueueStateStore(redis, "reader", keys)
        queues = {q: asdict(s) for q, s in (await store.snapshots(now)).items()}
        timestamps = asdict(await store.last_update())
        audit = await audit_tail(redis, 10, keys)
    finally:
        await redis.aclose()
    zones = {tid: f.zone for tid, f in facts.items()}
    data = {"at": now, "tenants": tenants, "queues": queues, "ami": timestamps, "audit": audit}
    return {**data, "key_tag": keys.tag, "signatures_checked": keyring is not None, "zones": zones}


def _audit_line(entry: dict[str, Any], zones: dict[str, ZoneInfo]) -> str:
    zone = zones.get(str(entry.get("tenant")), LONDON)
    try:
        at = when(datetime.fromisoformat(str(entry["at"])), zone)
    except (KeyError, ValueError):
        at = shown(entry.get("at", "?"), 40)
    parts = [shown(entry.get(name) or "", 500) for name in ("what", "tenant", "reason")]
    return f"  {at} {shown(entry.get('by', '?'), 80)}: {' '.join(p for p in parts if p)}"


def _state_text(data: dict[str, Any]) -> str:
    zones: dict[str, ZoneInfo] = data["zones"]
    lines = [f"State at {when(data['at'], LONDON)}, the keys of tag {data['key_tag']} (redis.key_tag)"]
    if not data["signatures_checked"]:
        lines.append("  (no toggle key here: toggles listed as stored, their signatures not checked)")
    for tid, info in data["tenants"].items():
        toggles = ", ".join(
            f"{kind} ({shown(t['reason'])}; by {shown(t['by'], 80)}; "
            f"until {when(t['expires_at'], zones[tid])})"
            for kind, t in info["toggles"].items()
        ) or "none"  # fmt: skip
        lines.append(f"  {tid}: toggles: {toggles}; overflowing: {', '.join(info['overflowing']) or 'no'}")
        for kind, why in info["ignored_toggles"].items():
            lines.append(f"  {tid}: IGNORED {kind} toggle in Redis ({why['reason']}: {why['detail']}): "
                         "controllers do not obey it")  # fmt: skip
    lines.append("Queues:" if data["queues"] else "Queues: no live state (no AMI writer yet)")
    for name, q in sorted(data["queues"].items()):
        lines.append(f"  {name}: waiting {q['waiting']}, longest {q['longest_wait_s']:.0f}s, "
                     f"logged in {q['logged_in']}, available {q['available']}")  # fmt: skip
    lines.append("Audit (newest first):")
    lines += [_audit_line(a, zones) for a in data["audit"]] or ["  (empty)"]
    return "\n".join(lines)


async def _state_command(args: argparse.Namespace, settings: Settings) -> int:
    data = await _state(settings)
    text = _state_text(data)
    del data["zones"]
    _print(args, data, text)
    return 0


def _state_api(args: argparse.Namespace, api: ApiClient) -> int:
    tenants: dict[str, Any] = {}
    for tenant in api.get("/api/v1/tenants")["tenants"]:
        name = _segment(tenant["tenant"])
        toggles = api.get(f"/api/v1/tenants/{name}/toggles") if tenant["toggles"] else None
        trail = api.get(f"/api/v1/tenants/{name}/audit", query={"count": AUDIT_LINES})
        tenants[tenant["tenant"]] = {"zone": tenant["zone"], "toggles": toggles, "audit": trail["entries"]}
    data = {"service": api.base_url, "tenants": tenants}
    _print(args, data, _state_api_text(data))
    return 0


AUDIT_LINES = 10


def _state_api_text(data: dict[str, Any]) -> str:
    """Every text from the service shown through :func:`shown` (no control character reaches the
    terminal, whatever was stored)."""
    lines = [f"State from {data['service']} (times in each council's zone)"]
    if not data["tenants"]:
        lines.append("  no council: this token's user has no role in the plan in force")
    for tid, info in data["tenants"].items():
        lines.append(f"{shown(tid, 80)} ({shown(info['zone'], 80)}):")
        toggles = info["toggles"]
        if toggles is None:
            lines.append("  toggles: (not shown: the service has no toggle key)")
        else:
            in_force = [
                f"{shown(kind, 40)} ({shown(t['reason'])}; by {shown(t['by'], 80)}; "
                f"until {shown(t['expires_local'], 80)})"
                for kind, t in toggles["in_force"].items()
            ]
            lines.append(f"  toggles: {', '.join(in_force) or 'none'}")
            for kind, why in toggles["ignored"].items():
                lines.append(f"  IGNORED {shown(kind, 40)} toggle in Redis ({shown(why['reason'], 80)}: "
                             f"{shown(why['detail'], 200)}): controllers do not obey it")  # fmt: skip
        lines.append("  audit (newest first):")
        for e in info["audit"] or []:
            until = f" until {shown(e['expires_local'], 80)}" if e["expires_local"] else ""
            why = f": {shown(e['reason'])}" if e["reason"] else ""
            lines.append(f"    {shown(e['at_local'] or e['at'], 80)} {shown(e['by'], 80)} "
                         f"{shown(e['what'], 80)}{until}{why}")  # fmt: skip
        if not info["audit"]:
            lines.append("    (empty)")
    lines.append("Live queues: the web page, or `callrouter state --direct` on the service host.")
    return "\n".join(lines)


def cmd_state(args: argparse.Namespace) -> int:
    if args.direct:
        return _run(args, _state_command)
    return _api(args, _state_api)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    toggle = sub.add_parser("toggle", help="switch emergency cover, a closure or an announcement on or off")
    toggle.add_argument("kind", choices=KINDS)
    toggle.add_argument("tenant")
    onoff = toggle.add_mutually_exclusive_group(required=True)
    onoff.add_argument("--on", dest="on", action="store_true")
    onoff.add_argument("--off", dest="on", action="store_false")
    toggle.add_argument("--reason", help="why (recorded in the audit trail; at most 500 characters)")
    toggle.add_argument("--expires", help="90m, 2h, 1d, 18:00 or 2026-11-24 18:00 (the council's time)")
    toggle.add_argument("--service", help="emergency: one queue only; announcement: its id")
    toggle.add_argument(
        "--preview",
        action="store_true",
        help="show what would happen (in the council's time); change nothing",
    )
    toggle.add_argument("--by", help="--direct only: who is making the change (at most 80 characters)")
    state = sub.add_parser("state", help="toggles in force and the latest audit entries, per council")
    for parser in (toggle, state):
        settings_module.add_flags(parser, ("plan", "redis.url"))
        parser.add_argument("--json", action="store_true")
        parser.add_argument(
            "--direct",
            action="store_true",
            help="administrators' break-glass on the service host: Redis and the toggle key directly, "
            "not the web service (--plan and --redis apply only then)",
        )
    toggle.set_defaults(handler=cmd_toggle)
    state.set_defaults(handler=cmd_state)
