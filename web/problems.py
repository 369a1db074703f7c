"""Errors as ``application/problem+json`` (RFC 9457) and the request-body readers features use.

A handler raises :class:`Problem`; the error middleware (``web/app.py``) turns it into
``{"type", "title", "status", "detail"}``. Bodies are read with :func:`read_json` or
:func:`read_model`, which answer 400/415/422 with a detail naming what is wrong."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, TypeVar

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_request import FileField
from multidict import MultiDictProxy
from pydantic import BaseModel, ValidationError

PROBLEM_TYPE = "application/problem+json"
MAX_DETAIL = 500  # characters of user-influenced text echoed back in a detail

TITLES = {
    400: "Bad request",
    401: "Not authenticated",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Request body too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    429: "Too many requests",
    500: "Internal server error",
    503: "Service unavailable",
}

M = TypeVar("M", bound=BaseModel)


class Problem(Exception):
    """An HTTP error answer: ``raise Problem(403, "you are not a supervisor of tenant x")``."""

    def __init__(
        self, status: int, detail: str, *, title: str | None = None, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail[:MAX_DETAIL]
        self.title = title or TITLES.get(status, "Error")
        self.headers = dict(headers or {})

    def response(self) -> web.Response:
        return problem_response(self.status, self.detail, title=self.title, headers=self.headers)


def problem_response(
    status: int, detail: str, *, title: str | None = None, headers: Mapping[str, str] | None = None
) -> web.Response:
    body = {
        "type": "about:blank",
        "title": title or TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    return web.Response(
        status=status, text=json.dumps(body), content_type=PROBLEM_TYPE, headers=dict(headers or {})
    )


async def read_json(request: web.Request) -> Any:
    """The request's JSON body, or a 415 (not JSON) / 400 (malformed) problem."""
    if request.content_type != "application/json":
        raise Problem(415, f"send the body as application/json (got {request.content_type or 'none'})")
    raw = await request.read()  # bounded by the app's client_max_size: 413 beyond it
    try:
        return json.loads(raw)
    except UnicodeDecodeError:
        raise Problem(400, "the body is not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise Problem(400, f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None


FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


async def read_form(request: web.Request) -> MultiDictProxy[str | bytes | bytearray | FileField]:
    """The request's form fields, or a 415 (not a form) / 400 (a form that cannot be read)."""
    if request.content_type not in FORM_TYPES:
        raise Problem(
            415, f"send a form ({' or '.join(FORM_TYPES)}), not {request.content_type or 'nothing'}"
        )
    try:
        return await request.post()
    except (KeyError, ValueError, AssertionError, HttpProcessingError):  # e.g. no boundary, a bad part header
        raise Problem(400, "the form cannot be read (malformed body or Content-Type)") from None


async def read_model(request: web.Request, model: type[M]) -> M:
    """The JSON body checked against ``model``; a 422 problem lists each problem with its path."""
    data = await read_json(request)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or '(body)'}: {error['msg']}" for error in exc.errors()
        )
        raise Problem(422, problems) from None
