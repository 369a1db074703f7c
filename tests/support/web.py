"""The web service under test: the real app on a real redis-server, users, tokens, logins.

Wave-after features use it as::

    async def test_x(web_client, web_store):
        await add_user(web_store, "sup", {"barnet": {"supervisor"}})
        csrf = await login(web_client, "sup")                      # a cookie session
        await web_client.post("/api/v1/...", json=..., headers={"X-CSRF-Token": csrf})
        token = await make_token(web_store, "sup")                 # or a bearer token
        await web_client.get("/api/v1/...", headers=bearer(token))

``web_client``/``web_store`` are fixtures in ``tests/web/conftest.py``; :func:`web_test_app`
builds the same application with other features or another clock.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from types import ModuleType

from aiohttp import web
from aiohttp.test_utils import TestClient
from argon2 import PasswordHasher
from redis.asyncio import Redis

from web.app import FEATURES, create_app
from web.context import Clock, WebConfig, utc_now
from web.identity import IdentityStore

PASSWORD = "correct horse battery staple"
# argon2id with small costs: the same code path as production, fast enough for many tests.
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)
TEST_CONFIG = WebConfig(cookie_secure=False, max_body_bytes=64 * 1024)
_FORM_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def web_test_app(
    redis: Redis,
    *,
    config: WebConfig = TEST_CONFIG,
    clock: Clock = utc_now,
    extra_features: Sequence[ModuleType] = (),
) -> web.Application:
    return create_app(config, redis, clock=clock, hasher=FAST_HASHER, features=(*FEATURES, *extra_features))


def store_for(redis: Redis) -> IdentityStore:
    return IdentityStore(redis, FAST_HASHER)


async def add_user(
    store: IdentityStore,
    user_id: str,
    roles: Mapping[str, set[str] | frozenset[str]],
    *,
    password: str = PASSWORD,
    name: str = "",
) -> None:
    await store.add_user(
        user_id,
        name or user_id.title(),
        password,
        {t: frozenset(r) for t, r in roles.items()},
        datetime.now(UTC),
    )


async def make_token(
    store: IdentityStore, user_id: str, *, lifetime: timedelta = timedelta(days=1), name: str = "tests"
) -> str:
    token, _info = await store.create_token(user_id, name, datetime.now(UTC), lifetime)
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def login_form_token(client: TestClient[web.Request, web.Application]) -> str:
    """GET /login: the form's CSRF token (its cookie is now in the client's jar)."""
    page = await client.get("/login")
    assert page.status == 200
    found = _FORM_TOKEN.search(await page.text())
    assert found is not None
    return found.group(1)


async def login(
    client: TestClient[web.Request, web.Application], user_id: str, password: str = PASSWORD
) -> str:
    """Log in through the form; returns the session's CSRF token (for unsafe requests)."""
    form_token = await login_form_token(client)
    answer = await client.post(
        "/login",
        data={"username": user_id, "password": password, "csrf_token": form_token},
        allow_redirects=False,
    )
    assert answer.status == 303, await answer.text()
    whoami = await client.get("/api/v1/whoami")
    assert whoami.status == 200
    csrf: str = (await whoami.json())["csrf_token"]
    return csrf
