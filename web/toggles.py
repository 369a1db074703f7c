"""Supervisor toggles and the audit trail: the API and the emergency and audit pages.

- ``GET /api/v1/tenants/{tenant}/toggles`` (viewer): the toggles in force, checked as a
  controller checks them, and any stored value the controllers ignore, with the reason.
- ``POST /api/v1/tenants/{tenant}/toggles/{kind}`` (supervisor of that tenant): on (reason and
  expiry) or off (reason). Nothing changes unless the body says ``"confirm": true``: without it
  the answer is 409 with the preview (what would happen, the expiry in the council's time, the
  value it would replace), which a page shows as its confirmation step.
- ``GET /api/v1/tenants/{tenant}/audit?before=&count=`` (viewer): that council's audit trail,
  newest first, text escaped and bounded.
- Pages: ``/`` (the user's councils), ``/tenants/{tenant}/emergency`` (state, the form, the
  confirmation step, the result) and ``/tenants/{tenant}/audit``.

The service signs each toggle with the toggle key (``WebConfig.toggle_keyring``); without it
the toggles answer 503. The audit ``by`` is the authenticated identity. The councils are those
of the plan in force, as the controllers publish it (``RedisKeys.plan_in_force``)."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import structlog
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from routing import plan_store
from routing.core.live import Toggle
from routing.replicas import NotReplicated
from routing.supervisor import (
    KINDS,
    MAX_EXPIRY,
    MAX_REASON,
    PlanFacts,
    ToggleError,
    ToggleRequest,
    apply_toggle,
    audit_for_tenant,
    check_request,
    check_text,
    escaped_entry,
    facts_from_json,
    parse_expiry,
    plan_facts,
    shown,
    toggles_for_tenant,
    when,
)
from routing.toggle_mac import ToggleKeyring
from web import openapi
from web.auth import IDENTITY, authenticated, csrf_token, require
from web.context import CONFIG, REDIS, keys_of, now
from web.identity import Identity
from web.problems import PROBLEM_TYPE, Problem, read_form, read_model
from web.templating import page_environment, render_page

log = structlog.get_logger("callrouter.web.toggles")
MAX_AUDIT_COUNT = 200
DEFAULT_AUDIT_COUNT = 50
MAX_EXPIRES_CHARS = 64
_STREAM_ID = re.compile(r"^\d{1,20}-\d{1,20}$")
_TENANT = r"{tenant:[a-z0-9][a-z0-9_-]{0,63}}"
# The councils of the plan store's live version, by its sha256 (used while no controller has
# published the plan in force).
FACTS_CACHE = web.AppKey("toggle_facts_cache", dict[str, PlanFacts])


# --- the rules, shared by the API and the pages ---------------------------------------------


class ToggleChange(BaseModel):
    """The body of ``POST .../toggles/{kind}``."""

    model_config = ConfigDict(extra="forbid")

    on: bool
    reason: str = Field(max_length=MAX_REASON * 4)  # longer: refused before it is read closely
    expires: str | None = Field(None, max_length=MAX_EXPIRES_CHARS)
    service: str | None = Field(None, max_length=80)
    confirm: bool = False


@dataclass(frozen=True, slots=True)
class Change:
    """A checked change: what is asked, what would be stored, what it replaces."""

    request: ToggleRequest
    toggle: Toggle | None
    previous: Toggle | None
    zone: ZoneInfo


def keyring_of(request: web.Request) -> ToggleKeyring:
    keyring = request.app[CONFIG].toggle_keyring
    if keyring is None:
        raise Problem(
            503,
            "the toggle key is not configured on this service (toggle_key_file): it can neither "
            "check nor sign toggles",
        )
    return keyring


async def plan_in_force(request: web.Request) -> PlanFacts:
    """The councils: those of the plan the controllers publish as in force, else (no controller
    has run yet) those of the live version in the plan store; none if neither is known."""
    redis = request.app[REDIS]
    raw = await redis.get(keys_of(request).plan_in_force())
    if raw is not None:
        try:
            return facts_from_json(raw)
        except (ValueError, KeyError, TypeError):
            pass
    return await _store_facts(request)


async def _store_facts(request: web.Request) -> PlanFacts:
    redis, cache = request.app[REDIS], request.app[FACTS_CACHE]
    live = await plan_store.live(redis, keys=keys_of(request))
    if live is None:
        return {}
    if live.sha256 not in cache:
        version = await plan_store.get(redis, live.version, keys=keys_of(request))
        if version is None:
            return {}
        result = await asyncio.to_thread(plan_store.validate, version.text)  # a large plan: off the loop
        cache.clear()  # one version kept: the live one
        cache[live.sha256] = plan_facts(result.plan) if result.ok and result.plan is not None else {}
    return cache[live.sha256]


async def tenant_zone(request: web.Request, tenant: str) -> tuple[PlanFacts, ZoneInfo]:
    """The plan facts and the tenant's time zone, or 404 for a tenant the plan does not have."""
    facts = await plan_in_force(request)
    if tenant not in facts:
        if not facts:
            raise Problem(
                404, f"unknown tenant {tenant}: no plan in force is known (is a controller running?)"
            )
        raise Problem(404, f"unknown tenant {tenant}")
    return facts, facts[tenant].zone


