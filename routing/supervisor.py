"""Supervisor toggles and the audit trail.

A toggle is stored in Redis under ``toggle:{kind}:{tenant}`` with a time to live equal to its
expiry, so it reverts by itself. Every change (a toggle switched on or off, a plan reloaded)
is appended to the audit stream with who, what, when, the previous value and the reason, in
the same server-side script as the change. Controllers refresh their copy of the toggles at
least four times a second.

Every toggle written is signed (``routing/toggle_mac.py``): controllers obey no other. ``by`` is
an opaque identity supplied by the caller: the supervisors' service passes the authenticated
user's id; ``callrouter toggle`` passes its ``--by`` and is for the service's host and its
administrators only (whoever can read the toggle key can sign any toggle).

The checks are pure (:func:`check_request`); the Redis part is :func:`apply_toggle`; the audit
trail is read with :func:`audit_tail` (everything) or :func:`audit_for_tenant`, and
:func:`escaped_entry` makes an entry's text safe to show on a terminal.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from redis.asyncio import Redis

from routing import metrics
from routing.core.live import Toggle
from routing.core.plan import Plan
from routing.live.source import signed_toggle_json, toggle_from_json, verified_toggle
from routing.redis_keys import KEYS, RedisKeys
from routing.replicas import NO_WAIT, ReplicaWait, eval_and_wait
from routing.toggle_mac import MAX_LIFETIME, ToggleKeyring, ToggleRejected

Kind = Literal["emergency", "closure", "announcement"]
KINDS: tuple[Kind, ...] = ("emergency", "closure", "announcement")
MAX_EXPIRY = MAX_LIFETIME  # 14 days: controllers refuse a signed toggle that lasts longer
_DURATION_MAX_DIGITS = 7  # 9,999,999 minutes is 19 years: longer than any expiry allowed
AUDIT_MAXLEN = 100_000
_DURATION = re.compile(r"^(\d+)\s*(m|min|h|d)$")
_UNITS = {"m": 60, "min": 60, "h": 3600, "d": 86400}
MAX_REASON = 500  # characters
MAX_BY = 80
# Characters that change how text is shown rather than being shown: C0/C1 controls (ESC starts
# an ANSI escape, CSI is U+009B), line and paragraph separators, bidirectional overrides.
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


class ToggleError(ValueError):
    """A toggle request that is refused, with the reason in plain words."""


@dataclass(frozen=True, slots=True)
class ToggleRequest:
    """A change asked for. ``by`` is the caller's identity, opaque here (the service passes the
    authenticated user's id); ``expires`` is the text given (``2h``, ``18:00``...)."""

    kind: str
    tenant: str
    on: bool
    by: str
    reason: str = ""
    expires: str = ""
    service: str | None = None


def _unsafe(char: str) -> bool:
    return unicodedata.category(char) in ("Cc", "Cs", "Zl", "Zp") or char in _BIDI_CONTROLS


def check_text(label: str, text: str, limit: int) -> str:
    """``text`` stripped, or :class:`ToggleError` if it is empty, longer than ``limit``
    characters, or holds control characters (ANSI escapes, new lines, bidi overrides)."""
    cleaned = text.strip()
    if not cleaned:
        raise ToggleError(f"{label} is empty")
    if len(cleaned) > limit:
        raise ToggleError(f"{label} is {len(cleaned)} characters long: at most {limit}")
    bad = next((c for c in cleaned if _unsafe(c)), None)
    if bad is not None:
        raise ToggleError(
            f"{label} holds a control character ({ascii(bad)[1:-1]}): plain text only, on one line"
        )
    return cleaned


def shown(text: object, limit: int = MAX_REASON) -> str:
    """``text`` fit for a terminal: control characters written as escapes (``\\x1b``), cut to
    ``limit`` characters. For text that was stored before it was checked, or by others."""
    value = str(text)
    if len(value) > limit:
        value = value[:limit] + "…"
    return "".join(ascii(c)[1:-1] if _unsafe(c) or c == "\\" else c for c in value)


def when(moment: datetime, zone: ZoneInfo) -> str:
    """``moment`` in the council's time zone, with its date: ``Fri 27 Nov 2026 14:23 GMT``."""
    return f"{moment.astimezone(zone):%a %d %b %Y %H:%M %Z}"


