"""Authentication of every request and the authorisation check every feature uses.

A request is authenticated by ``Authorization: Bearer <token>`` (scripts) or by the session
cookie (the web page). A bearer header that does not verify is refused (401) even if a cookie
is present. A request from a cookie session with an unsafe method (POST, PUT, PATCH, DELETE)
must carry the session's CSRF token, in the header ``X-CSRF-Token`` or the form field
``csrf_token``, and must not come from another origin; token requests need neither, since a
browser never adds a bearer header by itself.

Features call :func:`require` (or :func:`authenticated`) at the top of each handler and pass the
returned :class:`~web.identity.Identity`'s ``by`` to the audit trail.
"""

from __future__ import annotations

import hmac
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Handler

from web.context import CONFIG, STORE, now
from web.identity import Identity, Session
from web.problems import FORM_TYPES, Problem, read_form

UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CSRF_HEADER, CSRF_FIELD = "X-CSRF-Token", "csrf_token"
IDENTITY = web.RequestKey("identity", Identity)
SESSION = web.RequestKey("session", Session)
OWN_CSRF = frozenset({"/login"})  # checks its own double-submit token (web/session.py)
# Requests from partner centres, authenticated by their own signature (web/partners.py): a
# cookie there is ignored, so it needs no CSRF token and a browser's session gives it nothing.
SIGNED_PREFIX = "/api/v1/partners/"
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="callrouter"'}


def authenticated(request: web.Request) -> Identity:
    """The request's identity, or a 401 problem."""
    identity: Identity | None = request.get(IDENTITY)
    if identity is None:
        raise Problem(401, "log in, or send Authorization: Bearer <token>", headers=_CHALLENGE)
    return identity


def require(request: web.Request, role: str, tenant: str | None) -> Identity:
    """The identity if it holds ``role`` for ``tenant`` (None: for every tenant); else 401/403."""
    identity = authenticated(request)
    if not identity.may(role, tenant):
        where = f"tenant {tenant}" if tenant is not None else "every tenant (*)"
        raise Problem(403, f"{identity.user_id} is not {_article(role)} {role} of {where}")
    return identity


def _article(role: str) -> str:
    return "an" if role[0] in "aeiou" else "a"


def csrf_token(request: web.Request) -> str | None:
    """The session's CSRF token, for forms and pages (None for a token request)."""
    session: Session | None = request.get(SESSION)
    return session.csrf if session else None


def same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


async def _check_csrf(request: web.Request, session: Session) -> None:
    origin = request.headers.get("Origin")
    if origin is not None and urlsplit(origin).netloc != request.host:
        raise Problem(403, "a cross-origin request from a cookie session is refused")
    given = request.headers.get(CSRF_HEADER)
    if given is None and request.content_type in FORM_TYPES:
        form = await read_form(request)
        field = form.get(CSRF_FIELD)
        given = field if isinstance(field, str) else None
    if not given or not same(given, session.csrf):
        raise Problem(
            403,
            f"missing or wrong CSRF token: send the header {CSRF_HEADER} (or the form field "
            f"{CSRF_FIELD}) with the value from the page or GET /api/v1/whoami",
        )


def bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise Problem(401, "Authorization must be 'Bearer <token>'", headers=_CHALLENGE)
    return value.strip()


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Attach the request's identity (and session); check CSRF for unsafe cookie requests."""
    store, config = request.app[STORE], request.app[CONFIG]
    token = bearer(request)
    if token is not None:
        identity = await store.token_identity(token, now(request))
        if identity is None:
            raise Problem(401, "the token is unknown, expired or revoked", headers=_CHALLENGE)
        request[IDENTITY] = identity
        return await handler(request)
    cookie = request.cookies.get(config.session_cookie)
    if cookie and not request.path.startswith(SIGNED_PREFIX):
        found = await store.session(cookie, now(request), config.session_idle_s)
        if found is not None:
            session, user = found
            request[SESSION] = session
            request[IDENTITY] = Identity(user.user_id, user.display_name, user.roles, "session")
            if request.method in UNSAFE and request.path not in OWN_CSRF:
                await _check_csrf(request, session)
    return await handler(request)
