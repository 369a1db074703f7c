"""Two centres on loopback, each with its own redis-server, fake AMI, AMI consumer, controller
and web service: Harborough (A) and Charnwood (B, the example plan's centre, whose callers
overflow to Harborough's team while it publishes a free adviser).

Each AMI consumer publishes its own centre's snapshot into its own Redis; each web service
sends it, signed, to the other, whose web service stores it where its controller reads it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestServer
from redis.asyncio import Redis

from callrouter.service import rehearsal_clock
from callrouter.settings import SettingsError
from callrouter.settings import load as load_settings
from callrouter.web_cli import web_config
from emulator.agi import CallerScript, PressAfterPrompt
from emulator.ami import FakeAmi
from emulator.dialplan import place_call
from ivr.controller import Controller, PlanHolder
from ivr.fastagi import FastAgiServer, ServerConfig
from routing.ami.settings import AmiSettings
from routing.core.live import QueueSnapshot
from routing.live.source import CachedLiveSource
from routing.live.store import read_centre_snapshot, snapshot_json
from routing.partner_link import PartnerConfig, PartnerSecret
from routing.redis_keys import KEYS
from routing.withdrawer import ami_pipeline
from tests.controller.conftest import EXAMPLE, TUESDAY_10AM
from tests.support.redis_server import RedisServer, free_port, running_redis
from tests.support.web import TEST_CONFIG, web_test_app
from tests.support.web_process import running_web
from web.partners import SENDER, PartnerSender

CHARNWOOD = "01632960100"  # dialled for Charnwood's general line
A, B = "harborough", "charnwood"
SECRET = PartnerSecret(b"shared-by-harborough-and-charnwood-test-only")
STALE_S = 2.0  # short stale age, so "silent" becomes "stale" quickly


@dataclass
class Centre:
    name: str
    redis: Redis
    fake: FakeAmi
    url: str
    port: int  # FastAGI
    app: web.Application

    @property
    def sender(self) -> PartnerSender:
        return self.app[SENDER]


@pytest.fixture
def redis_pair() -> Iterator[tuple[RedisServer, RedisServer]]:
    with running_redis(max_lifetime_s=120) as one, running_redis(max_lifetime_s=120) as two:
        yield one, two


def partner_config(me: str, other: str, other_port: int) -> PartnerConfig:
    return PartnerConfig(
        centre=me,
        secrets={other: SECRET},
        urls={other: f"http://127.0.0.1:{other_port}"},
        interval_s=1.0,
        timeout_s=0.5,
        stale_age_s=STALE_S,
    )


@asynccontextmanager
async def centre(
    name: str, server: RedisServer, *, web_port: int, partner: str, partner_port: int, publish_queue: str
) -> AsyncIterator[Centre]:
    redis = Redis.from_url(server.url)
    fake = FakeAmi("callrouter", "s3cret")
    await fake.start()
    holder = PlanHolder.load(EXAMPLE)
    clock = rehearsal_clock(TUESDAY_10AM, 1.0)
    live = CachedLiveSource(redis, lambda: holder.current, refresh_s=0.03, timeout_s=0.5, max_age_s=STALE_S)
    settings = AmiSettings(
        port=fake.port,
        username="callrouter",
        secret="s3cret",
        ping_interval_s=0.5,
        pong_deadline_s=0.5,
        reconnect_initial_s=0.05,
        reconnect_max_s=0.2,
        centre=name,
        publish_queue=publish_queue,
        publish_interval_s=0.2,
    )
    consumer = ami_pipeline(settings, redis, f"{name}-1", live, clock=clock).consumer
    agi = FastAgiServer(ServerConfig(host="127.0.0.1", port=0, call_timeout=10))
    Controller(holder, live, clock=clock).register(agi)
    await agi.start()
    await consumer.start()
    refresher = asyncio.create_task(live.run(clock))
    config = replace(TEST_CONFIG, partners=partner_config(name, partner, partner_port))
    app = web_test_app(redis, config=config)
    server_ = TestServer(app, host="127.0.0.1", port=web_port)
    await server_.start_server()
    try:
        yield Centre(name, redis, fake, f"http://127.0.0.1:{web_port}", agi.port, app)
    finally:
        await server_.close()
        refresher.cancel()
        await asyncio.gather(refresher, return_exceptions=True)
        await consumer.stop()
        await agi.drain(1)
        await fake.close()
        await redis.aclose()


async def call_charnwood(b: Centre) -> str:
    script = CallerScript(dial=CHARNWOOD, steps=[PressAfterPrompt("1"), PressAfterPrompt("1")])
    return (await place_call("127.0.0.1", b.port, script, deadline=10)).summary()


async def until_partner(
    redis: Redis, centre_id: str, check: Callable[[QueueSnapshot | None], bool], deadline_s: float = 5.0
) -> float:
    """Seconds until ``centre_id``'s snapshot in ``redis`` passes ``check``."""
    started = time.monotonic()
    async with asyncio.timeout(deadline_s):
        while True:
            snap = await read_centre_snapshot(redis, centre_id)
            if check(snap):
                return time.monotonic() - started
            await asyncio.sleep(0.02)


