"""The web service's ``/metrics``: who may read it, requests counted by route template with exact
values, and no label carrying what a client sent (a path segment, a token, a caller's number).

The registry is the process's own (``routing.metrics.REGISTRY``), shared by every test in the
run: each test compares two scrapes and checks the differences."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from tests.support.processes import kill_tree
from tests.support.redis_server import RedisServer, free_port
from tests.support.web import add_user, bearer, login_form_token, make_token, store_for, web_test_app
from tests.web import probe_feature
from web import live
from web.identity import IdentityStore

Client = TestClient[web.Request, web.Application]
CALLER = "07700900123"  # a caller's number, as a client might put it in a path


async def stream(_request: web.Request) -> web.StreamResponse:
    """A response the handler streams itself, as Server-Sent Events are."""
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(_request)
    await response.write(b"data: {}\n\n")
    await response.write_eof()
    return response


def setup(app: web.Application) -> None:
    app.router.add_get("/api/test-stream/{tenant}", stream)


async def scrape(client: Client, token: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    answer = await client.get("/metrics", headers=bearer(token))
    assert answer.status == 200, await answer.text()
    assert answer.headers["Content-Type"].startswith("text/plain; version=")
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(await answer.text()):
        for s in family.samples:
            samples[s.name, tuple(sorted(s.labels.items()))] = s.value
    return samples


def delta(
    before: dict[tuple[str, tuple[tuple[str, str], ...]], float],
    after: dict[tuple[str, tuple[tuple[str, str], ...]], float],
    prefix: str,
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The samples of names starting with ``prefix`` that moved, by how much."""
    moved = {}
    for key, value in after.items():
        if key[0].startswith(prefix) and value != before.get(key, 0.0):
            moved[key] = value - before.get(key, 0.0)
    return moved


