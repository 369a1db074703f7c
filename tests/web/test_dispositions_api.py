"""A disposition over HTTP with a controller running on the same Redis: the web service queues it,
the controller's record pump applies it in its builder (as the AMI ``CallDisposition``), the
request's status says which version carries it; the same Idempotency-Key again is one request."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from routing.redis_keys import KEYS
from tests.records.support import CENTRE
from tests.records.test_appender import entries
from tests.records.test_dispositions import controller
from tests.records.test_outbox import T0, Clock, arrive, hang_up
from tests.support.web import add_user, bearer, make_token
from tests.web.records_rig import DAY, records_app, sample_records
from web.identity import IdentityStore

Client = TestClient[web.Request, web.Application]
HARBOROUGH = "/api/v1/tenants/harborough"
CALL = "1795533337.1"


@pytest.fixture
async def client(web_redis: Redis, tmp_path: Path) -> AsyncIterator[Client]:
    # the web service's clock a little before the controller's (T0 + 5.1: after the hang-up)
    app = records_app(web_redis, tmp_path / "archive", sample_records(DAY), clock=lambda: _at(T0 + 5.1))
    async with TestClient(TestServer(app, host="127.0.0.1")) as made:
        yield made


def _at(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


async def supervisor(store: IdentityStore) -> dict[str, str]:
    await add_user(store, "hsup", {"harborough": {"supervisor"}})
    return bearer(await make_token(store, "hsup"))


async def test_posted_after_version_1_before_the_archive_the_controller_makes_version_2(
    client: Client, web_store: IdentityStore, web_redis: Redis
) -> None:
    clock = Clock()
    pump, sink, inbox = controller(web_redis, KEYS, "ctl-a", clock)
    arrive(pump, CALL, T0)
    hang_up(pump, CALL, T0 + 5)
    clock.now = T0 + 5.6
    assert await pump.flush_due() == 1  # version 1 in the stream; nothing archived
    headers = {**await supervisor(web_store), "Idempotency-Key": "desktop-7f3a-1"}
    path = f"{HARBOROUGH}/records/{CALL}/disposition"
    chasing = {"kind": "avoidable", "reason": "chasing-progress"}
    answer = await client.post(path, json=chasing, headers=headers)
    assert answer.status == 202, await answer.text()  # not 404, not 409: the record is on its way
    posted = await answer.json()
    location = answer.headers["Location"]
    for step in range(10):  # the pump's rounds
        clock.now = T0 + 5.7 + step * 0.2
        await pump.flush_due()
    status = await (await client.get(location, headers=headers)).json()
    assert (status["status"], status["version"], status["changed"]) == ("applied", 2, True)
    assert inbox.applied == 1
    found = [(v, p) for rid, v, p in await entries(web_redis, KEYS) if rid == CALL]
    assert [v for v, _ in found] == [1, 2]
    assert found[1][1]["disposition"]["reason"] == "chasing-progress"  # type: ignore[index]
    assert found[1][1]["disposition"]["by"] == "hsup"  # type: ignore[index]
    # the same key again (the desktop retried): the same request, as it stands; no new entry
    again = await client.post(path, json=chasing, headers=headers)
    assert again.status == 202
    body = await again.json()
    assert (body["request"], body["status"], body["version"]) == (posted["request"], "applied", 2)
    assert await web_redis.xlen(KEYS.record_dispositions(CENTRE)) == 1
    # the same key for another disposition is refused
    other = await client.post(path, json={"kind": "complaint"}, headers=headers)
    assert other.status == 409
    for step in range(3):
        clock.now = T0 + 8 + step * 0.6
        await pump.flush_due()
    assert [v for rid, v, _ in await entries(web_redis, KEYS) if rid == CALL] == [1, 2]
    assert sink.already_in == 0


async def test_the_status_is_for_the_tenants_viewers(client: Client, web_store: IdentityStore) -> None:
    headers = await supervisor(web_store)
    path = f"{HARBOROUGH}/records/{CALL}/disposition"
    answer = await client.post(path, json={"kind": "resolved"}, headers=headers)
    location = answer.headers["Location"]
    assert (await client.get(location)).status == 401
    await add_user(web_store, "cview", {"charnwood": {"viewer"}})
    assert (await client.get(location, headers=bearer(await make_token(web_store, "cview")))).status == 403
    elsewhere = location.replace("/harborough/", "/charnwood/")
    await add_user(web_store, "cv2", {"charnwood": {"viewer"}})
    assert (await client.get(elsewhere, headers=bearer(await make_token(web_store, "cv2")))).status == 404
    assert (await client.get(f"{HARBOROUGH}/dispositions/not-a-request", headers=headers)).status == 404
    bad_key = {**headers, "Idempotency-Key": "has a space"}
    refused = await client.post(path, json={"kind": "resolved"}, headers=bad_key)
    assert refused.status == 400