async def test_each_centre_sees_the_others_capacity_and_overflows_only_while_it_is_fresh(
    redis_pair: tuple[RedisServer, RedisServer],
) -> None:
    port_a, port_b = free_port(), free_port()
    async with (
        centre(
            A, redis_pair[0], web_port=port_a, partner=B, partner_port=port_b, publish_queue="hdc-team"
        ) as a,
        centre(
            B, redis_pair[1], web_port=port_b, partner=A, partner_port=port_a, publish_queue="cbc-assist"
        ) as b,
    ):
        # Charnwood: a caller waits in cbc-general, where nobody is logged in (no_adviser).
        b.fake.caller_joins("cbc-general")
        b.fake.add_member("cbc-assist", "PJSIP/c1", "C 1", membership="static")
        # Harborough's team: one free adviser. It reaches Charnwood's Redis within ~1-2 s.
        a.fake.add_member("hdc-team", "PJSIP/h1", "H 1", membership="static")
        delay = await until_partner(b.redis, A, lambda s: s is not None and s.available == 1, 5.0)
        assert delay < 3.0
        # ... and the other way: Charnwood's published queue is in Harborough's Redis.
        await until_partner(a.redis, B, lambda s: s is not None and s.queue == "cbc-assist", 5.0)
        # The receiver stores a snapshot before it answers; the sender counts it on the answer.
        async with asyncio.timeout(2.0):
            while a.sender.stats.sent.get(B, 0) < 1 or b.sender.stats.sent.get(A, 0) < 1:
                await asyncio.sleep(0.02)
        assert await b.redis.pttl(KEYS.centre_snapshot(A)) <= STALE_S * 1000
        await asyncio.sleep(0.1)  # the controller's cached live state refreshes every 30 ms
        assert "dial +441632960400" in await call_charnwood(b)

        # Harborough's adviser goes into a call: none free, so no overflow there.
        a.fake.set_member_status("PJSIP/h1", 2, in_call=True)
        await until_partner(b.redis, A, lambda s: s is not None and s.available == 0, 5.0)
        await asyncio.sleep(0.1)
        assert "queue cbc-general" in await call_charnwood(b)

        # Free again, then Harborough falls silent: its copy at Charnwood ages out.
        a.fake.set_member_status("PJSIP/h1", 1, in_call=False)
        await until_partner(b.redis, A, lambda s: s is not None and s.available == 1, 5.0)
        await asyncio.sleep(0.1)
        assert "dial +441632960400" in await call_charnwood(b)
        a.sender.config = replace(a.sender.config, urls={})  # Harborough stops sending
        await until_partner(b.redis, A, lambda s: s is None, STALE_S + 3.0)
        await asyncio.sleep(0.1)
        assert "queue cbc-general" in await call_charnwood(b)


