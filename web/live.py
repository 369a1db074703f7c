"""Live over HTTP: ``GET /api/v1/live`` (the view now), ``GET /api/v1/live/events`` (its changes
as Server-Sent Events, JSON or HTML fragments for htmx) and the page ``GET /live``.

One :class:`routing.live.feed.LiveFeed` per web process, started and stopped with the
application; every stream is one subscriber of it, so a hundred viewers cost one reader of
Redis. A viewer sees the tiles of the councils where they hold ``viewer`` (or more), the partner
centres those councils overflow to, and the shared tiles (``routing.live.view.only``).

Streams (``docs/web.md``): ``retry:`` first, then each feed message as an event whose ``id:`` is
the feed's message id; a comment line every ``live_heartbeat_s``; a reconnect (with or without
``Last-Event-ID``) starts from a fresh snapshot (the view is small: no replay). A client that
cannot keep up is dropped by the feed, gets a ``resync`` event and the stream ends, so its
browser reconnects; every stream ends after ``live_stream_max_s`` so a reconnect authenticates
again. Streams are bounded per user (429) and in all (503). The stream is only sent to a client
that asks for ``text/event-stream`` (406 otherwise): a client that did not ask for a stream
that never ends does not get one.

The HTML flavour (``?format=html``) sends, per region of the page that changed, an event named
after the region (``queue-<tenant>.<queue>``, ``partner-<centre>``, ``council-<tenant>``,
``toggles-<tenant>``, ``overflow-<tenant>``, ``service``) carrying the region's new content; the
page's element with that ``sse-swap`` name stays and its content is replaced (htmx's SSE
extension). Significant changes only (a queue's state, a council's state, a toggle on or off,
live data lost or back) are also sent as ``announce``, which fills the page's polite live region.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiohttp import web
from jinja2 import Environment

from routing.core.decide import CompiledPlan
from routing.live.feed import LiveFeed, Message
from routing.live.source import verified_toggle
from routing.live.view import Tile, only
from web import openapi
from web.auth import authenticated, csrf_token
from web.context import CONFIG, REDIS, WebConfig
from web.identity import Identity
from web.live_plan import PlanSource
from web.problems import Problem
from web.templating import STATIC_DIR, STATIC_URL, page_environment, render_page

log = structlog.get_logger("callrouter.web.live")

EVENT_STREAM = "text/event-stream"
RETRY_MS = 2000  # the browser reconnects this long after a stream ends
FIRST_READ_WAIT_S = 2.0  # a request just after start-up waits this long for the feed's first read
ANNOUNCED = 3  # significant changes kept in the page's live region
MAX_WHY = 160  # characters of a reason read out or shown in small print


# --- shaping tiles for the page (pure) ------------------------------------------------------------


def region_of(tile_id: str) -> tuple[str, ...]:
    """The page regions (sse-swap names) a tile is drawn in."""
    kind, _, rest = tile_id.partition(":")
    if kind == "queue":
        tenant, _, queue = rest.partition("/")
        return (f"queue-{tenant}.{queue}", f"overflow-{tenant}")
    if kind == "partner":
        return (f"partner-{rest}",)
    if kind == "tenant":
        return (f"council-{rest}",)
    if kind in ("toggle", "toggle_rejected"):
        return (f"toggles-{rest.partition(':')[0]}",)
    if kind in ("feed", "plan", "controllers"):
        return ("service",)
    return ()


def queue_status(tile: Tile) -> tuple[str, str]:
    """(status for the tile's colour class, the same in words)."""
    if tile["stale"]:
        return "stale", "No recent data"
    state = tile["overflow"]["state"]
    if state == "emergency":
        return "overflow", "Emergency cover"
    if state == "overflow":
        return "overflow", "Overflowing"
    if state == "otherwise":
        return "overflow", "Overflow wanted, partner unavailable"
    if tile["waiting"] > 0 and tile["available"] == 0:
        return "busy", "Busy"
    return "normal", "Normal"


def _tenant_name(tiles: Mapping[str, Tile], tenant: str) -> str:
    found = tiles.get(f"tenant:{tenant}")
    return str(found["name"]) if found else tenant


def _clip(text: str, limit: int = MAX_WHY) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def queue_card(tile: Tile, tiles: Mapping[str, Tile]) -> dict[str, Any]:
    """What ``queue_tile_body`` draws, from a queue tile."""
    status, text = queue_status(tile)
    return {
        "id": f"{tile['tenant']}.{tile['queue']}",
        "name": tile["queue"],
        "tenant": _tenant_name(tiles, tile["tenant"]),
        "waiting": tile["waiting"],
        "longest_wait_s": tile["longest_wait_s"],
        "advisers_logged_in": tile["logged_in"],
        "advisers_available": tile["available"],
        "status": status,
        "status_text": text,
    }


def partner_status(tile: Tile) -> tuple[str, str]:
    if not tile["present"]:
        return "stale", "Not publishing: capacity unknown"
    if tile["stale"]:
        return "stale", "No recent data"
    if tile["available"] == 0:
        return "busy", "Full"
    return "normal", "Taking calls"


def partner_card(tile: Tile, tiles: Mapping[str, Tile]) -> dict[str, Any]:
    status, text = partner_status(tile)
    return {
        "id": tile["centre"],
        "name": tile["name"],
        "tenant": ", ".join(_tenant_name(tiles, t) for t in tile["tenants"]),
        "capacity": tile["available"] if tile["present"] else None,
        "age_s": tile["age_s"],
        "status": status,
        "status_text": text,
    }


COUNCIL_STATE = {"open": "Open", "closed": "Closed", "emergency": "Emergency cover"}
TOGGLE_LABEL = {"emergency": "Emergency cover", "closure": "Closed", "announcement": "Announcement"}


def council_body(tile: Tile) -> dict[str, Any]:
    return {
        "name": tile["name"],
        "state": tile["state"],
        "state_text": COUNCIL_STATE.get(tile["state"], tile["state"]),
        "destination": tile["destination"],
        "reason": _clip(tile["reason"], 600),
    }


def council_toggles(tiles: Mapping[str, Tile], tenant: str) -> tuple[list[dict[str, Any]], list[Tile]]:
    toggles, rejected = [], []
    for tile in tiles.values():
        if tile.get("tenant") != tenant:
            continue
        if tile["tile"] == "toggle":
            label = str(TOGGLE_LABEL.get(tile["kind"], tile["kind"]))
            if tile["service"]:
                label += f" ({tile['service']})"
            toggles.append({**tile, "label": label})
        elif tile["tile"] == "toggle_rejected":
            rejected.append(tile)
    return toggles, rejected


def overflow_rows(tiles: Mapping[str, Tile], tenant: str) -> list[dict[str, Any]]:
    return [
        {
            "name": tile["queue"],
            "state_text": queue_status(tile)[1],
            "destination": tile["overflow"]["destination"],
            "reason": _clip(tile["overflow"]["reason"]),
        }
        for tile in tiles.values()
        if tile["tile"] == "queue" and tile["tenant"] == tenant
    ]


def service_card(tiles: Mapping[str, Tile], origin: str) -> dict[str, Any]:
    feed, plan, ctl = tiles.get("feed", {}), tiles.get("plan", {}), tiles.get("controllers", {})
    if feed.get("ok", True):
        feed_text = "current"
    else:
        feed_text = f"Redis did not answer ({feed.get('error')}); figures are {feed.get('age_s')} s old"
    plan_text: str
    if plan.get("version") is None and plan.get("generation") is None:
        plan_text = "no controller has published its plan"
    else:
        plan_text = f"version {plan.get('version')}"
        if plan.get("generation") is not None:
            plan_text += f", generation {plan['generation']}"
        if plan.get("sha256"):
            plan_text += f" (sha256 {str(plan['sha256'])[:12]})"
    age = ctl.get("ami_age_s")
    ami_text = "never heard from Asterisk" if age is None else f"Asterisk last heard {age} s ago"
    return {
        "feed_ok": bool(feed.get("ok", True)),
        "feed_text": feed_text,
        "plan_text": plan_text,
        "plan_origin": origin,
        "instances": list(ctl.get("instances", [])),
        "writer": ctl.get("writer"),
        "ami_text": ami_text,
        "ami_stale": bool(ctl.get("ami_stale", False)),
    }


def announcements(before: Mapping[str, Tile], after: Mapping[str, Tile]) -> list[str]:
    """The significant changes from ``before`` to ``after``, in words (none for figures that
    merely move: a screen reader must not read out every caller joining a queue)."""
    said: list[str] = []
    for tid, tile in after.items():
        old = before.get(tid)
        kind = tile["tile"]
        if kind == "queue":
            now_status = queue_status(tile)[1]
            if old is not None and queue_status(old)[1] != now_status:
                said.append(f"{tile['queue']} ({_tenant_name(after, tile['tenant'])}): {now_status}")
        elif kind == "tenant":
            if old is not None and old["state"] != tile["state"]:
                said.append(f"{tile['name']}: {COUNCIL_STATE.get(tile['state'], tile['state'])}")
        elif kind == "toggle" and old is None:
            label = TOGGLE_LABEL.get(tile["kind"], tile["kind"])
            said.append(
                f"{_tenant_name(after, tile['tenant'])}: {label} switched on: {_clip(tile['reason'], 80)}"
            )
        elif kind == "feed" and old is not None and old["ok"] != tile["ok"]:
            said.append(
                "Live data is current again" if tile["ok"] else "Live data lost: figures are not current"
            )
        elif kind == "partner" and old is not None and partner_status(old)[1] != partner_status(tile)[1]:
            said.append(f"Partner {tile['name']}: {partner_status(tile)[1]}")
    for tid, tile in before.items():
        if tid not in after and tile["tile"] == "toggle":
            label = TOGGLE_LABEL.get(tile["kind"], tile["kind"])
            said.append(f"{_tenant_name(after, tile['tenant'])}: {label} switched off")
    return said


def page_context(tiles: Mapping[str, Tile], origin: str) -> dict[str, Any]:
    """The page's regions from the tiles a viewer may see."""
    tenants = [t["tenant"] for t in tiles.values() if t["tile"] == "tenant"]
    councils = []
    for tenant in tenants:
        toggles, rejected = council_toggles(tiles, tenant)
        councils.append(
            {
                "id": tenant,
                "name": _tenant_name(tiles, tenant),
                "body": council_body(tiles[f"tenant:{tenant}"]),
                "toggles": toggles,
                "rejected": rejected,
                "overflow": overflow_rows(tiles, tenant),
            }
        )
    return {
        "queues": [queue_card(t, tiles) for t in tiles.values() if t["tile"] == "queue"],
        "partners": [partner_card(t, tiles) for t in tiles.values() if t["tile"] == "partner"],
        "councils": councils,
        "service": service_card(tiles, origin),
    }


# --- rendering regions ------------------------------------------------------------------------------


class Fragments:
    """Renders one region of the page alone (the templates' macros, loaded once)."""

    def __init__(self, env: Environment) -> None:
        context = {"static_url": STATIC_URL}
        self.tiles = env.get_template("partials/tiles.html.j2").make_module(context)
        self.live = env.get_template("partials/live.html.j2").make_module(context)

    @staticmethod
    def _call(module: Any, macro: str, *args: Any) -> str:  # a macro of a loaded template
        return str(getattr(module, macro)(*args))

    def region(self, name: str, tiles: Mapping[str, Tile], origin: str) -> str | None:
        """The content of region ``name`` (None when its tile is gone)."""
        kind, _, rest = name.partition("-")
        if kind == "queue":
            tenant, _, queue = rest.partition(".")
            tile = tiles.get(f"queue:{tenant}/{queue}")
            card = queue_card(tile, tiles) if tile is not None else None
            return None if card is None else self._call(self.tiles, "queue_tile_body", card)
        if kind == "partner":
            tile = tiles.get(f"partner:{rest}")
            card = partner_card(tile, tiles) if tile is not None else None
            return None if card is None else self._call(self.tiles, "partner_tile_body", card)
        if kind == "council":
            tile = tiles.get(f"tenant:{rest}")
            return None if tile is None else self._call(self.live, "council_body", council_body(tile))
        if kind == "toggles":
            return self._call(self.live, "toggles_body", *council_toggles(tiles, rest))
        if kind == "overflow":
            return self._call(self.live, "overflow_body", overflow_rows(tiles, rest))
        if kind == "service":
            return self._call(self.live, "service_body", service_card(tiles, origin))
        return None

    def announce(self, items: list[str]) -> str:
        return self._call(self.live, "announce_body", items)


@dataclass
class PageStream:
    """One HTML stream's view of the tiles: each feed message in, the changed regions out.

    Keeps its own dict of the tiles it was sent (the feed's messages are shared: never changed)."""

    fragments: Fragments
    plan: Any  # has ``origin``: where this process took its plan (a PlanSource)
    tiles: dict[str, Tile] = field(default_factory=dict)
    said: list[str] = field(default_factory=list)

    def events(self, message: Message) -> list[tuple[str, str]]:
        kind = message["type"]
        if kind == "snapshot":
            before: dict[str, Tile] = {}
            self.tiles = dict(message["tiles"])
            # every region, including each council's toggles when none is in force (a toggle
            # switched off while the browser was reconnecting must disappear)
            councils = [f"toggle:{t['tenant']}:" for t in self.tiles.values() if t["tile"] == "tenant"]
            touched = [*self.tiles, *councils]
        elif kind == "changes":
            before = self.tiles
            self.tiles = {**before, **message["changed"]}
            for gone in message["removed"]:
                self.tiles.pop(gone, None)
            touched = [*message["changed"], *message["removed"]]
        else:
            return []
        out: list[tuple[str, str]] = []
        seen: set[str] = set()
        for tile_id in touched:
            for region in region_of(tile_id):
                if region in seen:
                    continue
                seen.add(region)
                html = self.fragments.region(region, self.tiles, self.plan.origin)
                if html is not None:
                    out.append((region, html))
        if kind == "changes":
            news = announcements(before, self.tiles)
            if news:
                self.said = [*reversed(news), *self.said][:ANNOUNCED]
                out.append(("announce", self.fragments.announce(self.said)))
        return out


def sse_event(data: str, *, event: str | None = None, event_id: int | None = None) -> bytes:
    """One Server-Sent Event; every line of ``data`` its own ``data:`` line."""
    head = []
    if event_id is not None:
        head.append(f"id: {event_id}\n")
    if event is not None:
        head.append(f"event: {event}\n")
    body = "".join(f"data: {line}\n" for line in data.splitlines() or [""])
    return ("".join(head) + body + "\n").encode("utf-8")


# --- limits on streams ------------------------------------------------------------------------------


@dataclass
class StreamLimits:
    """Streams open now, per user and in all; :meth:`admit` refuses one more past a limit."""

    total_max: int
    per_user_max: int
    per_user: dict[str, int] = field(default_factory=dict)
    total: int = 0

    def refusal(self, user: str) -> Problem | None:
        """Why one more stream of ``user`` is refused (pure), or None."""
        if self.per_user.get(user, 0) >= self.per_user_max:
            return Problem(
                429,
                f"{user} has {self.per_user_max} live streams open already: close a page first",
                headers={"Retry-After": "5"},
            )
        if self.total >= self.total_max:
            return Problem(
                503, "the service has as many live streams open as it allows", headers={"Retry-After": "10"}
            )
        return None

    @contextlib.contextmanager
    def admit(self, user: str) -> Iterator[None]:
        refused = self.refusal(user)
        if refused is not None:
            raise refused
        self.per_user[user] = self.per_user.get(user, 0) + 1
        self.total += 1
        try:
            yield
        finally:
            self.total -= 1
            left = self.per_user[user] - 1
            if left:
                self.per_user[user] = left
            else:
                del self.per_user[user]


# --- the service ------------------------------------------------------------------------------------


@dataclass
class LiveService:
    """The process's live feed, the plan it is built from, and its open streams."""

    feed: LiveFeed
    plan: PlanSource
    limits: StreamLimits
    fragments: Fragments
    env: Environment
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def start_feed_when_planned(self) -> None:
        await self.plan.changed.wait()
        await self.feed.start()


LIVE = web.AppKey("live", LiveService)


async def _live_context(app: web.Application) -> AsyncIterator[None]:
    config: WebConfig = app[CONFIG]
    redis = app[REDIS]
    source = PlanSource(redis, path=config.plan_path, from_store=config.plan_from_store, keys=config.keys)
    feed = LiveFeed(
        redis,
        plan=functools.partial(_current, source),
        interval_s=config.live_interval_s,
        toggle_decoder=functools.partial(verified_toggle, config.toggle_keyring),
        keys=config.keys,
        plan_live_key=config.keys.plan_live(),
        also_wake_on=[config.keys.plan_changed_channel()],
    )
    env = page_environment()
    service = LiveService(
        feed, source, StreamLimits(config.live_streams_max, config.live_streams_per_user), Fragments(env), env
    )
    app[LIVE] = service
    await source.check()  # the plan at once when it is there: the first page has tiles
    service.tasks = [
        asyncio.create_task(source.run(), name="live-plan"),
        asyncio.create_task(service.start_feed_when_planned(), name="live-feed-start"),
    ]
    try:
        yield
    finally:
        for task in service.tasks:
            task.cancel()
        for task in service.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await feed.stop()


def _current(source: PlanSource) -> CompiledPlan:
    plan = source.current
    assert plan is not None  # the feed starts only once there is a plan
    return plan


async def _view(request: web.Request) -> tuple[LiveService, Identity, list[str], dict[str, Tile]]:
    """The service, the identity, the tenants it may view, and their tiles now (or 401/403/503)."""
    identity = authenticated(request)
    service = request.app[LIVE]
    plan = service.plan.current  # checked before the service started, then every second
    if plan is None:
        raise Problem(
            503,
            "the web service has no plan: publish one to the plan store, or start it with --plan",
            headers={"Retry-After": "5"},
        )
    tenants = identity.tenants("viewer", plan.plan.tenants)
    if not tenants:
        raise Problem(403, f"{identity.user_id} is not a viewer of any council in the plan")
    for _ in range(int(FIRST_READ_WAIT_S / 0.05)):  # the feed's first read, just after start-up
        if service.feed.tiles is not None:
            break
        await asyncio.sleep(0.05)
    if service.feed.tiles is None:
        raise Problem(503, "the live view is starting: try again shortly", headers={"Retry-After": "1"})
    return service, identity, tenants, only(service.feed.tiles, tenants)


async def snapshot(request: web.Request) -> web.Response:
    service, _identity, _tenants, tiles = await _view(request)
    return web.json_response(
        {"id": service.feed.event_id, "at": service.feed.at, "plan": service.plan.origin, "tiles": tiles}
    )


def _wants_stream(request: web.Request) -> bool:
    return any(
        part.split(";")[0].strip().lower() == EVENT_STREAM
        for part in request.headers.get("Accept", "").split(",")
    )


async def events(request: web.Request) -> web.StreamResponse:
    flavour = request.query.get("format", "json")
    if flavour not in ("json", "html"):
        raise Problem(422, "format must be json or html")
    service, identity, tenants, _tiles = await _view(request)
    if not _wants_stream(request):
        raise Problem(
            406, f"this is a stream that does not end: send Accept: {EVENT_STREAM}", title="Not acceptable"
        )
    config = request.app[CONFIG]
    with service.limits.admit(identity.user_id):
        response = web.StreamResponse(
            headers={"Content-Type": EVENT_STREAM, "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        )
        await response.prepare(request)
        await response.write(f"retry: {RETRY_MS}\n\n".encode())
        page = PageStream(service.fragments, service.plan) if flavour == "html" else None
        try:
            async with service.feed.subscribe(tenants) as sub:
                await _pump(response, sub, page, config)
        except ConnectionResetError:  # the client went away: the usual end of a stream
            log.debug("web.live_stream_closed", user=identity.user_id)
    return response


async def _pump(response: web.StreamResponse, sub: Any, page: PageStream | None, config: WebConfig) -> None:
    loop = asyncio.get_running_loop()
    ends = loop.time() + config.live_stream_max_s
    while (left := ends - loop.time()) > 0:
        try:
            async with asyncio.timeout(min(config.live_heartbeat_s, left)):
                message = await anext(sub)
        except TimeoutError:
            await response.write(b": keep-alive\n\n")
            continue
        except StopAsyncIteration:
            return
        if page is None:
            await response.write(
                sse_event(
                    json.dumps(message, separators=(",", ":")), event=message["type"], event_id=message["id"]
                )
            )
        else:
            frames = page.events(message)
            if message["type"] == "resync":
                frames = [("resync", message.get("reason", "resync"))]
            if frames:
                chunk = b"".join(sse_event(html, event=name, event_id=message["id"]) for name, html in frames)
                await response.write(chunk)
        if message["type"] == "resync":
            return


async def live_page(request: web.Request) -> web.Response:
    try:
        service, identity, _tenants, tiles = await _view(request)
    except Problem as problem:
        if problem.status == 401:
            raise web.HTTPSeeOther("/login") from None
        raise
    html = render_page(
        service.env,
        "live.html.j2",
        title="Live",
        user={"name": identity.display_name},
        csrf_token=csrf_token(request) or "",
        active_nav="live",
        events_url="/api/v1/live/events?format=html",
        announce=[],
        **page_context(tiles, service.plan.origin),
    )
    return web.Response(text=html, content_type="text/html")


async def _end_streams(app: web.Application) -> None:
    """On shutdown, before the server waits for open requests: every stream gets ``resync`` and
    ends (its browser reconnects to whichever instance answers), so a stop is not held up."""
    service = app.get(LIVE)
    if service is not None:
        await service.feed.stop()


def setup(app: web.Application) -> None:
    if not any(r.canonical == STATIC_URL for r in app.router.resources()):
        app.router.add_static(STATIC_URL, STATIC_DIR)  # the page's stylesheet and htmx
    app.cleanup_ctx.append(_live_context)
    app.on_shutdown.append(_end_streams)
    app.router.add_get("/api/v1/live", snapshot)
    app.router.add_get("/api/v1/live/events", events)
    app.router.add_get("/live", live_page)
    openapi.contribute(app, OPENAPI)


# --- OpenAPI ----------------------------------------------------------------------------------------

_PROBLEM = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
_TILE = {
    "type": "object",
    "required": ["tile"],
    "description": "one tile of the live view (docs/live-view.md lists every kind and field)",
    "properties": {
        "tile": {
            "enum": ["feed", "plan", "controllers", "tenant", "queue", "partner", "toggle", "toggle_rejected"]
        }
    },
}
OPENAPI: dict[str, Any] = {
    "paths": {
        "/api/v1/live": {
            "get": {
                "summary": "The live view now: the tiles of the councils the caller may view",
                "operationId": "liveSnapshot",
                "security": openapi.SECURED,
                "responses": {
                    "200": {
                        "description": "the tiles, keyed by a stable id",
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/LiveSnapshot"}}
                        },
                    },
                    **openapi.errors(401, 403, 503),
                },
            }
        },
        "/api/v1/live/events": {
            "get": {
                "summary": "The live view's changes as Server-Sent Events",
                "description": (
                    "Starts with `retry:` and a `snapshot` event, then `changes` events; a `resync` "
                    "event (the client was too slow) or the stream's age limit ends it and the client "
                    "reconnects (a fresh snapshot; Last-Event-ID is accepted and needs no replay). "
                    "Each event's `id:` is the feed's message id; a comment line comes every 15 s. "
                    "format=json: each event's data is the feed message as JSON (docs/live-view.md). "
                    "format=html: events named after the page's regions, each carrying its new HTML "
                    "(for htmx's SSE extension), and `announce` for significant changes. Requires "
                    "`Accept: text/event-stream`. Streams are bounded per user (429) and in all (503)."
                ),
                "operationId": "liveEvents",
                "security": openapi.SECURED,
                "parameters": [
                    {
                        "name": "format",
                        "in": "query",
                        "required": False,
                        "schema": {"enum": ["json", "html"], "default": "json"},
                    },
                    {
                        "name": "Last-Event-ID",
                        "in": "header",
                        "required": False,
                        "description": "the last event id seen; the stream starts from a fresh snapshot",
                        "schema": {"type": "string"},
                    },
                ],
                "responses": {
                    "200": {
                        "description": "the stream (text/event-stream)",
                        "content": {EVENT_STREAM: {"schema": {"type": "string"}}},
                    },
                    "406": {
                        "description": "the client did not ask for text/event-stream",
                        "content": _PROBLEM,
                    },
                    **openapi.errors(401, 403, 422, 429, 503),
                },
            }
        },
        "/live": {
            "get": {
                "summary": "The live page (HTML): tiles per queue and partner, councils, toggles, service",
                "operationId": "livePage",
                "security": openapi.SECURED,
                "responses": {
                    "200": {
                        "description": "the page",
                        "content": {"text/html": {"schema": {"type": "string"}}},
                    },
                    "303": {
                        "description": "not logged in: to the login form",
                        "headers": {"Location": {"schema": {"type": "string"}}},
                    },
                    **openapi.errors(403, 503),
                },
            }
        },
    },
    "components": {
        "schemas": {
            "LiveSnapshot": {
                "type": "object",
                "required": ["id", "at", "plan", "tiles"],
                "properties": {
                    "id": {"type": "integer", "description": "the feed's message id of this view"},
                    "at": {"type": "string", "description": "when the view was built (ISO-8601)"},
                    "plan": {"type": "string", "description": "where this process took its plan from"},
                    "tiles": {"type": "object", "additionalProperties": _TILE},
                },
            }
        }
    },
}
