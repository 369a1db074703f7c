"""The command line as a client of the web service's API (``callrouter web``).

The URL and token come from the settings (``api.url`` / ``CALLROUTER_API_URL``, the token from
``CALLROUTER_API_TOKEN_FILE`` or ``CALLROUTER_API_TOKEN``: ``docs/settings.md``). Every
request is bounded in time; a failure is an :class:`ApiError` whose message says what to do,
never the token."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import aiohttp

from callrouter.settings import Settings, SettingsError

EXIT_REFUSED, EXIT_UNREACHABLE = 2, 3
CONNECT_TIMEOUT_S = 5.0
MAX_ANSWER_BYTES = 4 * 1024 * 1024


class ApiError(Exception):
    """The service refused (``exit_code`` 2) or could not be reached (3)."""

    def __init__(self, message: str, exit_code: int, status: int | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.status = status
        self.body = body


def segment(value: str) -> str:
    """``value`` as one path segment (a tenant or kind typed by the user cannot add a path)."""
    return quote(value, safe="")


class ApiClient:
    """``async with ApiClient(settings) as api: await api.get("/api/v1/...")``."""

    def __init__(self, settings: Settings) -> None:
        if settings.api.token is None:
            raise SettingsError(
                "no API token: set CALLROUTER_API_TOKEN_FILE to a file holding a token from "
                "`callrouter users token USER --name WHAT` (or CALLROUTER_API_TOKEN); "
                "the service's administrator makes one"
            )
        self.base = settings.api_url()
        self._token = settings.api.token.get_secret_value().strip()
        self._timeout = aiohttp.ClientTimeout(total=settings.api.timeout_s, connect=CONNECT_TIMEOUT_S)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> ApiClient:
        self._session = aiohttp.ClientSession(
            timeout=self._timeout, headers={"Authorization": f"Bearer {self._token}"}
        )
        return self

    async def __aexit__(self, *_exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def get(self, path: str, **params: str) -> Any:
        status, body = await self.call("GET", path, params=params)
        return self._ok(status, body, (200,))

    async def call(
        self, method: str, path: str, *, body: Any = None, params: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        """(status, parsed JSON body) for statuses the caller handles; :class:`ApiError` for a
        refused token, an answer that is not JSON, or a service that cannot be reached."""
        assert self._session is not None, "use ApiClient in async with"
        url = self.base + path
        try:
            async with self._session.request(method, url, json=body, params=params or None) as answer:
                raw = await answer.content.read(MAX_ANSWER_BYTES)
                status = answer.status
        except aiohttp.ClientConnectorError:
            raise ApiError(f"the service at {self.base} does not answer (is callrouter web running?)",
                           EXIT_UNREACHABLE) from None  # fmt: skip
        except TimeoutError:
            raise ApiError(f"the service at {self.base} did not answer within {self._timeout.total:g}s",
                           EXIT_UNREACHABLE) from None  # fmt: skip
        except aiohttp.ClientError as exc:
            raise ApiError(f"the service at {self.base}: {type(exc).__name__}", EXIT_UNREACHABLE) from None
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            raise ApiError(
                f"the service at {self.base} answered {status} with something that is not JSON "
                "(is api.url the callrouter web service?)",
                EXIT_UNREACHABLE,
            ) from None
        if status == 401:
            raise ApiError(
                f"token refused by {self.base} (unknown, expired or revoked): ask for a new one "
                "(callrouter users token)",
                EXIT_REFUSED,
                status,
                parsed,
            )
        return status, parsed

    def _ok(self, status: int, body: Any, expected: tuple[int, ...]) -> Any:
        if status in expected:
            return body
        raise error_for(status, body)


def error_for(status: int, body: Any) -> ApiError:
    """An :class:`ApiError` for an answer the command does not expect: the service's words."""
    detail = body.get("detail") if isinstance(body, dict) else None
    text = str(detail) if detail else f"HTTP {status}"
    if status >= 500:
        return ApiError(f"the service could not do it ({status}): {text}", EXIT_UNREACHABLE, status, body)
    return ApiError(f"refused ({status}): {text}", EXIT_REFUSED, status, body)
