"""``callrouter callbacks list|cancel``: a supervisor's view of the queued callbacks.

A client of the web service's API like ``callrouter toggle`` (``callrouter/api_client.py``:
``CALLROUTER_API_URL`` and an API token): the service checks the token's role (viewer to list,
supervisor to cancel), audits the cancel with the token's user and masks the caller's number.

``--direct`` is the administrators' break-glass path on the service host, for when the web
service is down: it reads Redis from the settings (``--redis``) and records ``--by`` as given.
Its cancel goes into the call's contact record as the service's does (the same function), where
records are kept; the plan in force (``--plan``, or the store) names the centre.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from callrouter import settings as settings_module
from callrouter.api_client import ApiClient
from callrouter.settings import Settings, SettingsError
from callrouter.supervisor_cli import EXIT_REFUSED, _api, _run, _segment
from callrouter.web_cli import PlanReader
from records.dispositions import submit_callback
from routing.callbacks import (
    CallbackRefused,
    StoredCallback,
    cancel_for_supervisor,
    supervisor_view,
    tenant_callbacks,
)
from routing.replicas import NotReplicated
from routing.supervisor import shown


def _print(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, indent=2, default=str) if args.json else text)


def _at(epoch: Any) -> str:
    try:
        return datetime.fromtimestamp(float(epoch), UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (TypeError, ValueError, OverflowError):
        return "?"


def list_text(tenant: str, rows: list[dict[str, Any]]) -> str:
    """Every text from the service or Redis shown through ``shown`` (no control character reaches
    the terminal, whatever was stored)."""
    lines = [f"Callbacks of {shown(tenant, 80)}: {len(rows)} waiting"]
    for r in rows:
        tried = f", {r['attempts']} attempt(s)" if r["attempts"] else ""
        lines.append(
            f"  {shown(r['id'], 40)} {shown(r['queue'], 80)} #{r['position']} {shown(r['state'], 20)} "
            f"{shown(r['number'], 40)} joined {_at(r['joined_at'])}, next {_at(r['next_at'])}{tried}"
        )
    return "\n".join(lines)


async def _list_direct(args: argparse.Namespace, settings: Settings) -> int:
    redis = settings.redis_client(connect_timeout=2, timeout=5)
    try:
        found = await tenant_callbacks(redis, settings.redis_keys(), args.tenant)
    finally:
        await redis.aclose()
    places: dict[str, int] = {}
    rows = []
    for cb in found:
        places[cb.asterisk_queue] = places.get(cb.asterisk_queue, 0) + 1
        rows.append(supervisor_view(cb, places[cb.asterisk_queue]))
    _print(args, {"tenant": args.tenant, "callbacks": rows}, list_text(args.tenant, rows))
    return 0


async def _cancel_direct(args: argparse.Namespace, settings: Settings) -> int:
    if not args.by:
        print(
            "callrouter: --direct needs --by (who is cancelling; recorded in the audit trail)",
            file=sys.stderr,
        )
        return EXIT_REFUSED
    redis = settings.redis_client(connect_timeout=2, timeout=5)
    now = datetime.now(UTC)
    try:
        try:
            stored, before = await cancel_for_supervisor(
                redis,
                settings.redis_keys(),
                tenant=args.tenant,
                ident=args.id,
                by=args.by,
                reason=args.reason or "",
                now=now,
                wait=settings.replica_wait(),
            )
        except (LookupError, CallbackRefused, NotReplicated) as exc:
            print(f"callrouter: refused: {shown(str(exc), 600)}", file=sys.stderr)
            return EXIT_REFUSED
        unrecorded = await _to_record(settings, redis, stored, now.timestamp())
    finally:
        await redis.aclose()
    data = {"id": args.id, "tenant": args.tenant, "queue": stored.queue, "state": "cancelled", "was": before,
            "recorded": unrecorded is None}  # fmt: skip
    if unrecorded is not None and unrecorded != NO_RECORDS:
        print(
            f"callrouter: the cancel is not in the call's contact record: {shown(unrecorded, 600)}",
            file=sys.stderr,
        )
    text = f"callback {args.id} of {args.tenant} cancelled (was {before}); audited"
    _print(args, data, text + ("; in the call's record" if unrecorded is None else ""))
    return 0


NO_RECORDS = "this deployment keeps no contact records"


async def _to_record(settings: Settings, redis: Redis, stored: StoredCallback, at: float) -> str | None:
    """The cancel into the call's contact record, as the web service's cancel does
    (``records.dispositions.submit_callback``); None when asked for, else why not. Only where
    contact records are kept (``records.caller_hash_key`` or ``records.archive_dir`` set); the
    centre comes from the plan in force (``--plan``, or ``plan_source = store``)."""
    if settings.records.caller_hash_key is None and settings.records.archive_dir is None:
        return NO_RECORDS
    try:
        plan = await PlanReader(settings, redis)()
    except (SettingsError, OSError, ValueError) as exc:
        return f"no plan to name the centre ({exc})"
    except RedisError as exc:
        return f"Redis did not answer ({type(exc).__name__})"
    try:
        if not await submit_callback(
            redis, plan.centre, stored, "cancelled", by="cli", at=at, keys=settings.redis_keys()
        ):
            return "its call has no contact record, or the callback's end was recorded already"
    except RedisError as exc:
        return f"Redis did not answer ({type(exc).__name__})"
    return None


def _list_api(args: argparse.Namespace, api: ApiClient) -> int:
    data = api.get(f"/api/v1/tenants/{_segment(args.tenant)}/callbacks")
    _print(args, data, list_text(args.tenant, data["callbacks"]))
    return 0


def _cancel_api(args: argparse.Namespace, api: ApiClient) -> int:
    path = f"/api/v1/tenants/{_segment(args.tenant)}/callbacks/{_segment(args.id)}/cancel"
    _status, answer = api.post(path, {"reason": args.reason or ""})
    who = f"callback {shown(answer['id'], 40)} of {shown(answer['tenant'], 80)}"
    text = f"{who} cancelled (was {shown(answer['was'], 20)}); audited"
    _print(args, answer, text)
    return 0


def cmd_callbacks(args: argparse.Namespace) -> int:
    if args.callbacks_command == "cancel" and not args.direct and args.by is not None:
        print(
            "callrouter: --by is for --direct only: the service records the user of the API token",
            file=sys.stderr,
        )
        return EXIT_REFUSED
    if args.direct:
        return _run(args, _list_direct if args.callbacks_command == "list" else _cancel_direct)
    return _api(args, _list_api if args.callbacks_command == "list" else _cancel_api)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("callbacks", help="queued callbacks: list a council's, cancel one")
    cmds = parser.add_subparsers(dest="callbacks_command", required=True)
    listing = cmds.add_parser("list", help="a council's callbacks still waiting, in each queue's order")
    listing.add_argument("tenant")
    cancel = cmds.add_parser("cancel", help="cancel one callback (supervisor; audited)")
    cancel.add_argument("tenant")
    cancel.add_argument("id", help="the callback's id (cb-...), as list shows it")
    cancel.add_argument(
        "--reason", required=True, help="why (recorded in the audit trail; at most 500 characters)"
    )
    cancel.add_argument("--by", help="--direct only: who is cancelling (at most 80 characters)")
    for command in (listing, cancel):
        # --direct's cancel goes to the call's record where records are kept: the plan names the centre
        record = ("plan", "plan_source", "records.archive_dir") if command is cancel else ()
        settings_module.add_flags(command, ("redis.url", *record))
        command.add_argument("--json", action="store_true")
        command.add_argument(
            "--direct",
            action="store_true",
            help="administrators' break-glass on the service host: Redis directly, not the web service",
        )
        command.set_defaults(handler=cmd_callbacks)
