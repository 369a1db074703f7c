"""A small client of the web service's HTTP API, for the CLI commands that work through it.

Where the service is and who is asking come from the environment:

- ``CALLROUTER_API_URL``: the service's base URL (default ``http://127.0.0.1:8080``, the
  service's own default address);
- ``CALLROUTER_API_TOKEN_FILE``: a file whose first line is an API token (``callrouter users
  token``), or ``CALLROUTER_API_TOKEN``: the token itself (the file wins when both are set).

The token is sent as ``Authorization: Bearer``, never printed or logged. Answers are JSON; an
error answer (``application/problem+json``) becomes :class:`ApiError` with its status, detail
and whole body; no answer at all becomes :class:`ApiUnreachable`.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

URL_ENV = "CALLROUTER_API_URL"
TOKEN_ENV = "CALLROUTER_API_TOKEN"  # noqa: S105 - the variable's name, not a token
TOKEN_FILE_ENV = "CALLROUTER_API_TOKEN_FILE"  # noqa: S105 - the variable's name
DEFAULT_URL = "http://127.0.0.1:8080"
TIMEOUT_S = 30.0
MAX_ANSWER = 16 * 1024 * 1024  # bytes of an answer read at most (a plan is at most 8 MB)


class ApiConfigError(ValueError):
    """The URL or the token is missing or unusable: the message says which setting to fix."""


class ApiUnreachable(OSError):
    """The service did not answer (refused, timed out, TLS failed)."""


class ApiError(Exception):
    """The service answered with an error status."""

    def __init__(self, status: int, detail: str, body: Mapping[str, Any]) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail
        self.body = dict(body)


def _token(environ: Mapping[str, str]) -> str:
    path = environ.get(TOKEN_FILE_ENV, "")
    if path:
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise ApiConfigError(f"{TOKEN_FILE_ENV}={path}: cannot read it ({exc})") from None
        token = lines[0].strip() if lines else ""
        if not token:
            raise ApiConfigError(f"{TOKEN_FILE_ENV}={path}: the file's first line is empty")
        return token
    token = environ.get(TOKEN_ENV, "").strip()
    if not token:
        raise ApiConfigError(
            f"no API token: set {TOKEN_FILE_ENV} (a file holding it) or {TOKEN_ENV} "
            "(an administrator creates one with callrouter users token)"
        )
    return token


def _base_url(environ: Mapping[str, str]) -> str:
    url = environ.get(URL_ENV, "").strip() or DEFAULT_URL
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ApiConfigError(
            f"{URL_ENV}={url!r}: give the service's URL, e.g. https://callrouter.example:8443"
        )
    return url.rstrip("/")


@dataclass(frozen=True, slots=True)
class ApiClient:
    base_url: str
    token: str = field(repr=False)
    timeout_s: float = TIMEOUT_S

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ApiClient:
        env = os.environ if environ is None else environ
        return cls(_base_url(env), _token(env))

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: Mapping[str, str | int] | None = None,
    ) -> tuple[int, Any]:
        """``(status, JSON answer)`` for a 2xx answer; :class:`ApiError` for an error status,
        :class:`ApiUnreachable` when nothing usable came back."""
        url = self.base_url + path
        if query:
            url += "?" + urllib.parse.urlencode({k: str(v) for k, v in query.items()})
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(url, data=data, headers=headers, method=method)  # noqa: S310 - http(s) only
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as answer:  # noqa: S310 - http(s) only
                return answer.status, _decoded(answer.read(MAX_ANSWER))
        except urllib.error.HTTPError as exc:
            raw = exc.read(MAX_ANSWER)
            exc.close()
            decoded = _decoded(raw, strict=False)
            problem = decoded if isinstance(decoded, dict) else {}
            detail = str(problem.get("detail") or exc.reason or "error")
            raise ApiError(exc.code, detail, problem) from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            raise ApiUnreachable(f"the web service at {self.base_url} did not answer: {reason}") from None

    def get(self, path: str, *, query: Mapping[str, str | int] | None = None) -> Any:
        return self.request("GET", path, query=query)[1]

    def post(self, path: str, body: Any) -> tuple[int, Any]:
        return self.request("POST", path, body)


def _decoded(raw: bytes, *, strict: bool = True) -> Any:
    try:
        return json.loads(raw) if raw else None
    except (UnicodeDecodeError, json.JSONDecodeError):
        if strict:
            raise ValueError("the answer is not JSON") from None
        return None