def kind_of(request: web.Request) -> str:
    kind = request.match_info["kind"]
    if kind not in KINDS:
        raise Problem(404, f"unknown toggle {shown(kind, 40)} (known: {', '.join(KINDS)})")
    return kind


async def check_change(
    request: web.Request, identity: Identity, facts: PlanFacts, kind: str, body: ToggleChange
) -> Change:
    """The change checked as the controllers would (422 with the reason in plain words);
    ``facts`` holds the tenant (:func:`tenant_zone`)."""
    tenant = request.match_info["tenant"]
    zone = facts[tenant].zone
    keyring = keyring_of(request)
    at = now(request)
    try:
        reason = check_text("the reason", body.reason, MAX_REASON)
        expires = (body.expires or "").strip()
        if body.on and not expires:
            raise ToggleError("give an expiry (2h, 90m, 1d or a date and time): a toggle must end by itself")
        if not body.on and expires:
            raise ToggleError("switching off takes no expiry")
        if expires:
            moment = parse_expiry_text(expires, at, zone)
            if moment <= at:
                raise ToggleError(f"the expiry {when(moment, zone)} is in the past")
            if moment - at > MAX_EXPIRY:
                raise ToggleError(
                    f"the expiry {when(moment, zone)} is more than {MAX_EXPIRY.days} days ahead"
                )
            expires = moment.isoformat()
        change = ToggleRequest(kind, tenant, body.on, identity.by, reason, expires, body.service or None)
        toggle = check_request(facts, change, at)
    except ToggleError as exc:
        raise Problem(422, str(exc)) from None
    stored = await toggles_for_tenant(request.app[REDIS], tenant, keyring, keys=keys_of(request))
    return Change(change, toggle, stored.in_force.get(kind), zone)


def parse_expiry_text(text: str, at: datetime, zone: ZoneInfo) -> datetime:
    try:
        return parse_expiry(text, at, zone)
    except ToggleError:
        raise ToggleError(
            f"the expiry {shown(text, 40)!r} is neither a duration (90m, 2h, 1d) nor a date and time "
            "(2026-11-24T18:00)"
        ) from None


def toggle_view(toggle: Toggle, zone: ZoneInfo) -> dict[str, Any]:
    return {
        "reason": toggle.reason,
        "by": toggle.by,
        "service": toggle.service,
        "expires_at": toggle.expires_at.isoformat(),
        "expires_local": when(toggle.expires_at, zone),
    }


def preview_view(change: Change) -> dict[str, Any]:
    request, toggle, zone = change.request, change.toggle, change.zone
    scope = request.tenant + (f" ({request.service} only)" if request.service else "")
    if toggle is not None:
        summary = f"{request.kind} on for {scope} until {when(toggle.expires_at, zone)}"
    else:
        summary = f"{request.kind} off for {scope}"
    was = f"on until {when(change.previous.expires_at, zone)}" if change.previous else "off"
    return {
        "kind": request.kind,
        "tenant": request.tenant,
        "service": request.service,
        "on": request.on,
        "reason": request.reason,
        "expires_at": toggle.expires_at.isoformat() if toggle else None,
        "expires_local": when(toggle.expires_at, zone) if toggle else None,
        "zone": zone.key,
        "previous": toggle_view(change.previous, zone) if change.previous else None,
        "summary": f"{summary} (now {was}); by {request.by}",
    }


