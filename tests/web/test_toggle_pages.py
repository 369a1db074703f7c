"""The emergency and audit pages, server-rendered, through a cookie session: the form, the
confirmation step, the result, errors tied to their fields, text escaped, CSRF and roles."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from routing.redis_keys import KEYS
from routing.supervisor import toggle_from_json, when
from tests.support.web import add_user, login
from tests.web.test_toggles import LONDON, ROLES, client_for, publish_plan
from web.identity import IdentityStore

Client = TestClient[web.Request, web.Application]
PAGE = "/tenants/harborough/emergency"
SCRIPT = "<script>alert(1)</script> flooding"


@pytest.fixture
async def client(web_redis: Redis) -> AsyncIterator[Client]:
    await publish_plan(web_redis)
    async for c in client_for(web_redis):
        yield c


def hidden(html: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert found is not None, name
    return found.group(1)


async def test_switch_on_through_the_confirmation_step_then_off(
    client: Client, web_store: IdentityStore, web_redis: Redis
) -> None:
    await add_user(web_store, "sup", ROLES["sup"])
    csrf = await login(client, "sup")
    home = await client.get("/", allow_redirects=False)
    assert home.status == 303  # one council: straight to its emergency page
    assert home.headers["Location"] == PAGE
    page = await client.get(PAGE)
    assert page.status == 200
    html = await page.text()
    assert '<label class="field__label" for="field-reason">' in html
    assert 'aria-describedby="field-reason-hint"' in html
    assert 'aria-describedby="field-expires-hint"' in html
    assert "<style" not in html
    assert not re.search(r"<script(?![^>]*\bsrc=)", html)  # the CSP allows no inline script

    form = {"csrf_token": csrf, "on": "on", "reason": SCRIPT, "expires": "3d"}
    step = await client.post(PAGE, data=form)
    assert step.status == 200
    confirm = await step.text()
    assert "Nothing has changed yet" in confirm
    assert "&lt;script&gt;alert(1)&lt;/script&gt; flooding" in confirm
    assert "<script>alert" not in confirm
    expires = datetime.fromisoformat(hidden(confirm, "expires"))
    assert timedelta(days=2, hours=23) < expires - datetime.now(UTC) <= timedelta(days=3)
    assert f'<dd class="user-text">{when(expires, LONDON)}</dd>' in confirm  # the date, in the council's time
    assert await web_redis.get(KEYS.toggle("emergency", "harborough")) is None

    fields = {name: hidden(confirm, name) for name in ("csrf_token", "on", "reason", "expires", "confirm")}
    assert (
        fields["reason"] == "&lt;script&gt;alert(1)&lt;/script&gt; flooding"
    )  # as the browser sends it back:
    fields["reason"] = SCRIPT  # the attribute's text, unescaped
    done = await client.post(PAGE, data=fields, allow_redirects=False)
    assert done.status == 303
    assert done.headers["Location"].startswith(PAGE + "?done=")
    stored = toggle_from_json(await web_redis.get(KEYS.toggle("emergency", "harborough")))
    assert (stored.by, stored.reason, stored.expires_at) == ("sup", SCRIPT, expires)
    result = await (await client.get(done.headers["Location"])).text()
    assert "Done: emergency cover switched on until " in result
    assert "&lt;script&gt;" in result
    assert "<script>" not in result
    assert "Switch emergency cover off" in result

    step = await client.post(PAGE, data={"csrf_token": csrf, "on": "off", "reason": "Water receded"})
    confirm = await step.text()
    assert "on until" in confirm  # what it replaces
    fields = {name: hidden(confirm, name) for name in ("csrf_token", "on", "reason", "expires", "confirm")}
    done = await client.post(PAGE, data=fields, allow_redirects=False)
    assert done.status == 303
    assert await web_redis.get(KEYS.toggle("emergency", "harborough")) is None

    trail = await client.get("/tenants/harborough/audit")
    text = await trail.text()
    assert trail.status == 200
    assert text.count("<tr>") == 3  # the heading and two entries
    assert "Water receded" in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "<script>" not in text


async def test_a_refused_form_says_why_beside_its_fields(client: Client, web_store: IdentityStore) -> None:
    await add_user(web_store, "sup", ROLES["sup"])
    csrf = await login(client, "sup")
    for reason, expires, words, name in [
        ("flood\u202e", "2h", "control character", "reason"),
        ("flood", "2020-01-01 10:00", "in the past", "expires"),
        ("x" * 600, "2h", "at most 500", "reason"),
    ]:
        answer = await client.post(
            PAGE, data={"csrf_token": csrf, "on": "on", "reason": reason, "expires": expires}
        )
        assert answer.status == 422
        html = await answer.text()
        assert '<div class="error-summary" role="alert"' in html
        assert f'<a href="#field-{name}">' in html
        assert words in html
        assert f'aria-describedby="field-{name}-hint field-{name}-error" aria-invalid="true"' in html
        assert f'value="{expires}"' in html  # what was typed is kept


async def test_pages_need_a_login_the_role_and_the_csrf_token(
    client: Client, web_store: IdentityStore, web_redis: Redis
) -> None:
    for path in ("/", PAGE, "/tenants/harborough/audit"):
        answer = await client.get(path, allow_redirects=False)
        assert answer.status == 303, path
        assert answer.headers["Location"] == "/login"
    await add_user(web_store, "viewer", ROLES["viewer"])
    await add_user(web_store, "other", ROLES["other"])
    csrf = await login(client, "viewer")
    page = await (await client.get(PAGE)).text()
    assert "may view this council but not change" in page
    assert '<form method="post" action="/tenants' not in page
    form = {"csrf_token": csrf, "on": "on", "reason": "flood", "expires": "2h", "confirm": "yes"}
    assert (await client.post(PAGE, data=form)).status == 403
    csrf = await login(client, "other")
    assert (await client.get(PAGE)).status == 403
    assert (await client.get("/tenants/harborough/audit")).status == 403
    await add_user(web_store, "sup", ROLES["sup"])
    csrf = await login(client, "sup")
    missing = await client.post(PAGE, data={**form, "csrf_token": ""})
    assert missing.status == 403
    wrong = await client.post(PAGE, data={**form, "csrf_token": csrf[::-1]})
    assert wrong.status == 403
    assert await web_redis.get(KEYS.toggle("emergency", "harborough")) is None


async def test_without_the_toggle_key_the_page_says_so(web_redis: Redis, web_store: IdentityStore) -> None:
    await publish_plan(web_redis)
    await add_user(web_store, "sup", ROLES["sup"])
    async for client in client_for(web_redis, keyring=None):
        csrf = await login(client, "sup")
        page = await client.get(PAGE)
        assert page.status == 200
        html = await page.text()
        assert "The toggle key is not configured on this service" in html
        assert 'id="toggle-form"' not in html
        form = {"csrf_token": csrf, "on": "on", "reason": "flood", "expires": "2h", "confirm": "yes"}
        assert (await client.post(PAGE, data=form)).status == 503
        assert (await client.get("/tenants/harborough/audit")).status == 200
