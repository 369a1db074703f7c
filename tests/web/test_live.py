"""Live over HTTP against the real app, a real Redis and the real AMI consumer fed by the fake AMI:
the snapshot per viewer, the event streams (JSON and HTML fragments), their limits and errors."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from tests.support.live_web import GENERAL, GENERAL_REGION, GENERAL_TILE, LiveRig, live_config, live_rig
from tests.support.redis_server import RedisServer
from tests.support.web import add_user, bearer, login, make_token, store_for, web_test_app
from tests.web.conftest import WEB_DB
from web.context import WebConfig

Client = TestClient[web.Request, web.Application]
STREAM = {"Accept": "text/event-stream"}


@pytest.fixture
async def rig(web_redis: Redis, redis_server: RedisServer) -> AsyncIterator[LiveRig]:
    async with live_rig(f"redis://{redis_server.host}:{redis_server.port}/{WEB_DB}") as made:
        yield made


async def client_for(rig: LiveRig, config: WebConfig | None = None) -> Client:
    client: Client = TestClient(
        TestServer(web_test_app(rig.redis, config=config or live_config()), host="127.0.0.1")
    )
    await client.start_server()
    return client


async def read_event(response: ClientResponse, timeout_s: float = 3.0) -> dict[str, Any]:
    """The next event (comments and ``retry:`` skipped): its fields, ``data`` joined."""
    fields: dict[str, Any] = {}
    data: list[str] = []
    async with asyncio.timeout(timeout_s):
        while True:
            raw = await response.content.readline()
            if not raw:
                raise EOFError("the stream ended")
            line = raw.decode().rstrip("\n")
            if not line:
                if data or "event" in fields:
                    fields["data"] = "\n".join(data)
                    return fields
                fields = {}
                continue
            if line.startswith(":"):
                fields.setdefault("comments", 0)
                continue
            name, _, value = line.partition(": ")
            if name == "data":
                data.append(value)
            else:
                fields[name] = value


async def test_a_viewer_sees_only_their_councils_tiles(rig: LiveRig) -> None:
    store = store_for(rig.redis)
    await add_user(store, "cv", {"charnwood": {"viewer"}})
    await add_user(store, "hv", {"harborough": {"viewer"}})
    client = await client_for(rig)
    try:
        mine = await client.get("/api/v1/live", headers=bearer(await make_token(store, "cv")))
        assert mine.status == 200
        tiles = (await mine.json())["tiles"]
        assert GENERAL_TILE in tiles
        assert tiles[GENERAL_TILE]["logged_in"] == 1
        assert {t.get("tenant") for t in tiles.values()} == {"charnwood", None}
        assert {"feed", "plan", "controllers", "tenant:charnwood"} <= set(tiles)
        assert not any(tid.startswith("queue:harborough/") for tid in tiles)
        theirs = await client.get("/api/v1/live", headers=bearer(await make_token(store, "hv")))
        other = (await theirs.json())["tiles"]
        assert GENERAL_TILE not in other
        assert "tenant:harborough" in other
        assert "tenant:charnwood" not in other
    finally:
        await client.close()


async def test_unauthenticated_or_no_council_is_refused(rig: LiveRig) -> None:
    store = store_for(rig.redis)
    await add_user(store, "nobody", {"barnet": {"viewer"}})  # a council not in the plan
    client = await client_for(rig)
    try:
        for path in ("/api/v1/live", "/api/v1/live/events"):
            answer = await client.get(path, headers=STREAM)
            assert answer.status == 401
            assert answer.content_type == "application/problem+json"
        page = await client.get("/live", allow_redirects=False)
        assert (page.status, page.headers["Location"]) == (303, "/login")
        refused = await client.get("/api/v1/live", headers=bearer(await make_token(store, "nobody")))
        assert refused.status == 403
        assert "not a viewer of any council" in (await refused.json())["detail"]
    finally:
        await client.close()


async def test_the_stream_starts_with_a_snapshot_then_a_caller_joining_arrives(rig: LiveRig) -> None:
    store = store_for(rig.redis)
    await add_user(store, "cv", {"charnwood": {"viewer"}})
    client = await client_for(rig)
    try:
        headers = {**STREAM, **bearer(await make_token(store, "cv")), "Last-Event-ID": "12"}
        async with client.get("/api/v1/live/events", headers=headers) as stream:
            assert stream.status == 200
            assert stream.headers["Content-Type"] == "text/event-stream"
            assert (await stream.content.readline()) == b"retry: 2000\n"
            first = await read_event(stream)
            assert first["event"] == "snapshot"
            snapshot = json.loads(first["data"])
            assert int(first["id"]) == snapshot["id"]
            assert snapshot["tiles"][GENERAL_TILE]["waiting"] == 0
            assert "tenant:harborough" not in snapshot["tiles"]
            rig.fake.caller_joins(GENERAL)
            while True:  # other tiles (the AMI age) may change first
                event = await read_event(stream, timeout_s=1.0)
                assert event["event"] == "changes"
                assert int(event["id"]) > int(first["id"])
                changed = json.loads(event["data"])["changed"]
                assert all(t.get("tenant", "charnwood") == "charnwood" for t in changed.values())
                if GENERAL_TILE in changed:
                    assert changed[GENERAL_TILE]["waiting"] == 1
                    break
    finally:
        await client.close()


async def test_the_html_stream_sends_the_tile_body_of_the_queue_that_changed(rig: LiveRig) -> None:
    store = store_for(rig.redis)
    await add_user(store, "cv", {"charnwood": {"viewer"}})
    client = await client_for(rig)
    try:
        csrf = await login(client, "cv")
        assert csrf
        async with client.get("/api/v1/live/events?format=html", headers=STREAM) as stream:
            names = set()
            while GENERAL_REGION not in names:
                event = await read_event(stream)
                names.add(event["event"])
                if event["event"] == GENERAL_REGION:
                    assert "<dt>Waiting</dt><dd>0</dd>" in event["data"]
            rig.fake.caller_joins(GENERAL)
            rig.fake.caller_joins(GENERAL)
            while True:
                event = await read_event(stream, timeout_s=1.0)
                if event["event"] == GENERAL_REGION and "<dt>Waiting</dt><dd>2</dd>" in event["data"]:
                    break
        page = await client.get("/live")
        assert page.status == 200
        html = await page.text()
        assert 'sse-connect="/api/v1/live/events?format=html"' in html
        assert f'id="{GENERAL_REGION}"' in html
        assert f'sse-swap="{GENERAL_REGION}"' in html
        assert "<dt>Waiting</dt><dd>2</dd>" in html
    finally:
        await client.close()


async def test_stream_limits_age_heartbeat_and_errors(rig: LiveRig) -> None:
    store = store_for(rig.redis)
    await add_user(store, "a", {"charnwood": {"viewer"}})
    await add_user(store, "b", {"charnwood": {"viewer"}})
    a, b = bearer(await make_token(store, "a")), bearer(await make_token(store, "b"))
    config = live_config(
        live_streams_per_user=1, live_streams_max=2, live_heartbeat_s=0.1, live_stream_max_s=60
    )
    client = await client_for(rig, config)
    try:
        assert (await client.get("/api/v1/live/events", headers=a)).status == 406  # Accept: */*
        bad = await client.get("/api/v1/live/events?format=xml", headers={**STREAM, **a})
        assert bad.status == 422
        async with client.get("/api/v1/live/events", headers={**STREAM, **a}) as first:
            assert first.status == 200
            again = await client.get("/api/v1/live/events", headers={**STREAM, **a})
            assert again.status == 429
            assert again.headers["Retry-After"]
            async with client.get("/api/v1/live/events", headers={**STREAM, **b}) as second:
                assert second.status == 200
                await add_user(store, "c", {"charnwood": {"viewer"}})
                full = await client.get(
                    "/api/v1/live/events", headers={**STREAM, **bearer(await make_token(store, "c"))}
                )
                assert full.status == 503
            beats = 0
            async with asyncio.timeout(3):
                while beats < 2:
                    beats += (await first.content.readline()) == b": keep-alive\n"
        async with client.get("/api/v1/live/events", headers={**STREAM, **a}) as reopened:
            assert reopened.status == 200  # the closed stream was counted out
    finally:
        await client.close()


async def test_a_stream_ends_after_its_age_limit(rig: LiveRig) -> None:
    store = store_for(rig.redis)
    await add_user(store, "a", {"charnwood": {"viewer"}})
    client = await client_for(rig, live_config(live_stream_max_s=0.5))
    try:
        headers = {**STREAM, **bearer(await make_token(store, "a"))}
        async with client.get("/api/v1/live/events", headers=headers) as stream:
            async with asyncio.timeout(3):
                body = await stream.read()  # ends by itself
            assert b"event: snapshot" in body
    finally:
        await client.close()


async def test_without_a_plan_the_live_view_is_unavailable(web_redis: Redis) -> None:
    store = store_for(web_redis)
    await add_user(store, "a", {"charnwood": {"viewer"}})
    client: Client = TestClient(TestServer(web_test_app(web_redis, config=live_config(plan_path=None))))
    await client.start_server()
    try:
        answer = await client.get("/api/v1/live", headers=bearer(await make_token(store, "a")))
        assert answer.status == 503
        assert "no plan" in (await answer.json())["detail"]
    finally:
        await client.close()


async def test_open_streams_end_at_once_when_the_service_stops(rig: LiveRig) -> None:
    store = store_for(rig.redis)
    await add_user(store, "a", {"charnwood": {"viewer"}})
    headers = {**STREAM, **bearer(await make_token(store, "a"))}
    runner = web.AppRunner(web_test_app(rig.redis, config=live_config()), shutdown_timeout=30)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/api/v1/live/events"
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as stream:
        assert (await read_event(stream))["event"] == "snapshot"
        started = time.monotonic()
        await runner.cleanup()
        assert time.monotonic() - started < 5  # not the 30 s a server waits for open requests
        while (event := await read_event(stream))["event"] != "resync":
            pass
        assert json.loads(event["data"])["reason"] == "the live feed stopped"