async def commit(request: web.Request, change: Change) -> dict[str, Any]:
    try:
        audit_id, previous = await apply_toggle(
            request.app[REDIS], change.request, change.toggle, now(request), keyring=keyring_of(request),
            wait=request.app[CONFIG].redis_wait, keys=keys_of(request),
        )  # fmt: skip
    except ToggleError as exc:
        raise Problem(422, str(exc)) from None
    except NotReplicated as exc:  # stored on the primary, not yet confirmed on its replicas
        raise Problem(503, f"the change is not confirmed: {exc}; look at the toggle and try again") from None
    toggle = change.toggle
    log.info(  # who and what, not the reason (user text stays in the audit trail)
        "web.toggle_changed", tenant=change.request.tenant, kind=change.request.kind,
        on=toggle is not None, by=change.request.by, audit_id=audit_id,
    )  # fmt: skip
    return {
        "kind": change.request.kind,
        "tenant": change.request.tenant,
        "service": change.request.service,
        "on": toggle is not None,
        "expires_at": toggle.expires_at.isoformat() if toggle else None,
        "expires_local": when(toggle.expires_at, change.zone) if toggle else None,
        "previous": toggle_view(previous, change.zone) if previous else None,
        "audit_id": audit_id,
    }


async def tenant_toggles(request: web.Request, tenant: str) -> dict[str, Any]:
    _facts, zone = await tenant_zone(request, tenant)
    stored = await toggles_for_tenant(request.app[REDIS], tenant, keyring_of(request), keys=keys_of(request))
    return {
        "tenant": tenant,
        "zone": zone.key,
        "in_force": {kind: toggle_view(t, zone) for kind, t in stored.in_force.items()},
        "ignored": {kind: {"reason": r, "detail": d} for kind, (r, d) in stored.ignored.items()},
    }


def _local(value: Any, zone: ZoneInfo) -> str | None:
    try:
        return when(datetime.fromisoformat(str(value)), zone) if value else None
    except ValueError:
        return None


_ENTRY_FIELDS = ("id", "at", "by", "what", "reason", "service", "expires_at", "previous", "tenant")


def audit_view(entry: dict[str, Any], zone: ZoneInfo) -> dict[str, Any]:
    """One audit row in a fixed shape, its text escaped (control characters shown as escapes)."""
    clean = escaped_entry(entry)
    previous = clean.get("previous")
    if isinstance(previous, dict) and "expires_at" in previous:
        prior: dict[str, Any] | None = {
            "reason": str(previous.get("reason", "")),
            "by": str(previous.get("by", "")),
            "service": previous.get("service") if isinstance(previous.get("service"), str) else None,
            "expires_at": str(previous["expires_at"]),
            "expires_local": _local(previous["expires_at"], zone),
        }
    else:
        prior = None
    details = {
        k: v for k, v in clean.items() if k not in _ENTRY_FIELDS and isinstance(v, str | int | float | bool)
    }
    text = {
        k: (str(clean[k]) if clean.get(k) is not None else None) for k in ("reason", "service", "expires_at")
    }
    return {
        "id": str(clean.get("id", "")),
        "at": str(clean.get("at", "")),
        "at_local": _local(clean.get("at"), zone),
        "by": str(clean.get("by", "")),
        "what": str(clean.get("what", "")),
        **text,
        "expires_local": _local(text["expires_at"], zone),
        "previous": prior,
        "details": details,
    }


def audit_query(request: web.Request) -> tuple[str, int]:
    before = request.query.get("before", "+") or "+"
    if before != "+" and not _STREAM_ID.match(before):
        raise Problem(422, "before: an audit entry id (like 1764400000000-0), from next_before")
    raw = request.query.get("count", str(DEFAULT_AUDIT_COUNT))
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_AUDIT_COUNT:
        raise Problem(422, f"count: a whole number from 1 to {MAX_AUDIT_COUNT}")
    return before, int(raw)


async def tenant_audit(request: web.Request, tenant: str, before: str, count: int) -> dict[str, Any]:
    _facts, zone = await tenant_zone(request, tenant)
    entries = await audit_for_tenant(request.app[REDIS], tenant, count, before=before, keys=keys_of(request))
    rows = [audit_view(e, zone) for e in entries]
    return {
        "tenant": tenant,
        "zone": zone.key,
        "entries": rows,
        "next_before": rows[-1]["id"] if len(rows) == count else None,
    }


# --- the API -------------------------------------------------------------------------------------


async def get_tenants(request: web.Request) -> web.Response:
    identity = authenticated(request)
    facts = await plan_in_force(request)
    signing = request.app[CONFIG].toggle_keyring is not None
    tenants = [
        {
            "tenant": t,
            "zone": facts[t].zone.key,
            "supervisor": identity.may("supervisor", t),
            "toggles": signing,
        }
        for t in identity.tenants("viewer", sorted(facts))
    ]
    return web.json_response({"tenants": tenants})