async def test_the_sender_is_not_held_up_by_a_partner_that_hangs_or_is_down(
    redis_pair: tuple[RedisServer, RedisServer],
) -> None:
    """Harborough has two partners: one accepts connections and never answers, one is down.
    Charnwood still gets a snapshot every second, each round bounded by the timeout."""
    held: list[asyncio.StreamWriter] = []

    async def hang(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # accept, read nothing, answer nothing

    hung = await asyncio.start_server(hang, "127.0.0.1", 0)
    hung_port = hung.sockets[0].getsockname()[1]
    port_a, port_b = free_port(), free_port()
    try:
        async with centre(
            B, redis_pair[1], web_port=port_b, partner=A, partner_port=port_a, publish_queue="cbc-assist"
        ) as b:
            redis_a = Redis.from_url(redis_pair[0].url)
            config = PartnerConfig(
                centre=A,
                secrets={B: SECRET, "hung": SECRET, "down": SECRET},
                urls={
                    B: b.url,
                    "hung": f"http://127.0.0.1:{hung_port}",
                    "down": f"http://127.0.0.1:{free_port()}",
                },
                interval_s=0.3,
                timeout_s=0.4,
            )
            sender = PartnerSender(config, redis_a)
            await redis_a.set(KEYS.centre_snapshot(A), fresh_snapshot(), px=30_000)
            with structlog.testing.capture_logs() as logs:
                task = asyncio.create_task(sender.run())
                await asyncio.sleep(2.0)
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            await redis_a.aclose()
        assert sender.stats.sent[B] >= 4  # every round reached Charnwood
        assert sender.stats.failed["hung"] >= 3
        assert sender.stats.failed["down"] >= 3
        assert max(sender.stats.seconds[B]) < config.timeout_s
        failures = [e for e in logs if e["event"] == "partners.send_failed"]
        assert sorted(e["partner"] for e in failures) == ["down", "hung"]  # once per outage
    finally:
        for writer in held:
            writer.close()
        hung.close()
        await hung.wait_closed()


def fresh_snapshot() -> str:
    return snapshot_json(QueueSnapshot("hdc-team", 0, 0.0, 3, 2, datetime.now(UTC)))


async def test_two_callrouter_web_processes_exchange_snapshots_as_configured(
    redis_pair: tuple[RedisServer, RedisServer], tmp_path: Path
) -> None:
    """The settings wiring: ``partners.*`` from the environment, a secret file per partnership."""
    for name in (A, B):
        (tmp_path / f"{name}.key").write_text(SECRET.value.decode() + "\n")
        (tmp_path / f"{name}.key").chmod(0o600)
    port_a, port_b = free_port(), free_port()

    def env(me: str, other: str, port: int) -> dict[str, str]:
        return {
            "CALLROUTER_PARTNERS_CENTRE": me,
            "CALLROUTER_PARTNERS_PEERS": f"{other}=http://127.0.0.1:{port}",
            "CALLROUTER_PARTNERS_KEY_DIR": str(tmp_path),
        }

    redis_a, redis_b = Redis.from_url(redis_pair[0].url), Redis.from_url(redis_pair[1].url)
    try:
        await redis_a.set(KEYS.centre_snapshot(A), fresh_snapshot(), px=30_000)
        await redis_b.set(KEYS.centre_snapshot(B), fresh_snapshot(), px=30_000)
        with (
            running_web(redis_pair[0].url, port=port_a, extra_env=env(A, B, port_b)),
            running_web(redis_pair[1].url, port=port_b, extra_env=env(B, A, port_a)),
        ):
            await until_partner(redis_b, A, lambda s: s is not None and s.available == 2, 10.0)
            await until_partner(redis_a, B, lambda s: s is not None, 10.0)
    finally:
        await redis_a.aclose()
        await redis_b.aclose()


def test_a_partner_secret_readable_by_others_stops_the_web_service(tmp_path: Path) -> None:
    (tmp_path / f"{A}.key").write_text(SECRET.value.decode())
    (tmp_path / f"{A}.key").chmod(0o644)
    settings = load_settings(
        env={
            "CALLROUTER_PARTNERS_CENTRE": B,
            "CALLROUTER_PARTNERS_PEERS": f"{A}=https://h.example",
            "CALLROUTER_PARTNERS_KEY_DIR": str(tmp_path),
        }
    )
    with pytest.raises(SettingsError, match="chmod 600") as error:
        web_config(settings)
    assert SECRET.value.decode() not in str(error.value)
