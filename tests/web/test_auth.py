"""The web service's identity and authorisation, through the real app on a real Redis."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from routing.redis_keys import KEYS
from routing.supervisor import audit_tail
from tests.support.web import (
    PASSWORD,
    TEST_CONFIG,
    add_user,
    bearer,
    login,
    login_form_token,
    make_token,
    web_test_app,
)
from tests.web import probe_feature
from web.context import WebConfig
from web.identity import IdentityStore, grants, parse_roles

Client = TestClient[web.Request, web.Application]
PROBLEM = "application/problem+json"


async def _post_login(client: Client, user: str, password: str) -> tuple[int, str, dict[str, str]]:
    token = await login_form_token(client)
    answer = await client.post(
        "/login", data={"username": user, "password": password, "csrf_token": token}, allow_redirects=False
    )
    return answer.status, await answer.text(), dict(answer.headers)


def _normalised(page: str, user: str) -> str:
    return re.sub(r'value="[^"]*"', 'value=""', page).replace(user, "USER")


# --- roles (pure) ------------------------------------------------------------------------------


def test_roles_are_cumulative_per_tenant_and_admin_on_star_is_everything() -> None:
    roles = parse_roles(["barnet:supervisor", "camden:engineer", "*:viewer"])
    assert grants(roles, "viewer", "barnet")
    assert grants(roles, "supervisor", "barnet")
    assert not grants(roles, "engineer", "barnet")
    assert not grants(roles, "supervisor", "camden")
    assert grants(roles, "viewer", "enfield")  # *:viewer
    assert grants(roles, "viewer", None)
    assert not grants(roles, "supervisor", None)
    admin = parse_roles(["*:admin"])
    assert all(
        grants(admin, r, t) for r in ("viewer", "supervisor", "engineer", "admin") for t in ("x", None)
    )
    local_admin = parse_roles(["barnet:admin"])
    assert grants(local_admin, "engineer", "barnet")
    assert not grants(local_admin, "admin", None)
    with pytest.raises(ValueError, match="TENANT:ROLE"):
        parse_roles(["barnet:owner"])


# --- health ------------------------------------------------------------------------------------


async def test_health_and_ready_need_no_login(web_client: Client) -> None:
    assert (await web_client.get("/health")).status == 200
    ready = await web_client.get("/ready")
    assert ready.status == 200
    assert (await ready.json()) == {"status": "ready"}


async def test_ready_is_503_when_redis_does_not_answer() -> None:
    from tests.support.redis_server import free_port

    dead = Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5)
    async with TestClient(TestServer(web_test_app(dead), host="127.0.0.1")) as client:
        assert (await client.get("/health")).status == 200
        ready = await client.get("/ready")
        assert ready.status == 503
        assert ready.content_type == PROBLEM
    await dead.aclose()


# --- login -------------------------------------------------------------------------------------


async def test_login_sets_a_secure_httponly_strict_session_cookie(
    web_redis: Redis, web_store: IdentityStore
) -> None:
    await add_user(web_store, "alice", {"barnet": {"viewer"}})
    app = web_test_app(web_redis, config=WebConfig(cookie_secure=True))
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        page = await client.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', await page.text())
        assert token is not None
        answer = await client.post(
            "/login",
            data={"username": "alice", "password": PASSWORD, "csrf_token": token.group(1)},
            headers={"Cookie": f"__Host-callrouter-login={token.group(1)}"},
            allow_redirects=False,
        )
        assert answer.status == 303
        cookie = next(c for c in answer.headers.getall("Set-Cookie") if c.startswith("__Host-callrouter="))
        session_id = cookie.split(";")[0].split("=", 1)[1]
        assert len(session_id) >= 43  # 256 bits, base64url
        for flag in ("HttpOnly", "Secure", "SameSite=Strict", "Path=/"):
            assert flag in cookie
        assert "Domain" not in cookie
        assert answer.headers["Strict-Transport-Security"].startswith("max-age=")
    stored = [k async for k in web_redis.scan_iter(match=KEYS.web_session("*"))]
    assert len(stored) == 1
    assert session_id.encode() not in stored[0]


async def test_wrong_password_and_unknown_user_get_the_same_answer(
    web_client: Client, web_store: IdentityStore
) -> None:
    await add_user(web_store, "alice", {"barnet": {"viewer"}})
    wrong = await _post_login(web_client, "alice", "not the password at all")
    unknown = await _post_login(web_client, "nobody", "not the password at all")
    assert wrong[0] == unknown[0] == 401
    assert _normalised(wrong[1], "alice") == _normalised(unknown[1], "nobody")
    assert "Wrong user name or password." in wrong[1]
    assert (await web_client.get("/api/v1/whoami")).status == 401
    entries = await audit_tail(web_store.redis, count=5)
    assert [e["what"] for e in entries][:2] == ["auth.login.failed", "auth.login.failed"]
    assert all(e["by"] == "-" for e in entries[:2])


async def test_login_form_without_its_csrf_cookie_is_refused(
    web_client: Client, web_store: IdentityStore
) -> None:
    await add_user(web_store, "alice", {"barnet": {"viewer"}})
    answer = await web_client.post(
        "/login",
        data={"username": "alice", "password": PASSWORD, "csrf_token": "forged"},
        allow_redirects=False,
    )
    assert answer.status == 403


async def test_brute_force_gets_429_with_retry_after_even_for_the_right_password(
    web_client: Client, web_store: IdentityStore
) -> None:
    await add_user(web_store, "alice", {"barnet": {"viewer"}})
    for _ in range(TEST_CONFIG.login_failures_per_user):
        assert (await _post_login(web_client, "alice", "wrong password!!"))[0] == 401
    status, _page, headers = await _post_login(web_client, "alice", PASSWORD)
    assert status == 429
    assert 0 < int(headers["Retry-After"]) <= TEST_CONFIG.login_window_s
    assert (await audit_tail(web_store.redis, count=1))[0]["what"] == "auth.login.locked"


async def test_failures_per_address_limit_every_user_name(web_redis: Redis, web_store: IdentityStore) -> None:
    config = WebConfig(cookie_secure=False, login_failures_per_address=3)
    async with TestClient(TestServer(web_test_app(web_redis, config=config), host="127.0.0.1")) as client:
        for name in ("u1", "u2", "u3"):
            assert (await _post_login(client, name, "whatever password"))[0] == 401
        assert (await _post_login(client, "u4", "whatever password"))[0] == 429


async def test_login_then_whoami_then_logout(web_client: Client, web_store: IdentityStore) -> None:
    await add_user(web_store, "alice", {"barnet": {"supervisor"}}, name="Alice Smith")
    csrf = await login(web_client, "alice")
    me = await (await web_client.get("/api/v1/whoami")).json()
    assert me == {"user": "alice", "name": "Alice Smith", "roles": {"barnet": ["supervisor"]},
                  "via": "session", "csrf_token": csrf}  # fmt: skip
    assert (await web_client.post("/logout", allow_redirects=False)).status == 403  # no CSRF token
    out = await web_client.post("/logout", headers={"X-CSRF-Token": csrf}, allow_redirects=False)
    assert out.status == 303
    assert out.headers["Location"] == "/login"
    assert (await web_client.get("/api/v1/whoami")).status == 401
    assert [k async for k in web_store.redis.scan_iter(match=KEYS.web_session("*"))] == []
    last = (await audit_tail(web_store.redis, count=1))[0]
    assert (last["what"], last["by"]) == ("auth.logout", "alice")


async def test_a_new_password_ends_the_users_sessions(web_client: Client, web_store: IdentityStore) -> None:
    await add_user(web_store, "alice", {"barnet": {"viewer"}})
    await login(web_client, "alice")
    await web_store.set_password("alice", "another long password")
    assert (await web_client.get("/api/v1/whoami")).status == 401


async def test_a_session_ends_at_its_absolute_limit(web_redis: Redis, web_store: IdentityStore) -> None:
    await add_user(web_store, "alice", {"barnet": {"viewer"}})
    moments = [datetime.now(UTC)]
    config = WebConfig(cookie_secure=False, session_absolute_s=3600)
    app = web_test_app(web_redis, config=config, clock=lambda: moments[0])
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        await login(client, "alice")
        moments[0] += timedelta(minutes=59)
        assert (await client.get("/api/v1/whoami")).status == 200
        moments[0] += timedelta(minutes=2)
        assert (await client.get("/api/v1/whoami")).status == 401


# --- CSRF and roles ----------------------------------------------------------------------------


async def test_csrf_is_required_on_unsafe_requests_of_a_cookie_session(
    web_client: Client, web_store: IdentityStore
) -> None:
    await add_user(web_store, "sup", {"barnet": {"supervisor"}})
    csrf = await login(web_client, "sup")
    body = {"on": True}
    missing = await web_client.post("/api/test/barnet", json=body)
    assert missing.status == 403
    assert missing.content_type == PROBLEM
    assert "CSRF" in (await missing.json())["detail"]
    assert (
        await web_client.post("/api/test/barnet", json=body, headers={"X-CSRF-Token": "x" + csrf})
    ).status == 403
    other_origin = {"X-CSRF-Token": csrf, "Origin": "https://evil.example"}
    assert (await web_client.post("/api/test/barnet", json=body, headers=other_origin)).status == 403
    ok = await web_client.post("/api/test/barnet", json=body, headers={"X-CSRF-Token": csrf})
    assert ok.status == 200
    assert (await ok.json()) == {"by": "sup", "got": body}
    form = await web_client.post("/logout", data={"csrf_token": csrf}, allow_redirects=False)
    assert form.status == 303  # the form field works as the header does


async def test_bearer_tokens_ok_wrong_expired_revoked(web_client: Client, web_store: IdentityStore) -> None:
    await add_user(web_store, "bot", {"barnet": {"supervisor"}})
    token = await make_token(web_store, "bot")
    ok = await web_client.post("/api/test/barnet", json={"a": 1}, headers=bearer(token))  # no CSRF needed
    assert ok.status == 200
    assert (await ok.json())["by"] == "bot"
    assert (await (await web_client.get("/api/v1/whoami", headers=bearer(token))).json())["via"] == "token"
    wrong = await web_client.get("/api/v1/whoami", headers=bearer(token[:-2] + "xx"))
    assert wrong.status == 401
    assert wrong.headers["WWW-Authenticate"].startswith("Bearer")
    assert wrong.content_type == PROBLEM
    assert (await web_client.get("/api/v1/whoami", headers={"Authorization": "Basic abc"})).status == 401
    old, _ = await web_store.create_token(
        "bot", "old", datetime.now(UTC) - timedelta(days=2), timedelta(days=1)
    )
    assert (await web_client.get("/api/v1/whoami", headers=bearer(old))).status == 401
    token_id = next(t.token_id for t in await web_store.tokens() if t.name == "tests")
    await web_store.revoke_token(token_id, datetime.now(UTC))
    revoked = next(t for t in await web_store.tokens() if t.token_id == token_id)
    assert revoked.revoked_at is not None
    assert (await web_client.get("/api/v1/whoami", headers=bearer(token))).status == 401
    assert (await web_client.get("/api/v1/whoami", headers=bearer("crt_" + "A" * 43))).status == 401


@pytest.mark.parametrize(
    ("roles", "expected"),
    [
        # GET barnet, GET camden, POST barnet, POST camden
        ({"barnet": {"viewer"}}, (200, 403, 403, 403)),
        ({"barnet": {"supervisor"}}, (200, 403, 200, 403)),
        ({"barnet": {"engineer"}}, (200, 403, 403, 403)),
        ({"*": {"viewer"}, "camden": {"supervisor"}}, (200, 200, 403, 200)),
        ({"*": {"admin"}}, (200, 200, 200, 200)),
        ({}, (403, 403, 403, 403)),
    ],
)
async def test_each_role_can_do_exactly_what_it_may(
    web_client: Client, web_store: IdentityStore, roles: dict[str, set[str]], expected: tuple[int, ...]
) -> None:
    await add_user(web_store, "who", roles)
    auth = bearer(await make_token(web_store, "who"))
    got = (
        (await web_client.get("/api/test/barnet", headers=auth)).status,
        (await web_client.get("/api/test/camden", headers=auth)).status,
        (await web_client.post("/api/test/barnet", json={}, headers=auth)).status,
        (await web_client.post("/api/test/camden", json={}, headers=auth)).status,
    )
    assert got == expected
    anonymous = await web_client.get("/api/test/barnet")
    assert anonymous.status == 401
    assert anonymous.content_type == PROBLEM


# --- bodies, errors, headers -------------------------------------------------------------------


async def test_a_body_over_the_limit_is_413(web_client: Client, web_store: IdentityStore) -> None:
    await add_user(web_store, "sup", {"barnet": {"supervisor"}})
    auth = bearer(await make_token(web_store, "sup"))
    big = b'{"a":"' + b"x" * TEST_CONFIG.max_body_bytes + b'"}'
    answer = await web_client.post(
        "/api/test/barnet", data=big, headers={**auth, "Content-Type": "application/json"}
    )
    assert answer.status == 413
    assert answer.content_type == PROBLEM
    assert str(TEST_CONFIG.max_body_bytes) in (await answer.json())["detail"]

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"x" * (TEST_CONFIG.max_body_bytes // 4)

    chunked = await web_client.post(
        "/api/test/barnet", data=chunks(), headers={**auth, "Content-Type": "application/json"}
    )
    assert chunked.status == 413
    assert chunked.content_type == PROBLEM


async def test_malformed_json_is_a_400_problem_and_other_types_415(
    web_client: Client, web_store: IdentityStore
) -> None:
    await add_user(web_store, "sup", {"barnet": {"supervisor"}})
    auth = bearer(await make_token(web_store, "sup"))
    bad = await web_client.post(
        "/api/test/barnet", data=b'{"on": tru', headers={**auth, "Content-Type": "application/json"}
    )
    assert bad.status == 400
    assert bad.content_type == PROBLEM
    problem = await bad.json()
    assert set(problem) == {"type", "title", "status", "detail"}
    assert problem["status"] == 400
    assert "malformed JSON" in problem["detail"]
    text = await web_client.post(
        "/api/test/barnet", data=b"on", headers={**auth, "Content-Type": "text/plain"}
    )
    assert text.status == 415


async def test_security_headers_on_pages_errors_and_api(web_client: Client) -> None:
    for path, status in (("/login", 200), ("/nowhere", 404), ("/api/v1/whoami", 401), ("/health", 200)):
        answer = await web_client.get(path)
        assert answer.status == status
        csp = answer.headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp
        assert "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
        assert answer.headers["Referrer-Policy"] == "same-origin"
    assert (await web_client.get("/nowhere")).content_type == PROBLEM
    wrong_method = await web_client.delete("/health")
    assert wrong_method.status == 405
    assert wrong_method.content_type == PROBLEM


async def test_an_unexpected_error_is_a_500_problem_without_details(web_client: Client) -> None:
    answer = await web_client.get("/api/test-boom")
    assert answer.status == 500
    assert answer.content_type == PROBLEM
    text = await answer.text()
    assert "secret-value" not in text
    assert "Traceback" not in text
    assert "RuntimeError" not in text


async def test_the_login_page_escapes_what_it_shows(web_client: Client) -> None:
    status, page, _ = await _post_login(web_client, "<script>alert(1)</script>", "x" * 20)
    assert status == 401
    assert "<script>alert" not in page
    assert "&lt;script&gt;" in page
    assert re.search(r'<label [^>]*for="username"', page)  # each field has its label
    assert re.search(r'<label [^>]*for="password"', page)


async def test_the_openapi_document_lists_every_feature(web_client: Client) -> None:
    spec = await (await web_client.get("/api/openapi.json")).json()
    assert spec["openapi"] == "3.1.0"
    assert {"/login", "/logout", "/api/v1/whoami", "/health", "/ready", "/api/test/{tenant}"} <= set(
        spec["paths"]
    )
    assert set(spec["components"]["securitySchemes"]) == {"bearer", "session"}
    assert spec["paths"]["/api/v1/whoami"]["get"]["responses"]["401"]["$ref"].endswith("/Unauthorized")


def test_a_feature_module_is_a_setup_function(web_redis: Redis) -> None:
    app = web_test_app(web_redis, extra_features=(probe_feature,))
    paths = {r.resource.canonical for r in app.router.routes() if r.resource is not None}
    assert "/api/test/{tenant}" in paths
    assert "/api/v1/whoami" in paths


async def test_behind_a_trusted_proxy_the_last_forwarded_address_is_limited(
    web_redis: Redis, web_store: IdentityStore
) -> None:
    config = WebConfig(cookie_secure=False, login_failures_per_address=2, trust_forwarded_for=True)
    async with TestClient(TestServer(web_test_app(web_redis, config=config), host="127.0.0.1")) as client:

        async def attempt(forwarded: str) -> int:
            token = await login_form_token(client)
            answer = await client.post(
                "/login",
                data={"username": "x", "password": "wrong password!", "csrf_token": token},
                headers={"X-Forwarded-For": forwarded},
                allow_redirects=False,
            )
            return answer.status

        assert await attempt("1.1.1.1, 192.0.2.7") == 401
        assert await attempt("2.2.2.2, 192.0.2.7") == 401  # the client's own entries do not help
        assert await attempt("3.3.3.3, 192.0.2.7") == 429
        assert await attempt("192.0.2.8") == 401  # another client


async def test_a_login_that_is_not_a_readable_form_is_a_4xx_problem(web_client: Client) -> None:
    no_boundary = await web_client.post(
        "/login", data=b"username=a", headers={"Content-Type": "multipart/form-data"}
    )
    assert no_boundary.status == 400
    assert no_boundary.content_type == PROBLEM
    as_json = await web_client.post("/login", json={"username": "a"})
    assert as_json.status == 415


async def test_logging_in_again_replaces_the_session(web_client: Client, web_store: IdentityStore) -> None:
    await add_user(web_store, "alice", {"barnet": {"viewer"}})
    await login(web_client, "alice")
    token = await login_form_token(web_client)  # the login form has its own token, not the session's
    again = await web_client.post(
        "/login",
        data={"username": "alice", "password": PASSWORD, "csrf_token": token},
        allow_redirects=False,
    )
    assert again.status == 303
    assert len([k async for k in web_store.redis.scan_iter(match=KEYS.web_session("*"))]) == 1