async def get_toggles(request: web.Request) -> web.Response:
    tenant = request.match_info["tenant"]
    require(request, "viewer", tenant)
    return web.json_response(await tenant_toggles(request, tenant))


async def post_toggle(request: web.Request) -> web.Response:
    tenant = request.match_info["tenant"]
    identity = require(request, "supervisor", tenant)
    kind = kind_of(request)
    facts, _zone = await tenant_zone(request, tenant)
    keyring_of(request)
    body = await read_model(request, ToggleChange)
    change = await check_change(request, identity, facts, kind, body)
    if not body.confirm:
        preview = preview_view(change)
        problem = {
            "type": "about:blank",
            "title": "Confirmation needed",
            "status": 409,
            "detail": f"nothing changed: {preview['summary']}. Send the same body with "
            '"confirm": true to make the change.',
            "preview": preview,
        }
        return web.json_response(problem, status=409, content_type=PROBLEM_TYPE)
    return web.json_response(await commit(request, change))


async def get_audit(request: web.Request) -> web.Response:
    tenant = request.match_info["tenant"]
    require(request, "viewer", tenant)
    before, count = audit_query(request)
    return web.json_response(await tenant_audit(request, tenant, before, count))


# --- the pages -----------------------------------------------------------------------------------

PAGES = page_environment()
NO_KEY_PAGE = (
    "The toggle key is not configured on this service (toggle_key_file), so it can neither show "
    "nor change the toggles. Ask the service's administrator."
)


def _page_identity(request: web.Request) -> Identity | None:
    identity: Identity | None = request.get(IDENTITY)
    return identity


def _nav(tenant: str | None) -> list[dict[str, str]]:
    items = [
        {"key": "home", "label": "Councils", "href": "/"},
        {"key": "live", "label": "Live", "href": "/live"},
    ]
    if tenant is not None:
        items += [
            {"key": "cover", "label": "Emergency cover", "href": f"/tenants/{tenant}/emergency"},
            {"key": "audit", "label": "Audit", "href": f"/tenants/{tenant}/audit"},
        ]
    return [
        *items,
        {"key": "plans", "label": "Plans", "href": "/plans"},
        {"key": "reports", "label": "Reports", "href": "/reports"},
    ]


def _html(
    request: web.Request,
    identity: Identity,
    template: str,
    *,
    title: str,
    tenant: str | None = None,
    active: str = "",
    status: int = 200,
    **context: Any,
) -> web.Response:
    html = render_page(
        PAGES,
        template,
        title=title,
        user={"name": identity.display_name, "role": identity.user_id},
        csrf_token=csrf_token(request) or "",
        nav=_nav(tenant),
        active_nav=active,
        tenant=tenant,
        **context,
    )
    return web.Response(status=status, text=html, content_type="text/html")


def _to_login() -> web.HTTPSeeOther:
    return web.HTTPSeeOther("/login")


async def home(request: web.Request) -> web.Response:
    identity = _page_identity(request)
    if identity is None:
        raise _to_login()
    facts = await plan_in_force(request)
    tenants = identity.tenants("viewer", sorted(facts))
    if len(tenants) == 1 and identity.may("supervisor", tenants[0]):
        raise web.HTTPSeeOther(f"/tenants/{tenants[0]}/emergency")
    rows = [{"id": t, "supervisor": identity.may("supervisor", t)} for t in tenants]
    return _html(request, identity, "home.html.j2", title="Your councils", active="home", tenants=rows)


def _page_check(request: web.Request, role: str) -> tuple[Identity, str]:
    if _page_identity(request) is None:
        raise _to_login()
    tenant = request.match_info["tenant"]
    return require(request, role, tenant), tenant


def _after(entry_id: str) -> str:
    """The smallest id after ``entry_id`` (``before`` is exclusive)."""
    ms, _, seq = entry_id.partition("-")
    return f"{ms}-{int(seq) + 1}"


def _done_message(entry: dict[str, Any]) -> dict[str, str]:
    switched = "on" if entry["what"].endswith(".on") else "off"
    until = f" until {entry['expires_local']}" if entry["expires_local"] else ""
    text = f"Done: emergency cover switched {switched}{until}, by {entry['by']} at {entry['at_local']}. "
    return {"level": "success", "text": text + f"Reason: {entry['reason']}"}


