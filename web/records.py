"""Contact records and the KPI report over HTTP, and the adviser's disposition (``docs/web.md``).

- ``GET /api/v1/tenants/{tenant}/records``: a council's records in a range of local days, by
  disposition and by caller number, a page at a time (a cursor); ``GET .../records/{id}``: the
  latest version with the list of versions. Viewer of the tenant.
- ``GET /api/v1/tenants/{tenant}/report`` (the KPI JSON, as ``callrouter report --format
  json``) and ``GET /tenants/{tenant}/report.html`` (the self-contained HTML report). Viewer.
- ``POST /api/v1/tenants/{tenant}/records/{id}/disposition``: the adviser's disposition after
  the call; supervisor of the tenant (an adviser's desktop posts with a supervisor's API
  token). Checked here (kind, reason from the tenant's list, team), then put on the centre's
  dispositions stream and answered 202 with a request id (``records.dispositions``): the
  controller that emits the call's record applies it in its builder, as it does the AMI
  ``CallDisposition``; for a call no controller holds, this service's archive consumer
  (:func:`start_fallback`, a background task) makes the next version from the latest
  archived one. ``GET .../dispositions/{request_id}``: where the request stands (viewer).
- The pages ``GET /tenants/{tenant}/kpis`` (today's KPIs and hour chart; viewer) and
  ``GET /reports`` (the councils the user may see).

Records are read from the owner's archive, as ``records export`` and ``find`` read them
(``records.archive``); every read is audited with the authenticated identity, a caller search
with the number's keyed hash and its masked form, never the number. The API never shows a
complete caller number: ``caller.number`` is masked (the full number stays in the owner's export).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import re
import secrets
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal, TypeVar

import structlog
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from records.archive import Archive
from records.builder import caller_hash
from records.disposition import KINDS, DispositionError, checked
from records.dispositions import STUCK_S, ArchiveApplier, read_status, submit
from records.dispositions import Request as DispositionRequest
from records.kpi import PERIODS, Period, Range, report, settings_for
from records.model import CALLER_MAX, TEXT_MAX, ContactRecord
from routing.core.linkedid import LINKEDID_MAX, LINKEDID_PATTERN, is_linkedid, linkedid_seconds
from routing.core.plan import Plan, Tenant
from routing.masking import mask_number
from routing.supervisor import audit
from web import openapi
from web.auth import authenticated, csrf_token, require
from web.context import CLOCK, CONFIG, REDIS, keys_of, now
from web.identity import Identity
from web.problems import Problem, read_model
from web.templating import page_environment, render_page

PlanSource = Callable[[], Awaitable[Plan]]
log = structlog.get_logger("callrouter.web")


@dataclass(frozen=True, slots=True)
class RecordsSource:
    """Where the records come from: the owner's archive (``records.archive_dir``), the caller
    hash key (``records.caller_hash_key``, for a search by number) and the plan in force."""

    archive: Archive
    caller_key: bytes | None
    plan: PlanSource


RECORDS = web.AppKey("records_source", RecordsSource)

DEFAULT_LIMIT, MAX_LIMIT = 50, 500
MAX_LIST_DAYS = 93
"""Longest range of a records query (about a quarter); a longer one is refused (400)."""
MAX_REPORT_DAYS = 366
"""Longest range of a report: a year. A report holds its range's records in memory, so at most
:data:`REPORTS_AT_ONCE` are made at a time; the others wait their turn."""
REPORTS_AT_ONCE = 2
DISPOSITION_FILTERS = (*KINDS, "none")
_RENDER = threading.Lock()  # matplotlib's pyplot keeps global state: one chart at a time
_REPORTS = threading.BoundedSemaphore(REPORTS_AT_ONCE)


# --- what each handler needs ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Asked:
    identity: Identity
    source: RecordsSource
    plan: Plan
    tenant: Tenant
    tenant_id: str


async def _source(request: web.Request) -> tuple[RecordsSource, Plan]:
    """The records source and the plan in force, or a 503 problem saying which is missing."""
    source = request.app.get(RECORDS)
    if source is None:
        raise Problem(503, "contact records are not set up on this service (records.archive_dir)")
    try:
        plan = await source.plan()
    except Exception as exc:  # the plan file or store cannot be read just now
        raise Problem(503, f"the routing plan cannot be read ({type(exc).__name__})") from None
    return source, plan


async def _asked(request: web.Request, role: str) -> Asked:
    """Authorised for ``role`` of the path's tenant (401/403), a tenant of the plan (404)."""
    tenant_id = request.match_info["tenant"]
    identity = require(request, role, tenant_id)
    source, plan = await _source(request)
    tenant = plan.tenants.get(tenant_id)
    if tenant is None:
        raise Problem(404, f"no tenant {tenant_id[:64]} in the plan")
    return Asked(identity, source, plan, tenant, tenant_id)


def _query(request: web.Request, name: str, *, required: bool = False, limit: int = 64) -> str | None:
    value = request.query.get(name)
    if value is None or value == "":
        if required:
            raise Problem(400, f"the query parameter {name} is required")
        return None
    if len(value) > limit:
        raise Problem(400, f"{name} is longer than {limit} characters")
    return value