def requests(route: str, method: str, status: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return "callrouter_web_requests_total", (("method", method), ("route", route), ("status", status))


def timed(route: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return "callrouter_web_request_seconds_count", (("route", route),)


async def users(store: IdentityStore) -> tuple[str, str]:
    """(a scraper's token: viewer of every tenant, a barnet supervisor's token)."""
    await add_user(store, "scraper", {"*": {"viewer"}})
    await add_user(store, "sup", {"barnet": {"supervisor"}})
    return await make_token(store, "scraper"), await make_token(store, "sup")


async def test_metrics_need_a_viewer_of_every_tenant(web_client: Client, web_store: IdentityStore) -> None:
    scraper, sup = await users(web_store)
    assert (await web_client.get("/metrics")).status == 401
    refused = await web_client.get("/metrics", headers=bearer(sup))
    assert refused.status == 403
    assert "every tenant" in (await refused.json())["detail"]
    assert (await web_client.get("/metrics", headers=bearer("not-a-token"))).status == 401
    text = await (await web_client.get("/metrics", headers=bearer(scraper))).text()
    assert "callrouter_web_requests_total" in text


async def test_live_streams_open_are_read_when_scraped(web_client: Client, web_store: IdentityStore) -> None:
    """``callrouter_web_sse_streams`` is what the live feature's stream limits count now."""
    scraper, _sup = await users(web_store)
    streams = web_client.app[live.LIVE].limits
    assert (await scrape(web_client, scraper))["callrouter_web_sse_streams", ()] == 0
    with streams.admit("sup"), streams.admit("sup"), streams.admit("scraper"):
        assert (await scrape(web_client, scraper))["callrouter_web_sse_streams", ()] == 3
    assert (await scrape(web_client, scraper))["callrouter_web_sse_streams", ()] == 0


async def test_requests_are_counted_by_route_template_with_exact_values(web_redis: Redis) -> None:
    app = web_test_app(web_redis, extra_features=(probe_feature, sys.modules[__name__]))
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        scraper, sup = await users(store_for(web_redis))
        before = await scrape(client, scraper)

        for _ in range(3):
            assert (await client.get("/api/test/barnet", headers=bearer(sup))).status == 200
        assert (await client.get(f"/api/test/camden-{CALLER}", headers=bearer(sup))).status == 403
        assert (await client.post("/api/test/barnet", json={"a": 1}, headers=bearer(sup))).status == 200
        assert (await client.get(f"/no/such/{CALLER}", headers=bearer(sup))).status == 404
        assert (await client.get(f"/api/test/barnet?caller={CALLER}", headers=bearer(sup))).status == 200
        assert (await client.get("/api/test-boom")).status == 500
        assert (await client.put("/api/test/barnet", headers=bearer(sup))).status == 405
        assert (await client.request("BREW", "/api/test/barnet")).status == 400  # refused by the parser
        assert (await client.get("/metrics", headers=bearer(sup))).status == 403
        assert (await client.get(f"/api/test-stream/{CALLER}")).status == 200
        # a failed login with a caller's number as the user name, then a good one (303, raised)
        form = await login_form_token(client)
        wrong = {"username": CALLER, "password": "wrong password here", "csrf_token": form}
        assert (await client.post("/login", data=wrong)).status == 401
        form = await login_form_token(client)
        good = {"username": "sup", "password": "correct horse battery staple", "csrf_token": form}
        assert (await client.post("/login", data=good, allow_redirects=False)).status == 303

        after = await scrape(client, scraper)

    moved = delta(before, after, "callrouter_web_requests_total")
    assert moved == {
        requests("/api/test/{tenant}", "GET", "2xx"): 4,  # the query string is not part of the route
        requests("/api/test/{tenant}", "GET", "4xx"): 1,
        requests("/api/test/{tenant}", "POST", "2xx"): 1,
        requests("unmatched", "GET", "4xx"): 1,
        requests("unmatched", "PUT", "4xx"): 1,  # a method the route does not take: 405
        requests("/api/test-boom", "GET", "5xx"): 1,
        requests("/api/test-stream/{tenant}", "GET", "2xx"): 1,
        requests("/metrics", "GET", "2xx"): 1,  # the first scrape (a scrape does not count itself)
        requests("/metrics", "GET", "4xx"): 1,
        requests("/login", "GET", "2xx"): 2,
        requests("/login", "POST", "4xx"): 1,
        requests("/login", "POST", "3xx"): 1,
    }
    durations = delta(before, after, "callrouter_web_request_seconds_count")
    assert durations[timed("/api/test/{tenant}")] == 6
    assert timed("/api/test-stream/{tenant}") not in durations  # streamed: counted, not timed
    assert durations[timed("/login")] == 4
    logins = delta(before, after, "callrouter_web_logins_total")
    assert logins == {
        ("callrouter_web_logins_total", (("outcome", "failed"),)): 1,
        ("callrouter_web_logins_total", (("outcome", "ok"),)): 1,
    }

    # no label value anywhere holds what the clients sent
    values = {v for _name, labels in after for _k, v in labels}
    for secret in (CALLER, scraper, sup, "camden", "/no/such", "BREW"):
        assert not [v for v in values if secret in v], secret
    routes = {v for (_name, labels) in {**moved, **durations} for k, v in labels if k == "route"}
    assert routes <= {r.resource.canonical for r in app.router.routes() if r.resource} | {"unmatched"}


def test_callrouter_web_opens_the_ops_listener_on_request(redis_server: RedisServer, tmp_path: Path) -> None:
    """``callrouter web --ops-port``: ``/metrics`` without a login on the ops listener (loopback),
    naming the process ``role="web"``; the service's own port still wants a token; SIGTERM
    stops both and the process exits 0."""
    port, ops_port = free_port(), free_port()
    redis_url = f"redis://{redis_server.host}:{redis_server.port}/13"
    env = {**os.environ, "CALLROUTER_REDIS": redis_url, "CALLROUTER_WEB_PORT": str(port),
           "CALLROUTER_WEB_COOKIE_SECURE": "false", "CALLROUTER_LOG_LEVEL": "warning"}  # fmt: skip
    argv = [sys.executable, "-m", "callrouter.cli", "web", "--ops-port", str(ops_port)]
    with (tmp_path / "web.log").open("w") as log:
        process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{ops_port}/ready", timeout=1) as ready:
                    assert json.load(ready) == {"ready": True, "missing": []}
                    break
            except OSError:
                assert process.poll() is None, (tmp_path / "web.log").read_text()
                assert time.monotonic() < deadline
                time.sleep(0.1)
        with urllib.request.urlopen(f"http://127.0.0.1:{ops_port}/metrics", timeout=5) as answer:
            text = answer.read().decode()
        info = next(f for f in text_string_to_metric_families(text) if f.name == "callrouter_info")
        assert info.samples[0].labels["role"] == "web"
        assert info.samples[0].labels["instance"].endswith(f":{port}")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5)
        assert refused.value.code == 401
        refused.value.close()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            kill_tree(process.pid)
            process.wait(timeout=5)