async def emergency_page(request: web.Request) -> web.Response:
    identity, tenant = _page_check(request, "viewer")
    _facts, zone = await tenant_zone(request, tenant)
    done = request.query.get("done", "")
    messages = []
    if _STREAM_ID.match(done):
        found = await audit_for_tenant(
            request.app[REDIS], tenant, 1, before=_after(done), keys=keys_of(request)
        )
        if found and found[0]["id"] == done:
            messages.append(_done_message(audit_view(found[0], zone)))
    return await _emergency(request, identity, tenant, messages=messages)


async def _emergency(
    request: web.Request,
    identity: Identity,
    tenant: str,
    *,
    status: int = 200,
    errors: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
    messages: list[dict[str, str]] | None = None,
) -> web.Response:
    messages = list(messages or [])
    if request.app[CONFIG].toggle_keyring is None:
        _facts, zone = await tenant_zone(request, tenant)
        state: dict[str, Any] = {"zone": zone.key}
        kinds: list[dict[str, Any]] = []
        messages.append({"level": "error", "text": NO_KEY_PAGE})
    else:
        state = await tenant_toggles(request, tenant)
        kinds = [
            {"kind": kind, "toggle": state["in_force"].get(kind), "ignored": state["ignored"].get(kind)}
            for kind in KINDS
        ]
    errors = errors or {}
    summary = [{"id": f"field-{name}", "text": text} for name, text in errors.items()]
    return _html(
        request,
        identity,
        "emergency.html.j2",
        title=f"Emergency cover: {tenant}",
        tenant=tenant,
        active="cover",
        status=status,
        may_change=identity.may("supervisor", tenant) and bool(kinds),
        errors=errors,
        summary=summary,
        form=form or {"on": "on", "reason": "", "expires": "2h"},
        messages=messages,
        max_reason=MAX_REASON,
        kinds=kinds,
        zone=state["zone"],
    )


def _field_of(message: str) -> str:
    return "expires" if "expiry" in message else "reason"


async def emergency_post(request: web.Request) -> web.Response:
    """The form (step 1: the confirmation step) and the confirmation (step 2: the change)."""
    identity, tenant = _page_check(request, "supervisor")
    facts, _zone = await tenant_zone(request, tenant)
    fields = await read_form(request)
    form = {name: str(fields.get(name, ""))[: MAX_REASON * 4] for name in ("on", "reason", "expires")}
    on = form["on"] != "off"
    body = ToggleChange(
        on=on,
        reason=form["reason"],
        expires=form["expires"][:MAX_EXPIRES_CHARS] if on else None,
        confirm=fields.get("confirm") == "yes",
    )
    try:
        change = await check_change(request, identity, facts, "emergency", body)
    except Problem as exc:
        if exc.status != 422:
            raise
        errors = {_field_of(exc.detail): exc.detail}
        return await _emergency(request, identity, tenant, status=422, errors=errors, form=form)
    if not body.confirm:
        return _confirmation(request, identity, tenant, preview_view(change))
    result = await commit(request, change)
    raise web.HTTPSeeOther(f"/tenants/{tenant}/emergency?done={result['audit_id']}")


def _confirmation(
    request: web.Request, identity: Identity, tenant: str, preview: dict[str, Any]
) -> web.Response:
    previous = preview["previous"]
    now_text = (
        f"on until {previous['expires_local']} (by {previous['by']}: {previous['reason']})"
        if previous
        else "off"
    )
    rows = [{"label": "Council", "value": tenant}]
    if preview["on"]:
        rows += [
            {"label": "Emergency cover", "value": "on: every call goes to emergency cover"},
            {"label": "Until", "value": preview["expires_local"]},
        ]
    else:
        rows.append({"label": "Emergency cover", "value": "off: calls follow the routing plan"})
    rows += [{"label": "Reason", "value": preview["reason"]}, {"label": "Now", "value": now_text}]
    hidden = {"on": "on" if preview["on"] else "off", "reason": preview["reason"],
              "expires": preview["expires_at"] or "", "confirm": "yes"}  # fmt: skip
    word = "on" if preview["on"] else "off"
    return _html(
        request,
        identity,
        "emergency_confirm.html.j2",
        title=f"Confirm: emergency cover {word} for {tenant}",
        tenant=tenant,
        active="cover",
        preview=preview,
        question=f"Switch emergency cover {word} for {tenant}?",
        rows=rows,
        hidden=hidden,
        warning="every call to this council will go to emergency cover until then."
        if preview["on"]
        else None,
        confirm_label=f"Confirm: switch emergency cover {word}",
    )