def _day(request: web.Request, name: str) -> date:
    text = _query(request, name, required=True)
    assert text is not None
    try:
        return date.fromisoformat(text) if len(text) == 10 else _bad_date(name)
    except ValueError:
        return _bad_date(name)


def _bad_date(name: str) -> date:
    raise Problem(400, f"{name} must be a date, YYYY-MM-DD (the tenant's local day)")


def _span(request: web.Request, longest: int) -> Range:
    span = Range(_day(request, "from"), _day(request, "to"))
    if span.last < span.first:
        raise Problem(400, f"to ({span.last}) is before from ({span.first})")
    if span.days > longest:
        raise Problem(400, f"the range is {span.days} days: at most {longest} days at a time")
    return span


def _limit(request: web.Request) -> int:
    text = _query(request, "limit", limit=6)
    if text is None:
        return DEFAULT_LIMIT
    if not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
        raise Problem(400, f"limit must be a whole number from 1 to {MAX_LIMIT}")
    return int(text)


# --- what a record looks like here -----------------------------------------------------------


def shown(record: ContactRecord) -> dict[str, Any]:
    """The record as the API shows it: whole, but the caller's number masked."""
    data = record.model_dump(mode="json")
    if data["caller"]["number"] is not None:
        data["caller"]["number"] = mask_number(data["caller"]["number"])
    return data


def summary(record: ContactRecord) -> dict[str, Any]:
    """One line of a records list."""
    outcome = (
        record.queues[-1].outcome if record.queues else ("ivr_abandoned" if record.ivr.abandoned else None)
    )
    data = record.model_dump(mode="json", include={"arrived_at", "updated_at", "answered", "disposition"})
    return {
        "id": record.id,
        "version": record.version,
        "arrived_at": data["arrived_at"],
        "updated_at": data["updated_at"],
        "complete": record.complete,
        "dialled": record.dialled,
        "caller": mask_number(record.caller.number) if record.caller.number else None,
        "caller_withheld": record.caller.withheld,
        "decision": record.decisions[-1].kind if record.decisions else None,
        "queue_outcome": outcome,
        "answered_at": data["answered"]["at"] if data["answered"] else None,
        "talk_s": record.talk_s,
        "survey": record.survey,
        "disposition": data["disposition"],
    }


