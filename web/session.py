"""The routes of identity: ``GET``/``POST /login``, ``POST /logout``, ``GET /api/v1/whoami``.

The login form is protected against login CSRF by a double-submit token: ``GET /login`` sets a
short-lived cookie and puts the same value in the form; ``POST /login`` needs both to match.
Failed logins are counted per user id and per client address in fixed windows; past either
limit the answer is 429 with ``Retry-After`` and no password is checked. An unknown user and a
wrong password get the same answer, after the same argon2 work."""

from __future__ import annotations

import math
import secrets
from typing import Any

from aiohttp import web

from routing import metrics
from routing.supervisor import audit
from web import openapi
from web.auth import SESSION, authenticated, csrf_token, same
from web.context import CONFIG, REDIS, STORE, WebConfig, client_address, keys_of, now
from web.identity import MAX_PASSWORD, USER_ID, User
from web.problems import read_form
from web.templating import page_environment, render_page

TEMPLATES = page_environment()
WRONG = "Wrong user name or password."
AFTER_LOGIN = "/"
ANONYMOUS = "-"  # the audit's ``by`` when nobody is authenticated


def _page(
    status: int,
    error: str,
    username: str,
    token: str,
    *,
    config: WebConfig,
    headers: dict[str, str] | None = None,
) -> web.Response:
    html = render_page(TEMPLATES, "login.html.j2", error=error, username=username, csrf_token=token)
    response = web.Response(status=status, text=html, content_type="text/html", headers=headers)
    response.set_cookie(
        config.login_cookie,
        token,
        max_age=3600,
        path="/",
        secure=config.cookie_secure,
        httponly=True,
        samesite="Strict",
    )
    return response


async def login_page(request: web.Request) -> web.Response:
    return _page(200, "", "", secrets.token_urlsafe(32), config=request.app[CONFIG])


async def login(request: web.Request) -> web.Response:
    config, store, redis = request.app[CONFIG], request.app[STORE], request.app[REDIS]
    form = await read_form(request)
    username = str(form.get("username", "")).strip().lower()[:64]
    password = str(form.get("password", ""))
    given = str(form.get("csrf_token", ""))
    expected = request.cookies.get(config.login_cookie, "")
    fresh = secrets.token_urlsafe(32)
    if not given or not expected or not same(given, expected):
        return _page(403, "The form had expired: please log in again.", username, fresh, config=config)
    at, address = now(request), client_address(request)
    user_key = username if USER_ID.match(username) else None
    limits = [("addr", address, config.login_failures_per_address)]
    if user_key is not None:
        limits.append(("user", user_key, config.login_failures_per_user))
    for kind, subject, limit in limits:
        count, ttl_ms = await store.failures(kind, subject)
        if count >= limit:
            retry = max(1, math.ceil(ttl_ms / 1000))
            await audit(
                redis,
                "auth.login.locked",
                ANONYMOUS,
                at,
                {"user": user_key, "address": address, "limit": kind},
                keys=keys_of(request),
            )
            metrics.login("locked")
            return _page(
                429,
                f"Too many failed logins: try again in {retry} seconds.",
                username,
                fresh,
                config=config,
                headers={"Retry-After": str(retry)},
            )
    user: User | None = None
    if user_key is not None and len(password) <= MAX_PASSWORD:
        user = await store.authenticate(user_key, password)
    else:
        await store.authenticate("", password[:MAX_PASSWORD])  # the same work as a wrong password
    if user is None:
        for kind, subject, _limit in limits:
            await store.count_failure(kind, subject, config.login_window_s)
        await audit(
            redis,
            "auth.login.failed",
            ANONYMOUS,
            at,
            {"user": user_key, "address": address},
            keys=keys_of(request),
        )
        metrics.login("failed")
        return _page(401, WRONG, username, fresh, config=config)
    await store.clear_failures("user", user.user_id)
    previous = request.get(SESSION)
    if previous is not None:  # a login replaces the browser's session, never adds to it
        await store.end_session(previous.session_id)
    session = await store.create_session(user, at, config.session_idle_s, config.session_absolute_s)
    await audit(redis, "auth.login.ok", user.user_id, at, {"address": address}, keys=keys_of(request))
    metrics.login("ok")
    response = web.HTTPSeeOther(AFTER_LOGIN)
    response.set_cookie(
        config.session_cookie,
        session.session_id,
        path="/",
        secure=config.cookie_secure,
        httponly=True,
        samesite="Strict",
    )
    response.del_cookie(
        config.login_cookie, path="/", secure=config.cookie_secure, httponly=True, samesite="Strict"
    )
    raise response