async def audit_page(request: web.Request) -> web.Response:
    identity, tenant = _page_check(request, "viewer")
    before, count = audit_query(request)
    trail = await tenant_audit(request, tenant, before, count)
    rows = [
        {
            "when_text": e["at_local"] or e["at"],
            "who": e["by"],
            "what": e["what"] + (f" ({e['service']})" if e["service"] else ""),
            "previous": (
                f"on until {e['previous']['expires_local'] or e['previous']['expires_at']} "
                f"({e['previous']['by']}: {e['previous']['reason']})"
                if e["previous"]
                else "off"
            ),
            "reason": e["reason"] or "",
            "until_text": e["expires_local"],
        }
        for e in trail["entries"]
    ]
    return _html(
        request,
        identity,
        "audit.html.j2",
        title=f"Audit trail: {tenant}",
        tenant=tenant,
        active="audit",
        rows=rows,
        zone=trail["zone"],
        next_before=trail["next_before"],
    )


# --- routes and their documentation -------------------------------------------------------------


def setup(app: web.Application) -> None:
    app[FACTS_CACHE] = {}
    app.router.add_get("/", home)
    app.router.add_get("/api/v1/tenants", get_tenants)
    app.router.add_get(f"/api/v1/tenants/{_TENANT}/toggles", get_toggles)
    app.router.add_post(f"/api/v1/tenants/{_TENANT}/toggles/{{kind}}", post_toggle)
    app.router.add_get(f"/api/v1/tenants/{_TENANT}/audit", get_audit)
    app.router.add_get(f"/tenants/{_TENANT}/emergency", emergency_page)
    app.router.add_post(f"/tenants/{_TENANT}/emergency", emergency_post)
    app.router.add_get(f"/tenants/{_TENANT}/audit", audit_page)
    openapi.contribute(app, _openapi())


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


_NULLABLE_TEXT = {"type": ["string", "null"]}
_TENANT_PARAM = {
    "name": "tenant",
    "in": "path",
    "required": True,
    "description": "the council's id in the plan",
    "schema": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,63}$"},
}


