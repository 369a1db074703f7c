"""The web service's aiohttp application: middlewares, the features, ``/health`` and ``/ready``.

Each feature is a module with ``setup(app)`` that adds its routes and its OpenAPI part
(``web/openapi.py``); :data:`FEATURES` names them, in one place. Every handler authorises with
``web.auth.require``; errors are ``application/problem+json`` (``web/problems.py``)."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Sequence
from types import ModuleType
from typing import Any, TypeGuard

import structlog
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.typedefs import Handler
from argon2 import PasswordHasher
from redis.asyncio import Redis
from redis.exceptions import RedisError

from routing import metrics
from web import callbacks, live, openapi, partners, plans, plans_page, records, session, toggles
from web.auth import IDENTITY, authenticate, require
from web.context import (
    CLOCK,
    CONFIG,
    OPENAPI_PARTS,
    REDIS,
    STORE,
    Clock,
    WebConfig,
    client_address,
    utc_now,
)
from web.identity import IdentityStore, default_hasher
from web.problems import Problem, problem_response
from web.templating import STATIC_DIR, STATIC_URL

log = structlog.get_logger("callrouter.web")

# The features, each a module with ``setup(app: web.Application) -> None``.
FEATURES: tuple[ModuleType, ...] = (session, live, plans, plans_page, records, toggles, partners, callbacks)

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
READY_TIMEOUT_S = 1.0
WEB_METRICS = web.AppKey("web_metrics", metrics.WebRequests)


@web.middleware
async def measured(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count every answer by its route's template (``/api/v1/tenants/{tenant}/toggles``, never
    the path the client sent), method and status class, and time it (``routing/metrics.py``).
    Outermost, so a problem response or a redirect raised by a handler is counted as sent; a
    response the handler streamed itself (Server-Sent Events) is counted, its duration not
    observed. A request cancelled by its client's disconnect is not counted."""
    started = time.perf_counter()
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else metrics.UNMATCHED
    try:
        response = await handler(request)
    except web.HTTPException as exc:  # a redirect (a login's 303): raised, sent by aiohttp
        request.app[WEB_METRICS].answered(route, request.method, exc.status, time.perf_counter() - started)
        raise
    seconds = None if response.prepared else time.perf_counter() - started
    request.app[WEB_METRICS].answered(route, request.method, response.status, seconds)
    return response


