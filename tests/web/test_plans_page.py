"""The plans page through a cookie session, against the real app and a real redis-server:
upload → problems with lines, or preview → confirm → publish; a version's diff; rollback after a
confirmation step; roles, CSRF and escaping."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import FormData, web
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from routing import plan_store
from tests.support.web import add_user, bearer, login, make_token
from web.identity import IdentityStore

Client = TestClient[web.Request, web.Application]
EXAMPLE = (Path(__file__).parents[2] / "examples" / "plan.yaml").read_text()
SHORT_DAY = EXAMPLE.replace('weekdays: ["08:30-17:30"]', 'weekdays: ["08:30-12:00"]', 1)
CHARNWOOD_RENAMED = EXAMPLE.replace('name: "Charnwood Borough Council"', 'name: "Charnwood BC"', 1)
SCRIPT = "<script>alert(1)</script>"


async def _post(client: Client, path: str, csrf: str, **fields: str) -> tuple[int, str]:
    answer = await client.post(path, data={"csrf_token": csrf, **fields}, allow_redirects=False)
    if answer.status == 303:
        return 303, answer.headers["Location"]
    return answer.status, await answer.text()


async def test_upload_check_preview_confirm_publish_and_roll_back(
    web_client: Client, web_store: IdentityStore, web_redis: Redis
) -> None:
    await add_user(web_store, "chief", {"*": {"engineer"}})
    csrf = await login(web_client, "chief")
    page = await (await web_client.get("/plans")).text()
    assert "No plan has been published yet." in page

    bad = EXAMPLE.replace('bank_holidays: "england-and-wales"', 'bank_holidays: "atlantis"')
    form = FormData()
    form.add_field("csrf_token", csrf)
    form.add_field("plan_file", bad.encode(), filename="plan.yaml", content_type="application/x-yaml")
    answer = await web_client.post("/plans/check", data=form)
    assert answer.status == 422
    shown = await answer.text()
    lines = [n for n, line in enumerate(bad.splitlines(), 1) if "atlantis" in line]
    for line in lines:
        assert f"Line {line}: tenants." in shown
    assert "The plan has 2 problems: nothing was published" in shown

    status, shown = await _post(web_client, "/plans/check", csrf, text=EXAMPLE)
    assert status == 200
    assert "every council" in shown  # the first plan changes everything
    assert "Continue to publish" in shown
    status, shown = await _post(web_client, "/plans/confirm", csrf, text=EXAMPLE, comment="")
    assert status == 422
    assert "The comment is empty." in shown
    status, shown = await _post(web_client, "/plans/confirm", csrf, text=EXAMPLE, comment=f"first {SCRIPT}")
    assert status == 200
    assert "Publish this plan now?" in shown
    assert SCRIPT not in shown
    assert "first &lt;script&gt;" in shown
    assert await plan_store.live(web_redis) is None  # the confirmation step publishes nothing
    status, where = await _post(web_client, "/plans/publish", csrf, text=EXAMPLE, comment="first plan")
    assert (status, where) == (303, "/plans?published=1")
    page = await (await web_client.get(where)).text()
    assert "Version 1 published" in page
    assert "Version 1 is live (generation 1)" in page

    status, shown = await _post(web_client, "/plans/check", csrf, text=SHORT_DAY)
    assert status == 200
    assert re.search(r'<dd id="touches">harborough</dd>', shown)
    assert "Opening times of harborough change" in shown
    assert "Opening times of charnwood change" not in shown
    status, where = await _post(web_client, "/plans/publish", csrf, text=SHORT_DAY, comment="short Tuesday")
    assert where == "/plans?published=2"

    version = await (await web_client.get("/plans/2")).text()
    assert "Against version 1" in version
    assert "No difference" not in version.split("Against version 1", 1)[1].split("</table>", 1)[0]
    old = await (await web_client.get("/plans/1")).text()
    assert "Against the live version 2" in old
    assert 'id="rollback"' in old

    status, shown = await _post(web_client, "/plans/1/rollback/confirm", csrf, comment="")
    assert status == 422
    status, shown = await _post(web_client, "/plans/1/rollback/confirm", csrf, comment="back to the full day")
    assert status == 200
    assert "Roll back to version 1 now?" in shown
    assert (await plan_store.live(web_redis)) is not None
    assert (await plan_store.live(web_redis)).version == 2  # type: ignore[union-attr]
    status, where = await _post(web_client, "/plans/1/rollback", csrf, comment="back to the full day")
    assert (status, where) == (303, "/plans?rolledback=1")
    live = await plan_store.live(web_redis)
    assert live is not None
    assert (live.version, live.generation) == (1, 3)
    assert "Rolled back: version 1 is live again" in await (await web_client.get(where)).text()


async def test_the_page_refuses_who_may_not_and_needs_csrf(
    web_client: Client, web_store: IdentityStore, web_redis: Redis
) -> None:
    await plan_store.publish(web_redis, EXAMPLE, "chief", "first", datetime.now(UTC))
    answer = await web_client.get("/plans", allow_redirects=False)
    assert (answer.status, answer.headers["Location"]) == (303, "/login")

    await add_user(web_store, "sup", {"harborough": {"supervisor"}})
    await add_user(web_store, "harb", {"harborough": {"engineer"}})
    await login(web_client, "sup")
    refused = await web_client.get("/plans")
    assert refused.status == 403
    assert "sup is not an engineer of any tenant." in await refused.text()

    csrf = await login(web_client, "harb")
    status, shown = await _post(web_client, "/plans/check", csrf, text=CHARNWOOD_RENAMED)
    assert status == 200
    assert "You cannot publish this plan: it changes charnwood" in shown
    status, shown = await _post(web_client, "/plans/publish", csrf, text=CHARNWOOD_RENAMED, comment="x")
    assert status == 200  # the preview again, with the refusal
    assert "You cannot publish this plan" in shown
    status, _ = await _post(web_client, "/plans/publish", "wrong-token", text=SHORT_DAY, comment="x")
    assert status == 403
    status, shown = await _post(web_client, "/plans/1/rollback/confirm", csrf, comment="x")
    assert status == 403
    assert "Only an engineer of every council (*) may roll back" in shown
    assert "Roll back to version" not in await (await web_client.get("/plans")).text()
    live = await plan_store.live(web_redis)
    assert live is not None
    assert live.version == 1


async def test_the_service_serves_the_pages_stylesheet_and_scripts(web_client: Client) -> None:
    for path, kind in (("/static/app.css", "text/css"), ("/static/vendor/htmx/htmx.min.js", "javascript")):
        answer = await web_client.get(path)
        assert answer.status == 200, path
        assert kind in answer.headers["Content-Type"]
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert (await web_client.get("/static/../web/app.py")).status in (403, 404)


async def test_a_form_part_with_a_header_that_cannot_be_read_is_a_400(
    web_client: Client, web_store: IdentityStore
) -> None:
    await add_user(web_store, "chief", {"*": {"engineer"}})
    token = await make_token(web_store, "chief")
    boundary = "b0undary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="'.encode()
        + b"U\xf1\x83\x9e\xbbu\x0e"  # found by schemathesis: a control character in a part's header
        + f'"\r\n\r\n-76\r\n--{boundary}--\r\n'.encode()
    )
    answer = await web_client.post(
        "/plans/check",
        data=body,
        headers={**bearer(token), "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert answer.status == 400
    assert "the form cannot be read" in await answer.text()