def _openapi() -> dict[str, Any]:
    toggle = {
        "type": "object",
        "required": ["reason", "by", "service", "expires_at", "expires_local"],
        "properties": {
            "reason": {"type": "string"},
            "by": {"type": "string", "description": "the user id that switched it on"},
            "service": _NULLABLE_TEXT,
            "expires_at": {"type": "string", "format": "date-time"},
            "expires_local": {"type": "string", "description": "the expiry in the council's time zone"},
        },
    }
    nullable_toggle = {"oneOf": [_ref("Toggle"), {"type": "null"}]}
    preview = {
        "type": "object",
        "required": [
            "kind",
            "tenant",
            "service",
            "on",
            "reason",
            "expires_at",
            "expires_local",
            "zone",
            "previous",
            "summary",
        ],
        "properties": {
            "kind": {"type": "string", "enum": list(KINDS)},
            "tenant": {"type": "string"},
            "service": _NULLABLE_TEXT,
            "on": {"type": "boolean"},
            "reason": {"type": "string"},
            "expires_at": _NULLABLE_TEXT,
            "expires_local": _NULLABLE_TEXT,
            "zone": {"type": "string"},
            "previous": nullable_toggle,
            "summary": {"type": "string", "description": "what would happen, in one line"},
        },
    }
    change = {
        "type": "object",
        "additionalProperties": False,
        "required": ["on", "reason"],
        "properties": {
            "on": {"type": "boolean"},
            "reason": {
                "type": "string",
                "description": f"why (the audit trail); 1 to {MAX_REASON} characters, one line, "
                "no control characters",
            },
            "expires": {
                "type": ["string", "null"],
                "maxLength": MAX_EXPIRES_CHARS,
                "description": "on only: a duration (90m, 2h, 1d) or a date and time (ISO 8601; "
                f"without an offset: the council's time); in the future, at most {MAX_EXPIRY.days} days",
            },
            "service": {
                "type": ["string", "null"],
                "maxLength": 80,
                "description": "emergency: one queue only; announcement: its id",
            },
            "confirm": {
                "type": "boolean",
                "default": False,
                "description": "true: make the change; absent or false: 409 with the preview",
            },
        },
    }
    result = {
        "type": "object",
        "required": [
            "kind",
            "tenant",
            "service",
            "on",
            "expires_at",
            "expires_local",
            "previous",
            "audit_id",
        ],
        "properties": {
            "kind": {"type": "string"},
            "tenant": {"type": "string"},
            "service": _NULLABLE_TEXT,
            "on": {"type": "boolean"},
            "expires_at": _NULLABLE_TEXT,
            "expires_local": _NULLABLE_TEXT,
            "previous": nullable_toggle,
            "audit_id": {"type": "string"},
        },
    }
    state = {
        "type": "object",
        "required": ["tenant", "zone", "in_force", "ignored"],
        "properties": {
            "tenant": {"type": "string"},
            "zone": {"type": "string"},
            "in_force": {
                "type": "object",
                "additionalProperties": _ref("Toggle"),
                "description": "by kind: the toggles the controllers obey",
            },
            "ignored": {
                "type": "object",
                "description": "by kind: stored values the controllers ignore (unsigned, bad MAC...)",
                "additionalProperties": {
                    "type": "object",
                    "required": ["reason", "detail"],
                    "properties": {"reason": {"type": "string"}, "detail": {"type": "string"}},
                },
            },
        },
    }
    entry = {
        "type": "object",
        "required": [
            "id",
            "at",
            "at_local",
            "by",
            "what",
            "reason",
            "service",
            "expires_at",
            "expires_local",
            "previous",
            "details",
        ],
        "properties": {
            "id": {"type": "string"},
            "at": {"type": "string"},
            "at_local": _NULLABLE_TEXT,
            "by": {"type": "string", "description": "the authenticated user id"},
            "what": {"type": "string", "description": "e.g. toggle.emergency.on"},
            "reason": _NULLABLE_TEXT,
            "service": _NULLABLE_TEXT,
            "expires_at": _NULLABLE_TEXT,
            "expires_local": _NULLABLE_TEXT,
            "previous": nullable_toggle,
            "details": {"type": "object", "description": "other fields of the entry"},
        },
    }
    trail = {
        "type": "object",
        "required": ["tenant", "zone", "entries", "next_before"],
        "properties": {
            "tenant": {"type": "string"},
            "zone": {"type": "string"},
            "entries": {"type": "array", "items": _ref("AuditEntry")},
            "next_before": {
                "type": ["string", "null"],
                "description": "pass as before for the next (older) page; null: no more",
            },
        },
    }
    confirmation = {
        "description": "not changed: the preview of what the change would do; send it again with "
        '"confirm": true',
        "content": {
            PROBLEM_TYPE: {
                "schema": {
                    "allOf": [
                        _ref("Problem"),
                        {
                            "type": "object",
                            "required": ["preview"],
                            "properties": {"preview": _ref("TogglePreview")},
                        },
                    ]
                }
            }
        },
    }
    kind_param = {
        "name": "kind",
        "in": "path",
        "required": True,
        "description": "the toggle",
        "schema": {"type": "string", "enum": list(KINDS)},
    }
    html = {"text/html": {"schema": {"type": "string"}}}
    redirect = {
        "description": "not signed in: to /login; or (after a change, or one council) to the emergency page",
        "headers": {"Location": {"schema": {"type": "string"}}},
    }
    page_form = {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "csrf_token": {"type": "string", "description": "the session's CSRF token"},
                        "on": {"type": "string", "enum": ["on", "off"]},
                        "reason": {"type": "string"},
                        "expires": {"type": "string"},
                        "confirm": {"type": "string", "enum": ["yes"], "description": "yes: make the change"},
                    },
                }
            }
        },
    }
    pages = {
        "/": {
            "get": {
                "summary": "The page: the councils you may view (or the one you supervise)",
                "operationId": "homePage",
                "tags": ["toggles page"],
                "security": openapi.SECURED,
                "responses": {"200": {"description": "the page", "content": html}, "303": redirect},
            }
        },
        "/tenants/{tenant}/emergency": {
            "get": {
                "summary": "The page: a council's toggles and the emergency cover switch",
                "operationId": "emergencyPage",
                "tags": ["toggles page"],
                "security": openapi.SECURED,
                "parameters": [
                    _TENANT_PARAM,
                    {
                        "name": "done",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string"},
                        "description": "the audit id of a change just made: shown as its result",
                    },
                ],
                "responses": {
                    "200": {"description": "the page", "content": html},
                    "303": redirect,
                    **openapi.errors(403, 404, 503),
                },
            },
            "post": {
                "summary": "The switch: without confirm=yes the confirmation step, with it the change",
                "operationId": "emergencyChange",
                "tags": ["toggles page"],
                "security": openapi.SECURED,
                "parameters": [_TENANT_PARAM],
                "requestBody": page_form,
                "responses": {
                    "200": {"description": "the confirmation step", "content": html},
                    "303": redirect,
                    "422": {
                        "description": "the form again, with the reason beside its field",
                        "content": html,
                    },
                    **openapi.errors(400, 403, 404, 413, 415, 503),
                },
            },
        },
        "/tenants/{tenant}/audit": {
            "get": {
                "summary": "The page: a council's audit trail",
                "operationId": "auditPage",
                "tags": ["toggles page"],
                "security": openapi.SECURED,
                "parameters": [
                    _TENANT_PARAM,
                    {
                        "name": "before",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "pattern": r"^\d{1,20}-\d{1,20}$"},
                    },
                ],
                "responses": {
                    "200": {"description": "the page", "content": html},
                    "303": redirect,
                    **openapi.errors(403, 404, 422, 503),
                },
            }
        },
    }
    return {
        "paths": {
            **pages,
            "/api/v1/tenants": {
                "get": {
                    "summary": "The councils of the plan in force that the caller may view",
                    "operationId": "listTenants",
                    "security": openapi.SECURED,
                    "responses": {
                        "200": {"description": "the councils", "content": _json(_ref("TenantList"))},
                        **openapi.errors(401, 503),
                    },
                }
            },
            "/api/v1/tenants/{tenant}/toggles": {
                "get": {
                    "summary": "The council's toggles in force (checked) and those ignored",
                    "operationId": "listToggles",
                    "security": openapi.SECURED,
                    "parameters": [_TENANT_PARAM],
                    "responses": {
                        "200": {"description": "the toggles", "content": _json(_ref("TenantToggles"))},
                        **openapi.errors(401, 403, 404, 503),
                    },
                }
            },
            "/api/v1/tenants/{tenant}/toggles/{kind}": {
                "post": {
                    "summary": "Switch a toggle on (reason, expiry) or off (reason), after confirmation",
                    "description": 'Without "confirm": true nothing changes and the answer is 409 with '
                    "the preview. Needs the supervisor role for the tenant. Audited with the "
                    "authenticated user.",
                    "operationId": "setToggle",
                    "security": openapi.SECURED,
                    "parameters": [_TENANT_PARAM, kind_param, openapi.CSRF_HEADER_PARAM],
                    "requestBody": {"required": True, "content": _json(_ref("ToggleChange"))},
                    "responses": {
                        "200": {"description": "changed", "content": _json(_ref("ToggleResult"))},
                        "409": confirmation,
                        **openapi.errors(400, 401, 403, 404, 413, 415, 422, 503),
                    },
                }
            },
            "/api/v1/tenants/{tenant}/audit": {
                "get": {
                    "summary": "The council's audit trail, newest first",
                    "operationId": "tenantAudit",
                    "security": openapi.SECURED,
                    "parameters": [
                        _TENANT_PARAM,
                        {
                            "name": "before",
                            "in": "query",
                            "required": False,
                            "description": "entries older than this id (next_before of the previous page)",
                            "schema": {"type": "string", "pattern": r"^\d{1,20}-\d{1,20}$"},
                        },
                        {
                            "name": "count",
                            "in": "query",
                            "required": False,
                            "description": "entries at most",
                            "schema": {
                                "type": "integer",
                                "minimum": 1,
                                "maximum": MAX_AUDIT_COUNT,
                                "default": DEFAULT_AUDIT_COUNT,
                            },
                        },
                    ],
                    "responses": {
                        "200": {"description": "the entries", "content": _json(_ref("AuditTrail"))},
                        **openapi.errors(401, 403, 404, 422, 503),
                    },
                }
            },
        },
        "components": {
            "schemas": {
                "TenantList": {
                    "type": "object",
                    "required": ["tenants"],
                    "properties": {
                        "tenants": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["tenant", "zone", "supervisor", "toggles"],
                                "properties": {
                                    "tenant": {"type": "string"},
                                    "zone": {"type": "string", "description": "the council's time zone"},
                                    "supervisor": {
                                        "type": "boolean",
                                        "description": "may change its toggles",
                                    },
                                    "toggles": {
                                        "type": "boolean",
                                        "description": "false: no toggle key here (503)",
                                    },
                                },
                            },
                        }
                    },
                },
                "Toggle": toggle,
                "TogglePreview": preview,
                "ToggleChange": change,
                "ToggleResult": result,
                "TenantToggles": state,
                "AuditEntry": entry,
                "AuditTrail": trail,
            }
        },
    }