@web.middleware
async def problems(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error as a problem body; an unexpected one logged (type and place, no values)."""
    try:
        return await handler(request)
    except Problem as exc:
        return exc.response()
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[CONFIG].max_body_bytes
        return problem_response(413, f"the request body is larger than {limit} bytes")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return problem_response(
            exc.status, exc.reason, headers={k: v for k, v in exc.headers.items() if k == "Allow"}
        )
    except RedisError as exc:
        log.error("web.redis_error", error=type(exc).__name__, path=request.path)
        return problem_response(503, "the state store (Redis) did not answer; try again shortly")
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception as exc:
        log.error(
            "web.unhandled", error=type(exc).__name__, method=request.method, path=request.path, exc_info=True
        )
        return problem_response(500, "an internal error; it has been logged")


@web.middleware
async def body_limit(request: web.Request, handler: Handler) -> web.StreamResponse:
    """413 before reading a body that announces more than the limit (the application's
    ``client_max_size`` stops one sent in chunks)."""
    limit = request.app[CONFIG].max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise Problem(413, f"the request body is larger than {limit} bytes")
    return await handler(request)


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CSP)
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "same-origin")  # no-referrer makes a form post send Origin: null
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    headers.setdefault("Cache-Control", "no-store")
    if request.app[CONFIG].cookie_secure:
        headers.setdefault("Strict-Transport-Security", "max-age=31536000")


def _routed(request: web.BaseRequest) -> TypeGuard[web.Request]:
    """A request that reached the router (one the HTTP parser refused, such as an unknown method,
    has no application to read the settings from)."""
    return isinstance(request, web.Request) and request._match_info is not None


class AccessLogger(AbstractAccessLogger):
    """One line per request: method, path without its query (it may hold personal data), status,
    duration and the user id; never a header, a cookie or a token."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        identity = request.get(IDENTITY)
        log.info(
            "web.request",
            method=request.method,
            path=request.path[:200],
            status=response.status,
            ms=round(time * 1000, 1),
            remote=client_address(request) if _routed(request) else request.remote,
            user=identity.user_id if identity is not None else None,
        )

    @property
    def enabled(self) -> bool:
        return True


async def health(_request: web.Request) -> web.Response:
    return web.json_response({"status": "alive"})


async def ready(request: web.Request) -> web.Response:
    try:
        await asyncio.wait_for(request.app[REDIS].ping(), READY_TIMEOUT_S)
    except (RedisError, OSError, TimeoutError):
        return problem_response(503, "Redis does not answer")
    return web.json_response({"status": "ready"})


async def scrape(request: web.Request) -> web.Response:
    """Prometheus text of this process's metrics, for a viewer of every tenant (a scraper's
    token); ``docs/web.md`` says why it is not open."""
    require(request, "viewer", None)
    body, content_type = metrics.render()
    response = web.Response(body=body)
    response.headers["Content-Type"] = content_type
    return response


async def openapi_document(request: web.Request) -> web.Response:
    spec = openapi.assemble(request.app[OPENAPI_PARTS], request.app[CONFIG].session_cookie)
    return web.json_response(spec)


async def favicon(request: web.Request) -> web.FileResponse:
    """Browsers ask for ``/favicon.ico`` on pages without the base template's icon link (an
    error page): answer with the page's own icon rather than a 404 in every console."""
    return web.FileResponse(STATIC_DIR / "favicon.svg", headers={"Content-Type": "image/svg+xml"})


def _core(app: web.Application) -> None:
    app.router.add_get("/favicon.ico", favicon)
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    app.router.add_get("/api/openapi.json", openapi_document)
    app.router.add_get("/metrics", scrape)
    app.router.add_static(STATIC_URL, STATIC_DIR)  # the page's stylesheet and vendored scripts
    plain = {
        "application/json": {
            "schema": {"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}}
        }
    }
    openapi.contribute(
        app,
        {
            "paths": {
                "/health": {
                    "get": {
                        "summary": "The process is alive",
                        "operationId": "health",
                        "security": [],
                        "responses": {"200": {"description": "alive", "content": plain}},
                    }
                },
                "/ready": {
                    "get": {
                        "summary": "Redis answers",
                        "operationId": "ready",
                        "security": [],
                        "responses": {
                            "200": {"description": "ready", "content": plain},
                            **openapi.errors(503),
                        },
                    }
                },
                "/metrics": {
                    "get": {
                        "summary": "Prometheus metrics of this process (a viewer of every tenant)",
                        "description": "The Prometheus text exposition format. Needs the viewer role "
                        "for every tenant (`*`): the figures cover all councils. A scraper uses an API "
                        "token; the unauthenticated alternative is the ops listener (`--ops-port`).",
                        "operationId": "metrics",
                        "security": openapi.SECURED,
                        "responses": {
                            "200": {
                                "description": "the metrics",
                                "content": {"text/plain": {"schema": {"type": "string"}}},
                            },
                            **openapi.errors(401, 403),
                        },
                    }
                },
                "/api/openapi.json": {
                    "get": {
                        "summary": "This document",
                        "operationId": "openapi",
                        "security": [],
                        "responses": {
                            "200": {"description": "OpenAPI 3.1", "content": {"application/json": {}}}
                        },
                    }
                },
            }
        },
    )


def _streams_open(app: web.Application) -> int:
    """The live event streams open now (``web/live.py`` counts them to bound them), read when
    ``/metrics`` is scraped."""
    service = app.get(live.LIVE)
    return service.limits.total if service is not None else 0


def create_app(
    config: WebConfig,
    redis: Redis,
    *,
    clock: Clock = utc_now,
    hasher: PasswordHasher | None = None,
    features: Sequence[ModuleType] = FEATURES,
) -> web.Application:
    """The application (not yet started: a test may still add routes). ``redis`` is owned by the
    caller, who closes it after the application stops."""
    app = web.Application(
        middlewares=[measured, problems, body_limit, authenticate],
        client_max_size=config.max_body_bytes,
        handler_args={"access_log_class": AccessLogger},
    )
    app[CONFIG] = config
    app[REDIS] = redis
    app[CLOCK] = clock
    app[STORE] = IdentityStore(redis, hasher or default_hasher(), keys=config.keys)
    app[OPENAPI_PARTS] = []
    app[WEB_METRICS] = metrics.WebRequests()
    app.on_response_prepare.append(security_headers)
    _core(app)
    for feature in features:
        feature.setup(app)
    metrics.watch(sse_streams=functools.partial(_streams_open, app))
    return app


def run_kwargs() -> dict[str, Any]:
    """What ``web.AppRunner`` needs besides the application (the access logger)."""
    return {"access_log_class": AccessLogger, "access_log": logging.getLogger("callrouter.web.access")}
