"""The toggles API and pages against a real Redis and the real app: who may do what, the
confirmation step, bad input, the audit trail, and a toggle set through the API obeyed by a
controller on the wire while a raw Redis write beside it is not."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from jsonschema import Draft202012Validator
from redis.asyncio import Redis
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from ivr.controller import PlanHolder
from routing import plan_store
from routing.core.live import Toggle
from routing.redis_keys import KEYS
from routing.supervisor import facts_json, plan_facts, toggle_from_json, when
from routing.toggle_mac import ToggleKeyring
from tests.controller.conftest import EXAMPLE
from tests.scenarios.test_toggles_and_outages import start_centre, stop_centre
from tests.support.toggle_keys import KEYRING
from tests.support.web import TEST_CONFIG, add_user, bearer, login, make_token, web_test_app
from web.identity import IdentityStore

Client = TestClient[web.Request, web.Application]
PLAN = PlanHolder.load(EXAMPLE).current.plan
LONDON = PLAN.tenants["harborough"].zone()
TOGGLES = "/api/v1/tenants/harborough/toggles"
EMERGENCY = TOGGLES + "/emergency"
FLOOD = {"on": True, "reason": "Flooding in Market Harborough", "expires": "2h"}


async def publish_plan(redis: Redis) -> None:
    """What a running controller publishes: the councils of the plan in force."""
    await redis.set(KEYS.plan_in_force(), facts_json(plan_facts(PLAN), str(EXAMPLE), 1, datetime.now(UTC)))


@dataclasses.dataclass
class Clock:
    at: datetime

    def __call__(self) -> datetime:
        return self.at


async def client_for(
    redis: Redis, keyring: ToggleKeyring | None = KEYRING, clock: Clock | None = None
) -> AsyncIterator[Client]:
    config = dataclasses.replace(TEST_CONFIG, toggle_keyring=keyring)
    app = web_test_app(redis, config=config, **({"clock": clock} if clock else {}))
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield client


@pytest.fixture
async def client(web_redis: Redis) -> AsyncIterator[Client]:
    await publish_plan(web_redis)
    async for c in client_for(web_redis):
        yield c


ROLES: dict[str, dict[str, set[str]]] = {
    "viewer": {"harborough": {"viewer"}},
    "sup": {"harborough": {"supervisor"}},
    "eng": {"harborough": {"engineer"}},
    "engsup": {"harborough": {"engineer", "supervisor"}},
    "other": {"charnwood": {"supervisor"}},
    "admin": {"*": {"admin"}},
}


async def tokens(store: IdentityStore) -> dict[str, dict[str, str]]:
    found = {}
    for user, roles in ROLES.items():
        await add_user(store, user, roles)
        found[user] = bearer(await make_token(store, user))
    return found


async def stored_keys(redis: Redis) -> list[bytes]:
    return sorted(k for k in await redis.keys(KEYS.toggle("*", "*")))


@pytest.mark.parametrize(
    ("user", "may_view", "may_toggle"),
    [
        ("viewer", True, False),
        ("sup", True, True),
        ("eng", True, False),  # engineers change plans, not toggles (docs/web.md's roles)
        ("engsup", True, True),
        ("other", False, False),  # a supervisor of Charnwood: not Harborough
        ("admin", True, True),
    ],
)
async def test_each_role_does_exactly_what_it_may(
    *, client: Client, web_store: IdentityStore, web_redis: Redis, user: str, may_view: bool, may_toggle: bool
) -> None:
    headers = (await tokens(web_store))[user]
    listed = await client.get(TOGGLES, headers=headers)
    assert listed.status == (200 if may_view else 403), await listed.text()
    trail = await client.get("/api/v1/tenants/harborough/audit", headers=headers)
    assert trail.status == (200 if may_view else 403)
    changed = await client.post(EMERGENCY, json={**FLOOD, "confirm": True}, headers=headers)
    assert changed.status == (200 if may_toggle else 403), await changed.text()
    if may_toggle:
        assert (await changed.json())["on"] is True
        entry = (await (await client.get("/api/v1/tenants/harborough/audit", headers=headers)).json())[
            "entries"
        ][0]
        assert (entry["by"], entry["what"]) == (user, "toggle.emergency.on")  # the identity, not a typed name
    else:
        assert "supervisor" in (await changed.json())["detail"]
        assert await stored_keys(web_redis) == []


async def test_nothing_changes_until_confirmed_and_the_preview_says_what_would(
    client: Client, web_store: IdentityStore, web_redis: Redis
) -> None:
    headers = (await tokens(web_store))["sup"]
    preview = await client.post(EMERGENCY, json=FLOOD, headers=headers)
    assert preview.status == 409
    assert preview.content_type == "application/problem+json"
    body = await preview.json()
    shown = body["preview"]
    assert (shown["kind"], shown["tenant"], shown["on"], shown["reason"]) == (
        "emergency", "harborough", True, "Flooding in Market Harborough"
    )  # fmt: skip
    expires = datetime.fromisoformat(shown["expires_at"])
    assert timedelta(hours=1, minutes=59) < expires - datetime.now(UTC) <= timedelta(hours=2)
    assert shown["expires_local"] == when(expires, LONDON)  # with its date, in the council's zone
    assert re.match(r"^\w{3} \d\d \w{3} \d{4} \d\d:\d\d (GMT|BST)$", shown["expires_local"])
    assert shown["previous"] is None
    assert "confirm" in body["detail"]
    assert await stored_keys(web_redis) == []
    assert await web_redis.xlen(KEYS.audit_stream()) == 0

    done = await client.post(EMERGENCY, json={**FLOOD, "confirm": True}, headers=headers)
    assert done.status == 200
    result = await done.json()
    assert result["previous"] is None
    assert result["expires_local"]
    stored = toggle_from_json(await web_redis.get(KEYS.toggle("emergency", "harborough")))
    assert (stored.by, stored.reason) == ("sup", "Flooding in Market Harborough")

    again = await client.post(EMERGENCY, json={**FLOOD, "expires": "1d"}, headers=headers)
    assert again.status == 409
    previous = (await again.json())["preview"]["previous"]
    assert (previous["by"], previous["expires_at"]) == ("sup", result["expires_at"])

    state = await (await client.get(TOGGLES, headers=headers)).json()
    assert state["in_force"]["emergency"]["by"] == "sup"
    assert state["ignored"] == {}

    off = {"on": False, "reason": "Water receded", "confirm": True}
    switched = await client.post(EMERGENCY, json=off, headers=headers)
    assert switched.status == 200
    assert (await switched.json())["previous"]["reason"] == "Flooding in Market Harborough"
    assert await stored_keys(web_redis) == []


@pytest.mark.parametrize(
    ("path", "body", "status", "words"),
    [
        (EMERGENCY, {**FLOOD, "reason": "flood\x1b[2J"}, 422, "control character"),
        (EMERGENCY, {**FLOOD, "reason": "flood\nby: admin"}, 422, "control character"),
        (EMERGENCY, {**FLOOD, "reason": "x" * 501}, 422, "at most 500"),
        (EMERGENCY, {**FLOOD, "reason": "x" * 5000}, 422, "reason"),
        (EMERGENCY, {**FLOOD, "reason": "  "}, 422, "empty"),
        (EMERGENCY, {**FLOOD, "expires": "2020-01-01T10:00"}, 422, "in the past"),
        (EMERGENCY, {**FLOOD, "expires": "20d"}, 422, "more than 14 days"),
        (EMERGENCY, {**FLOOD, "expires": "soon"}, 422, "neither a duration"),
        (EMERGENCY, {**FLOOD, "expires": None}, 422, "give an expiry"),
        (EMERGENCY, {"on": False, "reason": "done", "expires": "2h"}, 422, "no expiry"),
        (EMERGENCY, {**FLOOD, "service": "nope"}, 422, "unknown service"),
        (EMERGENCY, {**FLOOD, "by": "someone else"}, 422, "by: Extra inputs"),
        (EMERGENCY, {"reason": "x"}, 422, "on: Field required"),
        (EMERGENCY, [1, 2], 422, "(body)"),
        ("/api/v1/tenants/nowhere/toggles/emergency", FLOOD, 404, "unknown tenant nowhere"),
        (TOGGLES + "/party", FLOOD, 404, "unknown toggle party"),
    ],
)
async def test_bad_requests_get_a_clear_4xx_and_change_nothing(
    *,
    client: Client,
    web_store: IdentityStore,
    web_redis: Redis,
    path: str,
    body: Any,
    status: int,
    words: str,
) -> None:
    headers = (await tokens(web_store))["admin"]
    answer = await client.post(path, json={**body, "confirm": True} if isinstance(body, dict) else body,
                               headers=headers)  # fmt: skip
    assert answer.status == status, await answer.text()
    assert words in (await answer.json())["detail"]
    assert await stored_keys(web_redis) == []
    assert await web_redis.xlen(KEYS.audit_stream()) == 0


async def test_malformed_json_and_other_media_types(client: Client, web_store: IdentityStore) -> None:
    headers = (await tokens(web_store))["sup"]
    broken = await client.post(
        EMERGENCY, data=b'{"on": true,', headers={**headers, "Content-Type": "application/json"}
    )
    assert broken.status == 400
    assert "malformed JSON" in (await broken.json())["detail"]
    form = await client.post(EMERGENCY, data={"on": "true"}, headers=headers)
    assert form.status == 415
    unknown = await client.get("/api/v1/tenants/nowhere/toggles", headers=headers)
    assert unknown.status == 403  # not a supervisor there: nothing said about whether it exists
    admin = await tokens_for(web_store, "admin2", {"*": {"admin"}})
    assert (await client.get("/api/v1/tenants/nowhere/toggles", headers=admin)).status == 404


async def tokens_for(store: IdentityStore, user: str, roles: dict[str, set[str]]) -> dict[str, str]:
    await add_user(store, user, roles)
    return bearer(await make_token(store, user))


async def test_cookie_sessions_need_the_csrf_token(
    client: Client, web_store: IdentityStore, web_redis: Redis
) -> None:
    await add_user(web_store, "sup", ROLES["sup"])
    csrf = await login(client, "sup")
    body = {**FLOOD, "confirm": True}
    missing = await client.post(EMERGENCY, json=body)
    assert missing.status == 403
    assert "CSRF" in (await missing.json())["detail"]
    wrong = await client.post(EMERGENCY, json=body, headers={"X-CSRF-Token": csrf[::-1]})
    assert wrong.status == 403
    assert await stored_keys(web_redis) == []
    right = await client.post(EMERGENCY, json=body, headers={"X-CSRF-Token": csrf})
    assert right.status == 200


async def test_without_the_toggle_key_the_toggles_answer_503(
    web_redis: Redis, web_store: IdentityStore
) -> None:
    await publish_plan(web_redis)
    headers = await tokens_for(web_store, "sup", ROLES["sup"])
    async for client in client_for(web_redis, keyring=None):
        for answer in [
            await client.get(TOGGLES, headers=headers),
            await client.post(EMERGENCY, json={**FLOOD, "confirm": True}, headers=headers),
        ]:
            assert answer.status == 503
            assert "toggle key is not configured" in (await answer.json())["detail"]
        assert (await client.get("/api/v1/tenants/harborough/audit", headers=headers)).status == 200


async def test_a_raw_redis_value_is_listed_as_ignored(
    client: Client, web_store: IdentityStore, web_redis: Redis
) -> None:
    headers = await tokens_for(web_store, "viewer", ROLES["viewer"])
    raw = json.dumps({"reason": "", "by": "x", "expires_at": "2099-01-01T00:00:00+00:00"})
    await web_redis.set(KEYS.toggle("closure", "harborough"), raw)
    state = await (await client.get(TOGGLES, headers=headers)).json()
    assert state["in_force"] == {}
    assert state["ignored"]["closure"]["reason"] == "unsigned"


async def test_the_audit_trail_pages_escapes_and_keeps_to_its_council(
    client: Client, web_store: IdentityStore, web_redis: Redis
) -> None:
    headers = (await tokens(web_store))["admin"]
    for n in range(5):
        tenant = "charnwood" if n == 2 else "harborough"
        body = {**FLOOD, "reason": f"reason {n}", "confirm": True}
        assert (
            await client.post(f"/api/v1/tenants/{tenant}/toggles/emergency", json=body, headers=headers)
        ).status == 200
    forged = json.dumps({"at": "x", "by": "admin\x1b[2K", "what": "toggle.closure.on", "tenant": "harborough",
                         "reason": "ok\r\nforged line"})  # fmt: skip
    await web_redis.xadd(KEYS.audit_stream(), {"entry": forged, "previous": "{"})
    page = await (await client.get("/api/v1/tenants/harborough/audit?count=2", headers=headers)).json()
    first, second = page["entries"]
    assert first["by"] == "admin\\x1b[2K"
    assert first["reason"] == "ok\\r\\nforged line"
    assert first["at_local"] is None
    assert second["reason"] == "reason 4"
    assert second["previous"]["reason"] == "reason 3"
    assert second["previous"]["expires_local"].endswith(("GMT", "BST"))
    assert second["expires_local"] == when(datetime.fromisoformat(second["expires_at"]), LONDON)
    rest = await (await client.get(
        f"/api/v1/tenants/harborough/audit?count=10&before={page['next_before']}", headers=headers
    )).json()  # fmt: skip
    assert [e["reason"] for e in rest["entries"]] == ["reason 3", "reason 1", "reason 0"]
    assert rest["next_before"] is None
    for query in ("count=0", "count=201", "count=x", "before=yesterday"):
        bad = await client.get(f"/api/v1/tenants/harborough/audit?{query}", headers=headers)
        assert bad.status == 422, query


async def test_a_toggle_set_through_the_api_is_obeyed_and_a_raw_write_beside_it_is_not(
    web_redis: Redis, web_store: IdentityStore
) -> None:
    """A controller on the wire (the emulator places the calls) reading the same Redis with the
    same key: emergency cover set through the API reroutes the next call within a second; a raw
    closure written beside it changes nothing."""
    await publish_plan(web_redis)
    centre, server, refresher = await start_centre(web_redis, KEYS)
    headers = await tokens_for(web_store, "sup", ROLES["sup"])
    try:
        assert (await centre.call("1")).startswith("route (open) -> menu main -> queue hdc-revenues")
        async for client in client_for(web_redis, clock=Clock(centre.clock[0])):
            answer = await client.post(EMERGENCY, json={**FLOOD, "confirm": True}, headers=headers)
            assert answer.status == 200, await answer.text()
        raw = Toggle("", "x", datetime(2099, 1, 1, tzinfo=UTC))
        await web_redis.set(
            KEYS.toggle("closure", "harborough"),
            json.dumps({"reason": raw.reason, "by": raw.by, "expires_at": raw.expires_at.isoformat()}),
        )
        async with asyncio.timeout(1.0):
            while not (summary := await centre.call("1")).startswith("route (emergency)"):
                await asyncio.sleep(0.02)
        assert summary.startswith("route (emergency) -> queue hdc-emergency")  # not closed
    finally:
        await stop_centre(server, refresher)


async def test_the_answers_match_their_openapi_schemas(
    client: Client, web_store: IdentityStore, web_redis: Redis
) -> None:
    """The answers the conformance test's generated requests rarely reach (a known council, the
    key configured, a change made) checked against the document the service serves."""
    spec = await (await client.get("/api/openapi.json")).json()
    registry = Registry().with_resource("urn:spec", DRAFT202012.create_resource(spec))

    def check(path: str, method: str, status: int, body: Any) -> None:
        response = spec["paths"][path][method]["responses"][str(status)]
        schema = next(iter(response["content"].values()))["schema"]
        wrapped = {"$schema": "https://json-schema.org/draft/2020-12/schema",
                   **json.loads(json.dumps(schema).replace('"#/', '"urn:spec#/'))}  # fmt: skip
        errors = list(Draft202012Validator(wrapped, registry=registry).iter_errors(body))
        assert errors == [], (path, status, [e.message for e in errors])

    headers = (await tokens(web_store))["sup"]
    emergency = "/api/v1/tenants/{tenant}/toggles/{kind}"
    check(emergency, "post", 409, await (await client.post(EMERGENCY, json=FLOOD, headers=headers)).json())
    body = {**FLOOD, "confirm": True}
    check(emergency, "post", 200, await (await client.post(EMERGENCY, json=body, headers=headers)).json())
    check(emergency, "post", 200, await (await client.post(EMERGENCY, json=body, headers=headers)).json())
    await web_redis.set(KEYS.toggle("closure", "harborough"), "raw")
    check(
        "/api/v1/tenants/{tenant}/toggles",
        "get",
        200,
        await (await client.get(TOGGLES, headers=headers)).json(),
    )
    trail = await (await client.get("/api/v1/tenants/harborough/audit?count=1", headers=headers)).json()
    assert trail["next_before"] is not None
    check("/api/v1/tenants/{tenant}/audit", "get", 200, trail)
    check("/api/v1/tenants", "get", 200, await (await client.get("/api/v1/tenants", headers=headers)).json())
    with pytest.raises(AssertionError):  # the check itself is not vacuous
        check(emergency, "post", 200, {"on": "yes"})


async def test_without_a_controller_the_councils_come_from_the_plan_store(
    web_redis: Redis, web_store: IdentityStore
) -> None:
    """No controller has published the plan in force yet: the live version in the plan store
    says which councils there are; with neither, every council is unknown (404)."""
    headers = await tokens_for(web_store, "sup", ROLES["sup"])
    async for client in client_for(web_redis):
        unknown = await client.get(TOGGLES, headers=headers)
        assert unknown.status == 404
        assert "no plan in force is known" in (await unknown.json())["detail"]
        await plan_store.publish(web_redis, EXAMPLE.read_text(), "eng", "first plan", datetime.now(UTC))
        listed = await client.get(TOGGLES, headers=headers)
        assert listed.status == 200
        assert (await listed.json())["zone"] == "Europe/London"
        changed = await client.post(EMERGENCY, json={**FLOOD, "confirm": True}, headers=headers)
        assert changed.status == 200
