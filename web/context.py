"""What every part of the web service shares: its configuration and the application keys.

``callrouter web`` builds :class:`WebConfig` from the settings (``docs/settings.md``, section
``web``); the web package does not import the application layer above it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from redis.asyncio import Redis

from routing.partner_link import PartnerConfig
from routing.redis_keys import KEYS, RedisKeys
from routing.replicas import NO_WAIT, ReplicaWait
from routing.toggle_mac import ToggleKeyring
from web.identity import IdentityStore

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class WebConfig:
    cookie_secure: bool = True
    max_body_bytes: int = 1_048_576
    session_idle_s: float = 1800.0
    session_absolute_s: float = 43200.0
    login_failures_per_user: int = 5
    login_failures_per_address: int = 50
    login_window_s: int = 900
    trust_forwarded_for: bool = False
    # The key that signs and checks toggles (``toggle_key_file``); None: the toggles answer 503.
    toggle_keyring: ToggleKeyring | None = None
    # The plan the live view is built from (``web/live_plan.py``): the plan store's live version
    # when ``plan_from_store`` (``plan_source = store``), the ``plan`` file until one is published;
    # the file alone otherwise. Neither: the live view answers 503.
    plan_path: Path | None = None
    plan_from_store: bool = False
    live_interval_s: float = 0.2  # the live feed reads at least this often (and at each change)
    live_streams_max: int = 200  # SSE streams open at once in all; more: 503
    live_streams_per_user: int = 5  # SSE streams open at once per user; more: 429
    live_stream_max_s: float = 300.0  # a stream ends after this long; the browser reconnects
    live_heartbeat_s: float = 15.0  # an SSE comment line this often, so proxies keep the stream
    # The capacity snapshot exchange with partner centres (``web/partners.py``); None: no
    # partner is accepted and nothing is sent.
    partners: PartnerConfig | None = None

    # Replicas a toggle waits for before it counts as written (``redis.wait_replicas``; 0: none).
    redis_wait: ReplicaWait = NO_WAIT
    # The centre's key schema (``redis.key_tag``): every key the service reads or writes.
    keys: RedisKeys = KEYS

    @property
    def session_cookie(self) -> str:
        # The __Host- prefix makes browsers refuse the cookie unless Secure, Path=/ and no Domain.
        return "__Host-callrouter" if self.cookie_secure else "callrouter"

    @property
    def login_cookie(self) -> str:
        return "__Host-callrouter-login" if self.cookie_secure else "callrouter-login"


CONFIG = web.AppKey("config", WebConfig)
REDIS = web.AppKey("redis", Redis)
STORE = web.AppKey("store", IdentityStore)
CLOCK: web.AppKey[Clock] = web.AppKey("clock")
OPENAPI_PARTS = web.AppKey("openapi_parts", list[dict[str, Any]])


def client_address(request: web.Request) -> str:
    """The client's address: the peer's, or behind a trusted reverse proxy the last
    ``X-Forwarded-For`` entry (the one that proxy added; earlier ones are the client's say-so)."""
    if request.app[CONFIG].trust_forwarded_for:
        forwarded = request.headers.get("X-Forwarded-For", "").rpartition(",")[2].strip()
        if forwarded:
            return forwarded[:64]
    return request.remote or "unknown"


def keys_of(request: web.Request) -> RedisKeys:
    """The centre's Redis key schema (``redis.key_tag``), as every handler names its keys."""
    return request.app[CONFIG].keys


def now(request: web.Request) -> datetime:
    """The service's clock (a test passes its own to :func:`web.app.create_app`)."""
    return request.app[CLOCK]()
