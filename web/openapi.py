"""The OpenAPI 3.1 document served at ``/api/openapi.json``, assembled from each feature's part.

A feature's ``setup(app)`` calls :func:`contribute` with ``{"paths": {...}, "components": {...}}``;
the shared pieces (the problem body, the error responses, the two security schemes) are here, so
a feature writes ``"responses": {"200": ..., **errors(401, 403, 422)}``."""

from __future__ import annotations

import copy
from typing import Any

from aiohttp import web

from web.context import OPENAPI_PARTS
from web.problems import PROBLEM_TYPE, TITLES

VERSION = "1.0.0"
BEARER: dict[str, list[str]] = {"bearer": []}
COOKIE: dict[str, list[str]] = {"session": []}
SECURED: list[dict[str, list[str]]] = [BEARER, COOKIE]  # either one
CSRF_HEADER_PARAM = {
    "name": "X-CSRF-Token",
    "in": "header",
    "required": False,
    "description": "the session's CSRF token: required on unsafe methods from a cookie session "
    "(or the form field csrf_token); not with a bearer token",
    "schema": {"type": "string"},
}

_RESPONSE_NAMES = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    409: "Conflict",
    413: "TooLarge",
    415: "UnsupportedMediaType",
    422: "Unprocessable",
    429: "TooManyRequests",
    503: "Unavailable",
}


def errors(*statuses: int) -> dict[str, Any]:
    """Response references for error statuses (413 and 415 are added to any body-taking operation
    by the caller as needed)."""
    return {str(s): {"$ref": f"#/components/responses/{_RESPONSE_NAMES[s]}"} for s in statuses}


def _error_response(status: int) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": TITLES[status],
        "content": {PROBLEM_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
    if status == 429:
        response["headers"] = {
            "Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}
        }
    if status == 401:
        response["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}}}
    return response


def base(cookie_name: str) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "callrouter web service",
            "version": VERSION,
            "description": "Supervisors' and engineers' API. Errors are application/problem+json.",
        },
        "paths": {},
        "components": {
            "schemas": {
                "Problem": {
                    "type": "object",
                    "required": ["type", "title", "status", "detail"],
                    "properties": {
                        "type": {"type": "string"},
                        "title": {"type": "string"},
                        "status": {"type": "integer"},
                        "detail": {"type": "string"},
                    },
                }
            },
            "responses": {name: _error_response(s) for s, name in _RESPONSE_NAMES.items()},
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "an API token (callrouter users token)",
                },
                "session": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": cookie_name,
                    "description": "the session cookie set by POST /login",
                },
            },
        },
    }


def contribute(app: web.Application, part: dict[str, Any]) -> None:
    """Add a feature's ``paths`` and ``components`` to the document."""
    app[OPENAPI_PARTS].append(part)


def assemble(parts: list[dict[str, Any]], cookie_name: str) -> dict[str, Any]:
    """The whole document; a path or component named twice is a programming error."""
    spec = base(cookie_name)
    for part in parts:
        for path, item in part.get("paths", {}).items():
            if path in spec["paths"]:
                raise ValueError(f"OpenAPI path {path} contributed twice")
            spec["paths"][path] = copy.deepcopy(item)
        for section, entries in part.get("components", {}).items():
            target = spec["components"].setdefault(section, {})
            for name, value in entries.items():
                if name in target:
                    raise ValueError(f"OpenAPI component {section}.{name} contributed twice")
                target[name] = copy.deepcopy(value)
    return spec