async def logout(request: web.Request) -> web.Response:
    """End the cookie session (the CSRF check has already run in the middleware)."""
    config = request.app[CONFIG]
    session = request.get(SESSION)
    if session is not None:
        await request.app[STORE].end_session(session.session_id)
        await audit(
            request.app[REDIS], "auth.logout", session.user_id, now(request), {}, keys=keys_of(request)
        )
    response = web.HTTPSeeOther("/login")
    response.del_cookie(
        config.session_cookie, path="/", secure=config.cookie_secure, httponly=True, samesite="Strict"
    )
    raise response


async def whoami(request: web.Request) -> web.Response:
    identity = authenticated(request)
    body: dict[str, Any] = identity.as_dict()
    body["csrf_token"] = csrf_token(request)
    return web.json_response(body)


def setup(app: web.Application) -> None:
    app.router.add_get("/login", login_page)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
    app.router.add_get("/api/v1/whoami", whoami)
    openapi.contribute(app, OPENAPI)


_HTML = {"text/html": {"schema": {"type": "string"}}}
_LOGIN_FORM = {
    "type": "object",
    "required": ["username", "password", "csrf_token"],
    "properties": {
        "username": {"type": "string", "maxLength": 64},
        "password": {"type": "string", "maxLength": MAX_PASSWORD},
        "csrf_token": {
            "type": "string",
            "description": "the value GET /login put in the form and its cookie",
        },
    },
}
OPENAPI: dict[str, Any] = {
    "paths": {
        "/login": {
            "get": {
                "summary": "The login form",
                "operationId": "loginForm",
                "security": [],
                "responses": {"200": {"description": "the form", "content": _HTML}},
            },
            "post": {
                "summary": "Log in: a session cookie on success",
                "operationId": "login",
                "security": [],
                "requestBody": {
                    "required": True,
                    "content": {"application/x-www-form-urlencoded": {"schema": _LOGIN_FORM}},
                },
                "responses": {
                    "303": {
                        "description": "logged in: the session cookie is set",
                        "headers": {
                            "Set-Cookie": {"schema": {"type": "string"}},
                            "Location": {"schema": {"type": "string"}},
                        },
                    },
                    "401": {
                        "description": "wrong user name or password (one answer for both)",
                        "content": _HTML,
                    },
                    "403": {"description": "the form's CSRF token is missing or wrong", "content": _HTML},
                    "400": {"$ref": "#/components/responses/BadRequest"},
                    "413": {"$ref": "#/components/responses/TooLarge"},
                    "415": {"$ref": "#/components/responses/UnsupportedMediaType"},
                    "429": {
                        "description": "too many failed logins",
                        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
                        "content": _HTML,
                    },
                },
            },
        },
        "/logout": {
            "post": {
                "summary": "End the session",
                "operationId": "logout",
                "security": [openapi.COOKIE, {}],
                "parameters": [openapi.CSRF_HEADER_PARAM],
                "responses": {
                    "303": {
                        "description": "logged out: to the login form",
                        "headers": {"Location": {"schema": {"type": "string"}}},
                    },
                    **openapi.errors(401, 403),
                },
            }
        },
        "/api/v1/whoami": {
            "get": {
                "summary": "Who the caller is, with roles per tenant",
                "operationId": "whoami",
                "security": openapi.SECURED,
                "responses": {
                    "200": {
                        "description": "the authenticated identity",
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Identity"}}
                        },
                    },
                    **openapi.errors(401, 403),
                },
            }
        },
    },
    "components": {
        "schemas": {
            "Identity": {
                "type": "object",
                "required": ["user", "name", "roles", "via", "csrf_token"],
                "properties": {
                    "user": {"type": "string"},
                    "name": {"type": "string"},
                    "roles": {
                        "type": "object",
                        "description": "tenant (or *) -> roles held there",
                        "additionalProperties": {
                            "type": "array",
                            "items": {"enum": ["viewer", "supervisor", "engineer", "admin"]},
                        },
                    },
                    "via": {"enum": ["session", "token"]},
                    "csrf_token": {
                        "type": ["string", "null"],
                        "description": "for unsafe requests (session only)",
                    },
                },
            }
        }
    },
}
