"""The callbacks API against a real Redis and the real app: who may list and cancel, the
caller's number masked, bad input refused, the cancel audited, an ended callback not cancelled."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from records.dispositions import Request
from routing.callbacks import claim, load_callback, request_callback
from routing.core.callback import CallbackRequest
from routing.core.plan import CallbackPolicy
from routing.redis_keys import KEYS
from tests.web.records_rig import example_plan, records_app
from tests.web.test_toggles import client_for, publish_plan, tokens
from web.identity import IdentityStore

Client = TestClient[web.Request, web.Application]
LIST = "/api/v1/tenants/harborough/callbacks"


@pytest.fixture
async def client(web_redis: Redis) -> AsyncIterator[Client]:
    await publish_plan(web_redis)
    async for c in client_for(web_redis):
        yield c


async def callback(redis: Redis, call_id: str, joined_ago: float, tenant: str = "harborough") -> str:
    now = time.time()
    await redis.sadd(KEYS.known_queues(), "hdc-revenues")
    req = CallbackRequest(tenant, "revenues", "+441632960123", now - joined_ago, now, call_id, "en")
    return await request_callback(redis, KEYS, req, CallbackPolicy(), now, asterisk_queue="hdc-revenues")


@pytest.mark.parametrize(
    ("user", "may_list", "may_cancel"),
    [
        ("viewer", True, False),
        ("sup", True, True),
        ("eng", True, False),
        ("other", False, False),
        ("admin", True, True),
    ],
)
async def test_viewers_list_supervisors_cancel_with_a_reason_audited(
    *, client: Client, web_store: IdentityStore, web_redis: Redis, user: str, may_list: bool, may_cancel: bool
) -> None:
    later = await callback(web_redis, "rec-2", joined_ago=100)
    first = await callback(web_redis, "rec-1", joined_ago=600)
    await callback(web_redis, "rec-9", joined_ago=50, tenant="charnwood")  # another council's
    headers = (await tokens(web_store))[user]
    listed = await client.get(LIST, headers=headers)
    assert listed.status == (200 if may_list else 403), await listed.text()
    if may_list:
        rows = (await listed.json())["callbacks"]
        assert [(r["id"], r["position"], r["state"]) for r in rows] == [
            (first, 1, "pending"),
            (later, 2, "pending"),
        ]
        assert rows[0]["number"] == "**********123"  # masked
        assert rows[0]["call_id"] == "rec-1"
    cancelled = await client.post(
        f"{LIST}/{first}/cancel", json={"reason": "resident rang back"}, headers=headers
    )
    assert cancelled.status == (200 if may_cancel else 403), await cancelled.text()
    stored = await load_callback(web_redis, KEYS, first)
    assert stored is not None
    if not may_cancel:
        assert stored.state == "pending"
        return
    assert (await cancelled.json())["was"] == "pending"
    assert (await cancelled.json())["recorded"] is False  # this service keeps no records
    assert (stored.state, stored.outcome, stored.fields["cancelled_by"]) == ("cancelled", "cancelled", user)
    trail = (await (await client.get("/api/v1/tenants/harborough/audit", headers=headers)).json())["entries"]
    assert (trail[0]["what"], trail[0]["by"], trail[0]["reason"]) == (
        "callback.cancel",
        user,
        "resident rang back",
    )
    again = await client.post(f"{LIST}/{first}/cancel", json={"reason": "twice"}, headers=headers)
    assert again.status == 409
    rows = (await (await client.get(LIST, headers=headers)).json())["callbacks"]
    assert [r["id"] for r in rows] == [later]


async def test_bad_cancels_are_refused_and_change_nothing(
    client: Client, web_store: IdentityStore, web_redis: Redis
) -> None:
    every = await tokens(web_store)
    headers = every["sup"]
    ident = await callback(web_redis, "rec-1", joined_ago=600)
    other = await callback(web_redis, "rec-9", joined_ago=50, tenant="charnwood")
    for body, status in (
        ({}, 422),
        ({"reason": ""}, 422),
        ({"reason": "x" * 501}, 422),
        ({"reason": "ok", "extra": 1}, 422),
        ({"reason": "a\x1b[2Jb"}, 422),
    ):
        answer = await client.post(f"{LIST}/{ident}/cancel", json=body, headers=headers)
        assert answer.status == status, (body, await answer.text())
    missing = await client.post(
        f"{LIST}/cb-00000000000000000000/cancel", json={"reason": "x"}, headers=headers
    )
    assert missing.status == 404
    foreign = await client.post(f"{LIST}/{other}/cancel", json={"reason": "x"}, headers=headers)
    assert foreign.status == 404  # Charnwood's callback is not Harborough's to cancel
    bad_id = await client.post(f"{LIST}/..%2Fx/cancel", json={"reason": "x"}, headers=headers)
    assert bad_id.status == 404
    unknown = await client.get("/api/v1/tenants/leicester/callbacks", headers=every["admin"])
    assert unknown.status == 404
    for ident_ in (ident, other):
        stored = await load_callback(web_redis, KEYS, ident_)
        assert stored is not None
        assert stored.state == "pending"


async def test_a_callback_being_dialled_is_listed_and_can_be_cancelled(
    client: Client, web_store: IdentityStore, web_redis: Redis
) -> None:
    headers = (await tokens(web_store))["sup"]
    ident = await callback(web_redis, "rec-1", joined_ago=600)
    await web_redis.set(KEYS.ami_writer_lease(), "ctl-a")
    assert await claim(web_redis, KEYS, ident, "ctl-a", time.time()) == 1
    rows = (await (await client.get(LIST, headers=headers)).json())["callbacks"]
    assert rows[0]["state"] == "dialling"
    answer = await client.post(f"{LIST}/{ident}/cancel", json={"reason": "wrong number"}, headers=headers)
    assert (answer.status, (await answer.json())["was"]) == (200, "dialling")


async def test_with_contact_records_a_cancel_goes_to_the_calls_record(
    web_redis: Redis, web_store: IdentityStore, tmp_path: Path
) -> None:
    """Where the service has contact records, the cancel (the attempts so far, ``outcome:
    cancelled``) goes on the centre's dispositions stream for the call's record, as a late
    disposition does; a call id that is no record's (no Linkedid) is left alone."""
    await publish_plan(web_redis)
    app = records_app(web_redis, tmp_path / "archive", [], clock=lambda: datetime.now(UTC))
    headers = (await tokens(web_store))["sup"]
    ident = await callback(web_redis, "1795600000.42", joined_ago=600)
    no_record = await callback(web_redis, "not-a-linkedid", joined_ago=300)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        recorded = []
        for which in (ident, no_record):
            answer = await client.post(
                f"{LIST}/{which}/cancel", json={"reason": "rang back"}, headers=headers
            )
            assert answer.status == 200, await answer.text()
            recorded.append((await answer.json())["recorded"])
    assert recorded == [True, False]
    entries = await web_redis.xrange(KEYS.record_dispositions(example_plan().centre))
    assert len(entries) == 1
    asked = Request.from_json(entries[0][1][b"q"])
    assert (asked.request_id, asked.record_id, asked.tenant) == (
        f"callback-{ident}",
        "1795600000.42",
        "harborough",
    )
    assert asked.callback is not None
    assert json.loads(asked.callback)["outcome"] == "cancelled"