def parse_expiry(text: str, now: datetime, zone: ZoneInfo) -> datetime:
    """``1h``, ``90m``, ``2d``; ``18:00`` (today, or tomorrow if past); ``2026-11-24 18:00``."""
    cleaned = text.strip().lower()
    match = _DURATION.match(cleaned)
    if match:
        digits = match.group(1).lstrip("0") or "0"
        if len(digits) > _DURATION_MAX_DIGITS:  # far past any expiry allowed, and past int()'s limit
            raise ToggleError(
                f"expiry {text.strip()[:40]!r} is too far away (at most {MAX_EXPIRY.days} days ahead)"
            )
        return now + timedelta(seconds=int(digits) * _UNITS[match.group(2)])
    local_now = now.astimezone(zone)
    try:
        if re.fullmatch(r"\d\d:\d\d", cleaned):
            hour, minute = map(int, cleaned.split(":"))
            candidate = local_now.replace(hour=hour, minute=minute, second=0, microsecond=0)
            return candidate if candidate > local_now else candidate + timedelta(days=1)
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ToggleError(
            f"--expires '{shown(text, 80)}': give a duration (90m, 2h, 1d) "
            "or a time (18:00, 2026-11-24 18:00)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=zone)


@dataclass(frozen=True, slots=True)
class TenantFacts:
    """What a toggle request is checked against: a council's time zone, queues and announcements."""

    zone: ZoneInfo
    queues: tuple[str, ...]
    announcements: tuple[str, ...]


PlanFacts = Mapping[str, TenantFacts]


def plan_facts(plan: Plan) -> dict[str, TenantFacts]:
    return {
        tid: TenantFacts(t.zone(), tuple(sorted(t.queues)), tuple(sorted(a.id for a in t.announcements)))
        for tid, t in plan.tenants.items()
    }


def facts_json(facts: PlanFacts, path: str, version: int, at: datetime) -> str:
    """The stored form of the plan in force (what ``toggle`` checks against without ``--plan``)."""
    tenants = {
        tid: {"zone": f.zone.key, "queues": list(f.queues), "announcements": list(f.announcements)}
        for tid, f in facts.items()
    }
    data = {"path": path, "version": version, "at": at.isoformat(), "tenants": tenants}
    return json.dumps(data, separators=(",", ":"))


def facts_from_json(raw: str | bytes) -> dict[str, TenantFacts]:
    tenants = json.loads(raw)["tenants"]
    return {
        tid: TenantFacts(ZoneInfo(t["zone"]), tuple(t["queues"]), tuple(t["announcements"]))
        for tid, t in tenants.items()
    }


def _check_service(facts: PlanFacts, request: ToggleRequest) -> None:
    tenant = facts[request.tenant]
    if request.service is None:
        return
    if request.kind == "announcement":
        if request.service not in tenant.announcements:
            raise ToggleError(
                f"unknown announcement '{shown(request.service, 80)}' for {request.tenant} "
                f"(known: {', '.join(tenant.announcements)})"
            )
    elif request.kind == "emergency" and request.service not in tenant.queues:
        raise ToggleError(
            f"unknown service (queue) '{shown(request.service, 80)}' for {request.tenant} "
            f"(known: {', '.join(tenant.queues)})"
        )
    elif request.kind == "closure":
        raise ToggleError("a closure applies to the whole council: no --service")


def check_request(plan: Plan | PlanFacts, request: ToggleRequest, now: datetime) -> Toggle | None:
    """The toggle to store (None to switch off), or :class:`ToggleError` with the reason.

    Pure: ``plan`` is the plan in force or its :func:`plan_facts`; ``now`` is passed in."""
    facts = plan_facts(plan) if isinstance(plan, Plan) else plan
    if request.kind not in KINDS:
        raise ToggleError(f"unknown toggle '{shown(request.kind, 80)}' (known: {', '.join(KINDS)})")
    if request.tenant not in facts:
        raise ToggleError(f"unknown tenant '{shown(request.tenant, 80)}' (known: {', '.join(sorted(facts))})")
    if not request.by.strip():
        raise ToggleError("say who is making the change: --by NAME")
    if not request.reason.strip():
        raise ToggleError("give a reason: --reason TEXT (it goes in the audit trail)")
    by = check_text("--by", request.by, MAX_BY)
    reason = check_text("--reason", request.reason, MAX_REASON)
    _check_service(facts, request)
    if not request.on:
        return None
    if not request.expires:
        raise ToggleError("give an expiry: --expires 2h (or a time); a toggle must revert by itself")
    zone = facts[request.tenant].zone
    expires_at = parse_expiry(request.expires, now, zone)
    if expires_at <= now:
        raise ToggleError(f"expiry {when(expires_at, zone)} is in the past")
    if expires_at - now > MAX_EXPIRY:
        raise ToggleError(f"expiry more than {MAX_EXPIRY.days} days ahead: switch it on again later instead")
    return Toggle(reason, by, expires_at, request.service)


# Atomically: read the previous value, set (with expiry) or delete the toggle, append the
# audit entry with the previous value, and tell controllers.
# KEYS: toggle key, audit stream. ARGV: new JSON or "", ttl ms, audit JSON (without previous),
# audit maxlen, changed channel.
_APPLY = """
local previous = redis.call('GET', KEYS[1]) or ''
if ARGV[1] == '' then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', 'entry', ARGV[3], 'previous', previous)
redis.call('PUBLISH', ARGV[5], KEYS[1])
return {id, previous}
"""


def audit_entry(what: str, by: str, at: datetime, **details: Any) -> str:
    return json.dumps({"at": at.isoformat(), "by": by, "what": what, **details}, separators=(",", ":"))


def _check_write(request: ToggleRequest, toggle: Toggle | None, now: datetime) -> tuple[str, str]:
    """The checks :func:`apply_toggle` makes whoever called it: (by, reason) cleaned."""
    if request.kind not in KINDS:
        raise ToggleError(f"unknown toggle '{shown(request.kind, 80)}' (known: {', '.join(KINDS)})")
    check_text("tenant", request.tenant, MAX_BY)
    if ":" in request.tenant or "*" in request.tenant:
        raise ToggleError(f"tenant '{shown(request.tenant, 80)}' is not a tenant id")
    by = check_text("by", request.by, MAX_BY)
    reason = check_text("reason", request.reason, MAX_REASON)
    if (toggle is None) == request.on:
        raise ToggleError("an 'on' request needs a toggle to store, an 'off' request none")
    if toggle is not None:
        if toggle.expires_at <= now:
            raise ToggleError("the expiry is in the past")
        if toggle.expires_at - now > MAX_EXPIRY:
            raise ToggleError(f"expiry more than {MAX_EXPIRY.days} days ahead")
    return by, reason


async def apply_toggle(
    redis: Redis,
    request: ToggleRequest,
    toggle: Toggle | None,
    now: datetime,
    keys: RedisKeys = KEYS,
    *,
    keyring: ToggleKeyring,
    wait: ReplicaWait = NO_WAIT,
) -> tuple[str, Toggle | None]:
    """Store the change, signed with ``keyring``, and its audit entry in one atomic step; returns
    the audit id and the previous toggle (None if there was none, or it was not a toggle).

    ``toggle`` comes from :func:`check_request`; the identity, text and expiry are checked again
    here (:class:`ToggleError`), so no caller can store what the controllers would refuse.

    With ``wait`` on, it returns only once that many replicas hold the change
    (:class:`~routing.replicas.NotReplicated` if they do not confirm it in time)."""
    by, reason = _check_write(request, toggle, now)
    key_name = keys.toggle(request.kind, request.tenant)
    entry = audit_entry(
        f"toggle.{request.kind}.{'on' if request.on else 'off'}", by, now, tenant=request.tenant,
        service=request.service, reason=reason,
        expires_at=toggle.expires_at.isoformat() if toggle else None,
    )  # fmt: skip
    ttl_ms = int((toggle.expires_at - now).total_seconds() * 1000) if toggle else 0
    value = signed_toggle_json(keyring, key_name, toggle, now) if toggle else ""
    script_keys = [key_name, keys.audit_stream()]
    args = [value, str(max(ttl_ms, 1)), entry, str(AUDIT_MAXLEN), keys.toggles_changed_channel()]
    audit_id, previous = await eval_and_wait(redis, wait, _APPLY, script_keys, args)
    metrics.toggle_changed(request.kind, request.on)
    return _text(audit_id), _previous(previous)


@dataclass(frozen=True, slots=True)
class StoredToggles:
    """One council's toggles as stored: those a controller obeys (``in_force``), and for each
    other value its rejection (reason, detail; the stored text is not kept: nobody with the key
    wrote it). ``checked`` is False when no key was given: ``in_force`` is then as stored."""

    in_force: dict[str, Toggle]
    ignored: dict[str, tuple[str, str]]
    checked: bool


async def toggles_for_tenant(
    redis: Redis, tenant: str, keyring: ToggleKeyring | None, keys: RedisKeys = KEYS
) -> StoredToggles:
    """The council's toggles in Redis, checked as a controller checks them (one round trip).
    Without a keyring (a reader with no key) they are listed unchecked."""
    names = [keys.toggle(kind, tenant) for kind in KINDS]
    in_force: dict[str, Toggle] = {}
    ignored: dict[str, tuple[str, str]] = {}
    for kind, name, raw in zip(KINDS, names, await redis.mget(names), strict=True):
        if raw is None:
            continue
        try:
            in_force[kind] = verified_toggle(keyring, name, raw) if keyring else toggle_from_json(raw)
        except ToggleRejected as exc:
            ignored[kind] = (exc.reason, exc.detail)
        except ValueError:
            ignored[kind] = ("malformed", "not a stored toggle")
    return StoredToggles(in_force, ignored, keyring is not None)


def _previous(raw: bytes | str | None) -> Toggle | None:
    """A stored previous value as a toggle, or None (nothing, or something else written by hand)."""
    if not raw:
        return None
    try:
        return toggle_from_json(raw)
    except ValueError:
        return None


async def audit(
    redis: Redis, what: str, by: str, now: datetime, details: dict[str, Any], *, keys: RedisKeys = KEYS
) -> str:
    """Append an entry (e.g. a plan reload) to the audit stream."""
    entry = audit_entry(what, by, now, **details)
    entry_id = await redis.xadd(keys.audit_stream(), {"entry": entry, "previous": ""}, maxlen=AUDIT_MAXLEN)
    return _text(entry_id)


MAX_AUDIT_FIELD = 2000  # characters kept of any one text field of an entry read back
AUDIT_SCAN_LIMIT = 20_000  # entries read at most to find one tenant's
_AUDIT_PAGE = 500


def _bounded(value: Any) -> Any:
    """``value`` with every string in it cut to :data:`MAX_AUDIT_FIELD` characters."""
    if isinstance(value, str):
        return value if len(value) <= MAX_AUDIT_FIELD else value[:MAX_AUDIT_FIELD] + "…"
    if isinstance(value, dict):
        return {str(k)[:80]: _bounded(v) for k, v in list(value.items())[:50]}
    if isinstance(value, list):
        return [_bounded(v) for v in value[:50]]
    return value


def _entry(entry_id: Any, fields: Mapping[Any, Any]) -> dict[str, Any]:
    """One audit row as a dict (id, at, by, what, details..., previous), text bounded. A row
    written by something else (not JSON) is kept, as ``what: "unreadable"``."""
    try:
        data = json.loads(fields[b"entry"])
        if not isinstance(data, dict):
            raise ValueError("not an object")
    except (KeyError, ValueError, UnicodeDecodeError):
        data = {"what": "unreadable", "raw": fields.get(b"entry", b"").decode("utf-8", "replace")}
    raw_previous = fields.get(b"previous", b"")
    try:
        previous = json.loads(raw_previous) if raw_previous else None
    except (ValueError, UnicodeDecodeError):
        previous = {"unreadable": raw_previous.decode("utf-8", "replace")}
    entry: dict[str, Any] = _bounded({**data, "id": _text(entry_id), "previous": previous})
    return entry


async def audit_tail(redis: Redis, count: int = 20, keys: RedisKeys = KEYS) -> list[dict[str, Any]]:
    """The latest ``count`` audit entries, newest first (text as stored, bounded: show it through
    :func:`escaped_entry` or an HTML template's escaping)."""
    rows = await redis.xrevrange(keys.audit_stream(), count=count) or []
    return [_entry(entry_id, fields) for entry_id, fields in rows if fields]


async def audit_for_tenant(
    redis: Redis,
    tenant: str,
    count: int = 50,
    keys: RedisKeys = KEYS,
    *,
    before: str = "+",
    scan_limit: int = AUDIT_SCAN_LIMIT,
) -> list[dict[str, Any]]:
    """The latest ``count`` audit entries about ``tenant``, newest first, older than the entry
    id ``before`` (exclusive; ``+``: from the newest), looking back at most ``scan_limit``
    entries of the stream. Entries without a tenant (plan reloads) are not included."""
    found: list[dict[str, Any]] = []
    end, scanned = before if before == "+" else f"({before}", 0
    while len(found) < count and scanned < scan_limit:
        page = min(_AUDIT_PAGE, scan_limit - scanned)
        rows = await redis.xrevrange(keys.audit_stream(), max=end, count=page) or []
        if not rows:
            break
        scanned += len(rows)
        for entry_id, fields in rows:
            if not fields:
                continue
            entry = _entry(entry_id, fields)
            if entry.get("tenant") == tenant:
                found.append(entry)
                if len(found) == count:
                    break
        end = f"({_text(rows[-1][0])}"
    return found


def escaped_entry(entry: Mapping[str, Any]) -> dict[str, Any]:
    """``entry`` with every text in it passed through :func:`shown` (control characters as
    visible escapes, bounded): fit for a terminal, a log line or a plain-text export."""

    def clean(value: Any) -> Any:
        if isinstance(value, str):
            return shown(value, MAX_AUDIT_FIELD)
        if isinstance(value, dict):
            return {shown(k, 80): clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    return {shown(k, 80): clean(v) for k, v in entry.items()}


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
