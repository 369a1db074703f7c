"""The partner endpoint of ``callrouter web`` on a real redis-server: what it stores, what it
refuses (401, 400, 413) and what it logs (never the secret or the signature); and the
exchange over HTTPS with a certificate the sender checks."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from routing.core.live import QueueSnapshot
from routing.live.store import read_centre_snapshot, snapshot_json
from routing.partner_link import (
    SIGNATURE_HEADER,
    PartnerConfig,
    PartnerSecret,
    request_headers,
)
from routing.redis_keys import KEYS
from tests.support.certs import self_signed
from tests.support.redis_server import RedisServer, free_port
from tests.support.web import TEST_CONFIG, web_test_app
from web.partners import PATH, PartnerSender

DB = 12  # a database of the session's redis-server for these tests alone, emptied per test
SECRET = PartnerSecret(b"harborough-charnwood-partnership-test-only")
CONFIG = PartnerConfig(centre="charnwood", secrets={"harborough": SECRET}, urls={})
URL = PATH.format(centre="harborough")
Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = Redis(host=redis_server.host, port=redis_server.port, db=DB)
    await client.flushdb()
    yield client
    await client.aclose()


@pytest.fixture
async def client(redis: Redis) -> AsyncIterator[Client]:
    app = web_test_app(redis, config=replace(TEST_CONFIG, partners=CONFIG))
    async with TestClient(TestServer(app, host="127.0.0.1")) as test_client:
        yield test_client


def snapshot(available: int = 2, age_s: float = 0.5) -> bytes:
    observed = datetime.now(UTC) - timedelta(seconds=age_s)
    return snapshot_json(QueueSnapshot("hdc-team", 1, 12.5, 4, available, observed)).encode()


def signed(
    body: bytes, sequence: int, *, secret: PartnerSecret = SECRET, skew_s: float = 0.0
) -> dict[str, str]:
    now_s = datetime.now(UTC).timestamp() + skew_s
    return request_headers(
        secret, body, sender="harborough", receiver="charnwood", now_s=now_s, sequence=sequence
    )


async def post(client: Client, body: bytes, headers: dict[str, str], url: str = URL) -> tuple[int, str]:
    answer = await client.post(url, data=body, headers=headers)
    return answer.status, await answer.text()


async def test_a_signed_snapshot_is_stored_where_the_controllers_read_it(
    client: Client, redis: Redis
) -> None:
    body = snapshot(available=2, age_s=5)
    status, text = await post(client, body, signed(body, 1))
    assert status == 200, text
    stored = await read_centre_snapshot(redis, "harborough")
    assert stored is not None
    assert (stored.available, stored.logged_in, stored.queue) == (2, 4, "hdc-team")
    assert 20_000 < await redis.pttl(KEYS.centre_snapshot("harborough")) <= 25_000  # 30 s less its age
    assert int(await redis.get(KEYS.partner_sequence("harborough"))) == 1
    newer = snapshot(available=0)
    assert (await post(client, newer, signed(newer, 2)))[0] == 200
    assert (await read_centre_snapshot(redis, "harborough")).available == 0  # type: ignore[union-attr]


async def test_a_snapshot_already_stale_is_accepted_but_not_kept(client: Client, redis: Redis) -> None:
    body = snapshot(age_s=31)
    status, text = await post(client, body, signed(body, 1))
    assert status == 200, text
    assert '"stored": false' in text
    assert await read_centre_snapshot(redis, "harborough") is None


async def test_refusals_are_logged_without_the_secret_and_store_nothing(client: Client, redis: Redis) -> None:
    good = snapshot()
    assert (await post(client, good, signed(good, 100)))[0] == 200
    await redis.delete(KEYS.centre_snapshot("harborough"))
    other = PartnerSecret(b"not-the-partnership-secret-but-long-enough")
    tampered = {**signed(good, 101), SIGNATURE_HEADER: signed(good, 101)[SIGNATURE_HEADER][:-2] + "00"}
    bad_shape = b'{"queue":"hdc-team","waiting":-1}'
    cases = [
        ("wrong secret", good, signed(good, 101, secret=other), URL, 401),
        ("tampered", good, tampered, URL, 401),
        ("old timestamp", good, signed(good, 101, skew_s=-31), URL, 401),
        ("future timestamp", good, signed(good, 101, skew_s=31), URL, 401),
        ("replayed sequence", good, signed(good, 100), URL, 401),
        ("older sequence", good, signed(good, 99), URL, 401),
        ("no headers", good, {"Content-Type": "application/json"}, URL, 401),
        ("unknown partner", good, signed(good, 101), PATH.format(centre="melton"), 401),
        ("itself", good, signed(good, 101), PATH.format(centre="charnwood"), 401),
        ("bad shape", bad_shape, signed(bad_shape, 101), URL, 400),
        ("oversized", b"x" * 5000, signed(b"x" * 5000, 101), URL, 413),
    ]
    with structlog.testing.capture_logs() as logs:
        for name, body, headers, url, expected in cases:
            status, text = await post(client, body, headers, url)
            assert status == expected, (name, text)
            assert json.loads(text)["status"] == expected  # a problem body saying why
    assert await read_centre_snapshot(redis, "harborough") is None
    assert int(await redis.get(KEYS.partner_sequence("harborough"))) == 100
    refused = [e for e in logs if e["event"] == "partners.refused"]
    assert len(refused) == len(cases)
    assert {e["reason"] for e in refused} >= {"bad signature", "missing signature headers"}
    assert any("replayed" in e["reason"] for e in refused)
    everything = repr(logs)
    assert SECRET.value.decode() not in everything
    assert other.value.decode() not in everything
    assert signed(good, 101)[SIGNATURE_HEADER][7:20] not in everything


async def test_a_chunked_body_over_the_limit_is_refused_unread(client: Client) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"x" * 1000

    answer = await client.post(URL, data=chunks(), headers=signed(b"", 1))
    assert answer.status == 413


async def test_a_session_cookie_gives_nothing_here(client: Client) -> None:
    """The endpoint ignores cookies: no CSRF check to trip, and no session to lean on."""
    client.session.cookie_jar.update_cookies({TEST_CONFIG.session_cookie: "anything"})
    body = snapshot()
    assert (await post(client, body, signed(body, 1)))[0] == 200
    assert (await post(client, body, {"Content-Type": "application/json"}))[0] == 401


async def test_over_https_the_sender_checks_the_partners_certificate(
    redis: Redis, redis_server: RedisServer, tmp_path: Path
) -> None:
    cert, key = self_signed(tmp_path)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    app = web_test_app(redis, config=replace(TEST_CONFIG, partners=CONFIG))
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=tls).start()
    own = Redis(host=redis_server.host, port=redis_server.port, db=DB + 1)  # the sending centre's
    try:
        await own.flushdb()
        await own.set(KEYS.centre_snapshot("harborough"), snapshot(), px=30_000)
        base = PartnerConfig(
            centre="harborough",
            secrets={"charnwood": SECRET},
            urls={"charnwood": f"https://127.0.0.1:{port}"},
            interval_s=0.2,
            timeout_s=1.0,
        )
        for config, delivered in ((base, False), (replace(base, ca_file=cert), True)):
            await redis.delete(KEYS.centre_snapshot("harborough"), KEYS.partner_sequence("harborough"))
            await own.delete(KEYS.partner_sender_lease())
            sender = PartnerSender(config, own)
            task = asyncio.create_task(sender.run())
            await asyncio.sleep(0.7)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            assert (await read_centre_snapshot(redis, "harborough") is not None) is delivered
            assert bool(sender.stats.sent) is delivered
    finally:
        await own.aclose()
        await runner.cleanup()