def _cursor(record: ContactRecord) -> str:
    raw = json.dumps([record.arrived_at.isoformat(), record.id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _after(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        arrived, record_id = json.loads(raw)
        moment = datetime.fromisoformat(arrived)
        if moment.tzinfo is None or not is_linkedid(record_id):
            raise ValueError
        return moment, record_id
    except (ValueError, TypeError):
        raise Problem(400, "cursor is not one this service gave (use next_cursor as it is)") from None


def _page(
    archive: Archive,
    tenant: str,
    start: datetime,
    end: datetime,
    *,
    after: tuple[datetime, str] | None,
    limit: int,
    keep: Callable[[ContactRecord], bool],
) -> tuple[list[ContactRecord], str | None]:
    """Up to ``limit`` records in arrival order after the cursor, and the next cursor."""
    found: list[ContactRecord] = []
    if after is not None:
        start = max(start, after[0])  # the days before the cursor's are not read again
    records: Iterator[ContactRecord] = archive.records(tenant, start, end) if start < end else iter(())
    for record in records:
        if after is not None and (record.arrived_at, record.id) <= after:
            continue
        if keep(record):
            found.append(record)
            if len(found) > limit:
                return found[:limit], _cursor(found[limit - 1])
    return found, None


def _versions(archive: Archive, tenant: str, record_id: str) -> list[ContactRecord]:
    """Every archived version of the record, oldest first.

    A record is filed under the UTC day its call arrived, and a Linkedid begins with the Unix
    time its channel was made: that day is read first, the days either side only if the record
    is not there (a call made just before midnight whose arrival was logged just after)."""
    epoch = linkedid_seconds(record_id)
    if epoch is None:
        return []
    try:
        middle = datetime.fromtimestamp(epoch, UTC).date()
    except (OverflowError, OSError, ValueError):
        return []
    held = set(archive.days(tenant))
    for day in (middle, middle - timedelta(days=1), middle + timedelta(days=1)):
        if day not in held:
            continue
        found = {
            r.version: r for r in archive.versions(tenant, day) if r.id == record_id and r.tenant == tenant
        }
        if found:
            return [found[v] for v in sorted(found)]
    return []


T = TypeVar("T")


async def _reading(read: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Read the archive in a worker thread (the event loop keeps serving); an archive that
    cannot be read (permissions, a missing mount) is a 503 problem, not a 500."""
    try:
        return await asyncio.to_thread(read, *args, **kwargs)
    except OSError as exc:
        log.error("web.records_archive_unreadable", error=type(exc).__name__, errno=exc.errno)
        raise Problem(503, "the records archive cannot be read just now") from None


async def _latest(asked: Asked, record_id: str) -> list[ContactRecord]:
    if not is_linkedid(record_id):
        raise Problem(404, "a record id is the call's Linkedid ([systemname-]digits.digits)")
    versions = await _reading(_versions, asked.source.archive, asked.tenant_id, record_id)
    if not versions:
        raise Problem(404, f"no record {record_id} of tenant {asked.tenant_id}")
    return versions


# --- handlers ---------------------------------------------------------------------------------


async def list_records(request: web.Request) -> web.Response:
    asked = await _asked(request, "viewer")
    span = _span(request, MAX_LIST_DAYS)
    disposition = _query(request, "disposition", limit=20)
    if disposition is not None and disposition not in DISPOSITION_FILTERS:
        raise Problem(400, f"disposition must be one of {', '.join(DISPOSITION_FILTERS)}")
    number = _query(request, "caller", limit=CALLER_MAX)
    cursor = _query(request, "cursor", limit=400)
    after = _after(cursor) if cursor else None
    limit = _limit(request)
    wanted: str | None = None
    details: dict[str, Any] = {
        "tenant": asked.tenant_id,
        "from": span.first.isoformat(),
        "to": span.last.isoformat(),
        "disposition": disposition,
        "format": "api",
    }
    what = "records.list"
    if number is not None:
        key = asked.source.caller_key
        if key is None:
            raise Problem(503, "a search by caller needs the caller hash key (records.caller_hash_key)")
        wanted, what = caller_hash(key, number.strip()), "records.find"
        details |= {"caller_hash": wanted, "caller": mask_number(number.strip())}
    # every page is audited: a cursor is the caller's to send, so a first page cannot be told apart
    details["page"] = "next" if after is not None else "first"
    await audit(request.app[REDIS], what, asked.identity.by, now(request), details, keys=keys_of(request))

    def keep(record: ContactRecord) -> bool:
        if wanted is not None and record.caller.hash != wanted:
            return False
        if disposition is None:
            return True
        held = record.disposition.kind if record.disposition else "none"
        return held == disposition

    start, end = span.bounds(asked.tenant.zone())
    found, next_cursor = await _reading(
        _page, asked.source.archive, asked.tenant_id, start, end, after=after, limit=limit, keep=keep
    )
    return web.json_response(
        {
            "tenant": asked.tenant_id,
            "from": span.first.isoformat(),
            "to": span.last.isoformat(),
            "records": [summary(r) for r in found],
            "next_cursor": next_cursor,
        }
    )


async def get_record(request: web.Request) -> web.Response:
    asked = await _asked(request, "viewer")
    record_id = request.match_info["record_id"]
    versions = await _latest(asked, record_id)
    await audit(
        request.app[REDIS],
        "records.read",
        asked.identity.by,
        now(request),
        {"tenant": asked.tenant_id, "record": record_id},
        keys=keys_of(request),
    )
    return web.json_response(
        {
            "record": shown(versions[-1]),
            "versions": [
                {
                    "version": r.version,
                    "updated_at": r.model_dump(mode="json", include={"updated_at"})["updated_at"],
                    "disposition": r.disposition.kind if r.disposition else None,
                }
                for r in versions
            ],
        }
    )


def _period(request: web.Request) -> Period:
    text = _query(request, "period", limit=10) or "day"
    for period in PERIODS:
        if period == text:
            return period
    raise Problem(400, f"period must be one of {', '.join(PERIODS)}")


async def report_data(
    request: web.Request, asked: Asked, span: Range, period: Period, fmt: str
) -> dict[str, Any]:
    """The KPI report of ``span`` (audited as ``records.report``, as ``callrouter report`` is)."""
    await audit(
        request.app[REDIS],
        "records.report",
        asked.identity.by,
        now(request),
        {
            "tenant": asked.tenant_id,
            "from": span.first.isoformat(),
            "to": span.last.isoformat(),
            "format": fmt,
        },
        keys=keys_of(request),
    )
    kpi = settings_for(asked.tenant)
    archive, tenant, at = asked.source.archive, asked.tenant_id, now(request)

    def made() -> dict[str, Any]:
        with _REPORTS:
            found = archive.records(tenant, *span.bounds(kpi.zone))
            return report(tenant, found, span, period, kpi, generated_at=at)

    return await _reading(made)


async def report_json(request: web.Request) -> web.Response:
    asked = await _asked(request, "viewer")
    span, period = _span(request, MAX_REPORT_DAYS), _period(request)
    return web.json_response(await report_data(request, asked, span, period, "json"))


_STYLE = re.compile(r"<style>(.*?)</style>", re.S)
NONE = "'none'"


def page_csp(html: str) -> str:
    """The CSP of the self-contained report: nothing loaded from anywhere, its own style block
    (by its hash) and its embedded ``data:`` images."""
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(s.encode("utf-8")).digest()).decode() + "'"
        for s in _STYLE.findall(html)
    )
    return (
        f"default-src 'none'; style-src {hashes or NONE}; img-src data:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


def render(draw: Callable[[], str]) -> str:
    with _RENDER:
        return draw()


async def report_html(request: web.Request) -> web.Response:
    asked = await _asked(request, "viewer")
    span, period = _span(request, MAX_REPORT_DAYS), _period(request)
    data = await report_data(request, asked, span, period, "html")
    from records.report import render_html  # noqa: PLC0415 - matplotlib loads slowly; only here

    html = await asyncio.to_thread(render, lambda: render_html(data, asked.tenant.name))
    return web.Response(
        text=html, content_type="text/html", headers={"Content-Security-Policy": page_csp(html)}
    )


# --- the page: today's KPIs ---------------------------------------------------------------------

PAGES = page_environment()
KPI_REPORT_DAYS = 7  # the full report's default range on the page: the last week, today included


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f} %"


def _figure(label: str, value: object) -> dict[str, str]:
    return {"label": label, "value": "–" if value is None else str(value)}


def kpi_tiles(total: dict[str, Any], service_level_s: float) -> list[dict[str, Any]]:
    """The page's tiles from the report's ``total`` (pure: figures in, words out)."""
    a, s, sat = total["accessibility"], total["service_levels"], total["satisfaction"]
    if s["fpoc_rate"] is None:
        fpoc_status, fpoc_text = "stale", "No dispositions yet"
    elif s["fpoc_met"]:
        fpoc_status, fpoc_text = "normal", "Target met"
    else:
        fpoc_status, fpoc_text = "busy", "Below target"

    def tile(
        key: str, title: str, *figures: dict[str, str], status: str = "normal", text: str = ""
    ) -> dict[str, Any]:
        return {"id": key, "title": title, "status": status, "status_text": text, "figures": list(figures)}

    return [
        tile("offered", "Calls offered", _figure("Offered", a["offered"]),
             _figure("Overflowed to partner", a["overflowed_to_partner"]),
             _figure("Out of hours", a["out_of_hours"])),
        tile("answered", "Answered", _figure("Answered", a["answered"]),
             _figure("Answered rate", _percent(a["answered_rate"])),
             _figure(f"Within {service_level_s:g} s", a["answered_within_service_level"]),
             _figure("Service level", _percent(a["service_level_rate"]))),
        tile("abandoned", "Abandoned", _figure("Abandoned", a["abandoned_in_queue"] + a["abandoned_in_ivr"]),
             _figure("In a queue", a["abandoned_in_queue"]), _figure("In the menus", a["abandoned_in_ivr"])),
        tile("fpoc", "First point of contact", _figure("Resolved first time", _percent(s["fpoc_rate"])),
             _figure("Target", _percent(s["fpoc_target"])), _figure("Dispositions", s["dispositions"]),
             status=fpoc_status, text=fpoc_text),
        tile("satisfaction", "Satisfaction", _figure("Survey answers", sat["responses"]),
             _figure("Good", sat["good"]), _figure("Average", sat["average"]), _figure("Poor", sat["poor"]),
             _figure("Complaints", sat["complaints"])),
    ]  # fmt: skip


async def kpi_page(request: web.Request) -> web.Response:
    """``GET /tenants/{tenant}/kpis``: today's KPIs in the council's time zone (viewer)."""
    asked = await _asked(request, "viewer")
    zone = asked.tenant.zone()
    today = now(request).astimezone(zone).date()
    data = await report_data(request, asked, Range(today, today), "day", "page")
    counts = data["volume"]["by_weekday_hour"][today.weekday()]
    from records.report import hour_bars  # noqa: PLC0415 - matplotlib loads slowly; only here

    chart = await asyncio.to_thread(render, lambda: hour_bars(counts)) if any(counts) else ""
    html = render_page(
        PAGES,
        "kpis.html.j2",
        title=f"Today's KPIs: {asked.tenant.name}",
        user={"name": asked.identity.display_name or asked.identity.user_id},
        csrf_token=csrf_token(request) or "",
        active_nav="reports",
        tenant_name=asked.tenant.name,
        day_text=f"{today:%A} {today.day} {today:%B %Y}",
        zone=zone.key,
        tiles=kpi_tiles(data["total"], data["settings"]["service_level_s"]),
        offered=data["total"]["accessibility"]["offered"],
        chart=chart,
        hours=[{"label": f"{h:02d}:00–{h:02d}:59", "count": c} for h, c in enumerate(counts)],
        report_url=f"/tenants/{asked.tenant_id}/report.html",
        report_from=(today - timedelta(days=KPI_REPORT_DAYS - 1)).isoformat(),
        report_to=today.isoformat(),
    )
    return web.Response(text=html, content_type="text/html")


async def reports_page(request: web.Request) -> web.Response:
    """``GET /reports``: the councils whose KPIs this user may see (any authenticated user)."""
    identity = authenticated(request)
    _, plan = await _source(request)
    tenants = [
        {"name": plan.tenants[t].name, "kpis_url": f"/tenants/{t}/kpis"}
        for t in identity.tenants("viewer", sorted(plan.tenants))
    ]
    html = render_page(
        PAGES,
        "reports.html.j2",
        title="Reports",
        user={"name": identity.display_name or identity.user_id},
        csrf_token=csrf_token(request) or "",
        active_nav="reports",
        tenants=tenants,
    )
    return web.Response(text=html, content_type="text/html")


class DispositionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["resolved", "back_office", "avoidable", "complaint"]
    team: str | None = Field(None, max_length=63)
    reason: str | None = Field(None, max_length=63)


IDEMPOTENCY_KEY = re.compile(r"^[!-~]{1,128}$")
"""The ``Idempotency-Key`` header: 1 to 128 printable ASCII characters, no spaces."""
REQUEST_ID = re.compile(r"^[A-Za-z0-9_-]{22}$")
RECENT_S = 7 * 3600.0
"""A record id with no trace yet (not archived, no version appended, no controller owning it)
is taken if its Linkedid is this recent (a call's longest life and its grace): its record may be
on its way. An older one is 404."""


def request_id(tenant: str, by: str, key: str | None) -> str:
    """The request id: from the caller's idempotency key (the same key of the same identity and
    tenant gives the same id), else random. Base64url, never a long digit run."""
    raw = (
        hashlib.sha256(f"{tenant}\0{by}\0{key}".encode()).digest()[:16]
        if key is not None
        else secrets.token_bytes(16)
    )
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


async def _traced(request: web.Request, asked: Asked, record_id: str) -> bool:
    """Whether the record is known: archived for the tenant, or a version of it appended, or a
    controller owning the call."""
    if await _reading(_versions, asked.source.archive, asked.tenant_id, record_id):
        return True
    centre = asked.plan.centre
    schema = keys_of(request)
    keys = (schema.record_appended(centre, record_id), schema.record_owner(centre, record_id))
    return bool(await request.app[REDIS].exists(*keys))


async def post_disposition(request: web.Request) -> web.Response:
    """Checks the disposition and puts it on the centre's dispositions stream: the controller
    that emits the call's record applies it, or the archive fallback (``records.dispositions``).
    202 with the request's status; the same ``Idempotency-Key`` again gives the same request."""
    asked = await _asked(request, "supervisor")
    record_id = request.match_info["record_id"]
    if not is_linkedid(record_id):
        raise Problem(404, "a record id is the call's Linkedid ([systemname-]digits.digits)")
    key = request.headers.get("Idempotency-Key")
    if key is not None and not IDEMPOTENCY_KEY.match(key):
        raise Problem(400, "Idempotency-Key must be 1 to 128 printable characters without spaces")
    body = await read_model(request, DispositionBody)
    try:
        kind, team, reason = checked(
            body.kind, body.team, body.reason, asked.tenant.avoidable_contact_reasons
        )
    except DispositionError as exc:
        raise Problem(422, str(exc)) from None
    at = now(request)
    if at.timestamp() - (linkedid_seconds(record_id) or 0) > RECENT_S and not await _traced(
        request, asked, record_id
    ):
        raise Problem(404, f"no record {record_id} of tenant {asked.tenant_id}")
    by = asked.identity.by
    asked_for = DispositionRequest(
        request_id(asked.tenant_id, by, key), asked.tenant_id, record_id, kind, team, reason, by[:TEXT_MAX],
        at.timestamp(),
    )  # fmt: skip
    redis = request.app[REDIS]
    status, new = await submit(redis, asked.plan.centre, asked_for, at.timestamp(), keys=keys_of(request))
    if not new and not status.request.same(asked_for):
        raise Problem(409, "this Idempotency-Key was used for another disposition: use a new key")
    if new:
        await audit(
            redis,
            "records.disposition",
            by,
            at,
            {"tenant": asked.tenant_id, "record": record_id, "request": asked_for.request_id,
             "kind": kind, "team": team, "reason": reason}, keys=keys_of(request),
        )  # fmt: skip
    location = f"/api/v1/tenants/{asked.tenant_id}/dispositions/{asked_for.request_id}"
    return web.json_response(status.shown(), status=202, headers={"Location": location})


async def get_disposition(request: web.Request) -> web.Response:
    """A disposition request's status: pending, applied (with the version that carries it) or
    refused (with the reason). Viewer of the tenant."""
    asked = await _asked(request, "viewer")
    wanted = request.match_info["request_id"]
    found = (
        await read_status(request.app[REDIS], asked.plan.centre, wanted, keys=keys_of(request))
        if REQUEST_ID.match(wanted)
        else None
    )
    if found is None or found.request.tenant != asked.tenant_id:
        raise Problem(404, f"no disposition request {wanted[:40]} of tenant {asked.tenant_id}")
    return web.json_response(found.shown())


# --- the archive-based fallback: calls no controller holds ---------------------------------------


@dataclass(frozen=True, slots=True)
class FallbackTiming:
    """How often the service's archive consumer runs, and how long an entry waits unread (no
    controller running) or pending with a stopped reader before it takes it."""

    every_s: float = 1.0
    stuck_s: float = STUCK_S


FALLBACK = web.AppKey("dispositions_fallback", FallbackTiming)


def archive_applier(app: web.Application, source: RecordsSource, plan: Plan) -> ArchiveApplier:
    """The archive consumer of ``plan``'s centre (``records.dispositions``)."""

    async def latest(tenant: str, record_id: str) -> ContactRecord | None:
        versions = await asyncio.to_thread(_versions, source.archive, tenant, record_id)
        return versions[-1] if versions else None

    async def reasons(tenant: str) -> tuple[str, ...]:
        found = (await source.plan()).tenants.get(tenant)
        return tuple(found.avoidable_contact_reasons) if found else ()

    clock = app[CLOCK]
    timing = app.get(FALLBACK, FallbackTiming())
    return ArchiveApplier(
        app[REDIS],
        plan.centre,
        latest,
        reasons,
        clock=lambda: clock().timestamp(),
        stuck_s=timing.stuck_s,
        keys=app[CONFIG].keys,
    )


async def _fallback(app: web.Application, source: RecordsSource, stop: asyncio.Event) -> None:
    timing = app.get(FALLBACK, FallbackTiming())
    applier: ArchiveApplier | None = None
    while not stop.is_set():
        try:
            plan = await source.plan()
            if applier is None or applier.centre != plan.centre:
                applier = archive_applier(app, source, plan)
            await applier.round()
        except Exception as exc:  # Redis or the archive not there just now: next round
            log.warning("web.dispositions_round_failed", error=type(exc).__name__)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timing.every_s)


FALLBACK_TASK = web.AppKey("dispositions_fallback_task", tuple[asyncio.Event, asyncio.Task[None]])
STOP_WAIT_S = 5.0


async def start_fallback(app: web.Application) -> None:
    """The archive consumer, while the service runs with a records source."""
    source = app.get(RECORDS)
    if source is not None:
        stop = asyncio.Event()
        app[FALLBACK_TASK] = (stop, asyncio.create_task(_fallback(app, source, stop)))


async def stop_fallback(app: web.Application) -> None:
    """At shutdown: asked to stop between rounds (a round is not cut in the middle of a Redis
    call), cancelled if it has not within :data:`STOP_WAIT_S`."""
    running = app.get(FALLBACK_TASK)
    if running is None:
        return
    stop, task = running
    stop.set()
    try:
        await asyncio.wait_for(task, STOP_WAIT_S)
    except TimeoutError:
        log.warning("web.dispositions_stop_timeout")


def setup(app: web.Application) -> None:
    app.router.add_get("/api/v1/tenants/{tenant}/records", list_records)
    app.router.add_get("/api/v1/tenants/{tenant}/records/{record_id}", get_record)
    app.router.add_post("/api/v1/tenants/{tenant}/records/{record_id}/disposition", post_disposition)
    app.router.add_get("/api/v1/tenants/{tenant}/dispositions/{request_id}", get_disposition)
    app.on_startup.append(start_fallback)
    app.on_shutdown.append(stop_fallback)
    app.router.add_get("/api/v1/tenants/{tenant}/report", report_json)
    app.router.add_get("/tenants/{tenant}/report.html", report_html)
    app.router.add_get("/tenants/{tenant}/kpis", kpi_page)
    app.router.add_get("/reports", reports_page)
    openapi.contribute(app, OPENAPI)


# --- the OpenAPI part -------------------------------------------------------------------------

_TENANT = {
    "name": "tenant",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "maxLength": 64},
    "example": "harborough",
}
_RECORD = {
    "name": "record_id",
    "in": "path",
    "required": True,
    "description": "the call's Linkedid: <seconds>.<sequence>, or <systemname>-<seconds>.<sequence> "
    "from an Asterisk with systemname set",
    "schema": {"type": "string", "maxLength": LINKEDID_MAX, "pattern": f"^{LINKEDID_PATTERN}$"},
    "example": "1795424400.1",
}


def _day_param(name: str, what: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": True,
        "description": what,
        "schema": {"type": "string", "format": "date"},
        "example": "2026-11-23",
    }


_RANGE = [
    _day_param("from", "the first local day (the tenant's time zone), YYYY-MM-DD"),
    _day_param("to", "the last local day, included"),
]
_PERIOD = {
    "name": "period",
    "in": "query",
    "required": False,
    "schema": {"enum": list(PERIODS), "default": "day"},
}
_HTML = {"text/html": {"schema": {"type": "string"}}}
_IDEMPOTENCY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "the client's key for this disposition: sent again, the same request is answered",
    "schema": {"type": "string", "pattern": "^[!-~]{1,128}$"},
}
_NULLABLE_TEXT = {"type": ["string", "null"]}
_DISPOSITION = {
    "type": "object",
    "required": ["kind", "team", "reason", "by", "at"],
    "properties": {
        "kind": {"enum": list(KINDS)},
        "team": _NULLABLE_TEXT,
        "reason": _NULLABLE_TEXT,
        "by": _NULLABLE_TEXT,
        "at": {"type": "string", "format": "date-time"},
    },
}
_SUMMARY = {
    "type": "object",
    "required": [
        "id",
        "version",
        "arrived_at",
        "updated_at",
        "complete",
        "dialled",
        "caller",
        "caller_withheld",
        "decision",
        "queue_outcome",
        "answered_at",
        "talk_s",
        "survey",
        "disposition",
    ],
    "properties": {
        "id": {"type": "string"},
        "version": {"type": "integer", "minimum": 1},
        "arrived_at": {"type": "string", "format": "date-time"},
        "updated_at": {"type": "string", "format": "date-time"},
        "complete": {"type": "boolean"},
        "dialled": _NULLABLE_TEXT,
        "caller": {"type": ["string", "null"], "description": "masked: all but the last three digits"},
        "caller_withheld": {"type": "boolean"},
        "decision": _NULLABLE_TEXT,
        "queue_outcome": _NULLABLE_TEXT,
        "answered_at": {"type": ["string", "null"], "format": "date-time"},
        "talk_s": {"type": ["number", "null"]},
        "survey": {"type": ["integer", "null"]},
        "disposition": {"oneOf": [{"$ref": "#/components/schemas/Disposition"}, {"type": "null"}]},
    },
}
_VIEW_ERRORS = openapi.errors(400, 401, 403, 404, 503)

OPENAPI: dict[str, Any] = {
    "paths": {
        "/api/v1/tenants/{tenant}/records": {
            "get": {
                "summary": "A council's contact records in a range, a page at a time (viewer; audited)",
                "operationId": "listRecords",
                "security": openapi.SECURED,
                "parameters": [
                    _TENANT,
                    *_RANGE,
                    {
                        "name": "disposition",
                        "in": "query",
                        "required": False,
                        "schema": {"enum": list(DISPOSITION_FILTERS)},
                    },
                    {
                        "name": "caller",
                        "in": "query",
                        "required": False,
                        "description": "the caller's number: found by its keyed hash; audited masked",
                        "schema": {"type": "string", "maxLength": CALLER_MAX},
                    },
                    {
                        "name": "cursor",
                        "in": "query",
                        "required": False,
                        "description": "next_cursor of the previous page",
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "required": False,
                        "schema": {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": MAX_LIMIT,
                            "default": DEFAULT_LIMIT,
                        },
                    },
                ],
                "responses": {
                    "200": {
                        "description": "a page of records, oldest first",
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/RecordPage"}}
                        },
                    },
                    **_VIEW_ERRORS,
                },
            }
        },
        "/api/v1/tenants/{tenant}/records/{record_id}": {
            "get": {
                "summary": "A record's latest version and its versions (viewer; audited)",
                "operationId": "getRecord",
                "security": openapi.SECURED,
                "parameters": [_TENANT, _RECORD],
                "responses": {
                    "200": {
                        "description": "the latest version (caller number masked) and the versions",
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/RecordVersions"}}
                        },
                    },
                    **openapi.errors(401, 403, 404, 503),
                },
            }
        },
        "/api/v1/tenants/{tenant}/records/{record_id}/disposition": {
            "post": {
                "summary": "The adviser's disposition: applied to the record's next version (supervisor)",
                "description": (
                    "Checked, then queued for the controller that emits the call's record (or, for a "
                    "call no controller holds, the archive-based fallback); see docs/web.md. The same "
                    "Idempotency-Key of the same user again is the same request (no second version)."
                ),
                "operationId": "postDisposition",
                "security": openapi.SECURED,
                "parameters": [_TENANT, _RECORD, _IDEMPOTENCY, openapi.CSRF_HEADER_PARAM],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/DispositionRequest"}}
                    },
                },
                "responses": {
                    "202": {
                        "description": "accepted: its status (pending; as it stands for a key used before)",
                        "headers": {
                            "Location": {
                                "description": "the request's status",
                                "schema": {"type": "string"},
                            }
                        },
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/DispositionStatus"}}
                        },
                    },
                    **openapi.errors(400, 401, 403, 404, 409, 413, 415, 422, 503),
                },
            }
        },
        "/api/v1/tenants/{tenant}/dispositions/{request_id}": {
            "get": {
                "summary": "A disposition request's status: pending, applied (version N) or refused (viewer)",
                "operationId": "getDisposition",
                "security": openapi.SECURED,
                "parameters": [
                    _TENANT,
                    {
                        "name": "request_id",
                        "in": "path",
                        "required": True,
                        "description": "request of the POST's answer",
                        "schema": {"type": "string", "maxLength": 40},
                        "example": "q1b7xQp3S0a2m9VwZk4LrA",
                    },
                ],
                "responses": {
                    "200": {
                        "description": "the request's status",
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/DispositionStatus"}}
                        },
                    },
                    **openapi.errors(401, 403, 404, 503),
                },
            }
        },
        "/api/v1/tenants/{tenant}/report": {
            "get": {
                "summary": "The KPI report (as callrouter report --format json; viewer; audited)",
                "operationId": "getReport",
                "security": openapi.SECURED,
                "parameters": [_TENANT, *_RANGE, _PERIOD],
                "responses": {
                    "200": {
                        "description": "the report (its every figure: docs/reports.md)",
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/KpiReport"}}
                        },
                    },
                    **_VIEW_ERRORS,
                },
            }
        },
        "/reports": {
            "get": {
                "summary": "The page listing the councils whose reports the user may see",
                "operationId": "reportsPage",
                "security": openapi.SECURED,
                "responses": {
                    "200": {"description": "the page", "content": _HTML},
                    **openapi.errors(401, 403, 503),
                },
            }
        },
        "/tenants/{tenant}/kpis": {
            "get": {
                "summary": "The page of today's KPIs with the hour profile (viewer; audited)",
                "operationId": "kpiPage",
                "security": openapi.SECURED,
                "parameters": [_TENANT],
                "responses": {
                    "200": {
                        "description": "the page",
                        "content": {"text/html": {"schema": {"type": "string"}}},
                    },
                    **openapi.errors(401, 403, 404, 503),
                },
            }
        },
        "/tenants/{tenant}/report.html": {
            "get": {
                "summary": "The self-contained HTML report (viewer; audited)",
                "operationId": "getReportHtml",
                "security": openapi.SECURED,
                "parameters": [_TENANT, *_RANGE, _PERIOD],
                "responses": {
                    "200": {
                        "description": "the report page",
                        "content": {"text/html": {"schema": {"type": "string"}}},
                    },
                    **_VIEW_ERRORS,
                },
            }
        },
    },
    "components": {
        "schemas": {
            "Disposition": _DISPOSITION,
            "KpiFigures": {
                "type": "object",
                "required": ["accessibility", "service_levels", "satisfaction"],
                "properties": {
                    "accessibility": {"type": "object", "required": ["offered", "answered"]},
                    "service_levels": {
                        "type": "object",
                        "required": ["fpoc_rate", "fpoc_target", "fpoc_met"],
                    },
                    "satisfaction": {"type": "object", "required": ["good", "average", "poor", "responses"]},
                },
            },
            "KpiReport": {
                "type": "object",
                "required": [
                    "report_version",
                    "tenant",
                    "from",
                    "to",
                    "timezone",
                    "generated_at",
                    "period",
                    "settings",
                    "total",
                    "periods",
                    "volume",
                    "baseline",
                ],
                "properties": {
                    "report_version": {"const": 1},
                    "tenant": {"type": "string"},
                    "from": {"type": "string", "format": "date"},
                    "to": {"type": "string", "format": "date"},
                    "timezone": {"type": "string"},
                    "generated_at": {"type": "string", "format": "date-time"},
                    "period": {"enum": list(PERIODS)},
                    "settings": {"type": "object"},
                    "total": {"$ref": "#/components/schemas/KpiFigures"},
                    "periods": {
                        "type": "array",
                        "items": {
                            "allOf": [
                                {"$ref": "#/components/schemas/KpiFigures"},
                                {"type": "object", "required": ["period", "start"]},
                            ]
                        },
                    },
                    "volume": {"type": "object", "required": ["weekdays", "by_weekday_hour", "by_week"]},
                    "baseline": {"type": ["object", "null"]},
                },
            },
            "RecordSummary": _SUMMARY,
            "RecordPage": {
                "type": "object",
                "required": ["tenant", "from", "to", "records", "next_cursor"],
                "properties": {
                    "tenant": {"type": "string"},
                    "from": {"type": "string", "format": "date"},
                    "to": {"type": "string", "format": "date"},
                    "records": {"type": "array", "items": {"$ref": "#/components/schemas/RecordSummary"}},
                    "next_cursor": {"type": ["string", "null"], "description": "null on the last page"},
                },
            },
            "RecordVersions": {
                "type": "object",
                "required": ["record", "versions"],
                "properties": {
                    "record": {
                        "type": "object",
                        "description": "docs/contact-record.schema.json, caller number masked",
                    },
                    "versions": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["version", "updated_at", "disposition"],
                            "properties": {
                                "version": {"type": "integer"},
                                "updated_at": {"type": "string", "format": "date-time"},
                                "disposition": {"type": ["string", "null"]},
                            },
                        },
                    },
                },
            },
            "DispositionRequest": {
                "type": "object",
                "example": {"kind": "avoidable", "reason": "chasing-progress"},
                "additionalProperties": False,
                "required": ["kind"],
                "properties": {
                    "kind": {"enum": list(KINDS)},
                    "team": {
                        "type": ["string", "null"],
                        "maxLength": 63,
                        "description": "for back_office: the team",
                    },
                    "reason": {
                        "type": ["string", "null"],
                        "maxLength": 63,
                        "description": "for avoidable: one of the tenant's avoidable_contact_reasons",
                    },
                },
            },
            "DispositionStatus": {
                "type": "object",
                "required": [
                    "request",
                    "tenant",
                    "record",
                    "status",
                    "version",
                    "changed",
                    "detail",
                    "kind",
                    "team",
                    "reason",
                    "by",
                    "at",
                ],
                "properties": {
                    "request": {"type": "string", "description": "the request id"},
                    "tenant": {"type": "string"},
                    "record": {"type": "string"},
                    "status": {"enum": ["pending", "applied", "refused"]},
                    "version": {
                        "type": ["integer", "null"],
                        "description": "applied: the record version that carries the disposition",
                    },
                    "changed": {
                        "type": ["boolean", "null"],
                        "description": "applied: false when the record held that disposition already",
                    },
                    "detail": {"type": ["string", "null"], "description": "refused: why"},
                    "kind": {"enum": list(KINDS)},
                    "team": _NULLABLE_TEXT,
                    "reason": _NULLABLE_TEXT,
                    "by": {"type": "string"},
                    "at": {"type": "string", "format": "date-time"},
                },
            },
        }
    },
}
