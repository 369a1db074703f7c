"""The live view over HTTP, end to end: a fake AMI on TCP, the real AMI consumer writing a real
Redis, and the real web app (its one live feed) reading it.

Used by the web tests, the browser test and ``benchmarks/live_http_bench.py``::

    async with live_rig(redis_url) as rig:          # fake AMI + consumer, writer of live state
        app = web_test_app(rig.redis, config=live_config())
        ...
        rig.fake.caller_joins(GENERAL)              # one caller joins Charnwood's general queue
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from redis.asyncio import Redis

from emulator.ami import FakeAmi
from routing.ami.consumer import AmiConsumer
from routing.ami.settings import AmiSettings
from routing.live.lease import WriterLease
from routing.live.store import QueueStateStore
from routing.redis_keys import KEYS
from web.context import WebConfig

EXAMPLE_PLAN = Path(__file__).resolve().parents[2] / "examples" / "plan.yaml"
SECRET = "live-web-secret"


def fast_ami_settings(port: int, secret: str) -> AmiSettings:
    """AMI settings for tests: short pings, reconnects and lease, so a test sees a change fast."""
    return AmiSettings(
        port=port,
        secret=secret,
        ping_interval_s=0.5,
        pong_deadline_s=0.5,
        reconnect_initial_s=0.05,
        reconnect_max_s=0.2,
        lease_ttl_s=3,
        connect_timeout_s=1,
        login_timeout_s=1,
        action_timeout_s=2,
    )


GENERAL = "cbc-general"  # Charnwood's general queue in the example plan
GENERAL_TILE = "queue:charnwood/general"
GENERAL_REGION = "queue-charnwood.general"  # its page region and event name (format=html)
AGENT = "PJSIP/agent1"


def live_config(**overrides: object) -> WebConfig:
    """The test service's configuration with the example plan (plain-HTTP cookies on loopback)."""
    values: dict[str, object] = {
        "cookie_secure": False,
        "max_body_bytes": 64 * 1024,
        "plan_path": EXAMPLE_PLAN,
    }
    values.update(overrides)
    return WebConfig(**values)  # type: ignore[arg-type]


@dataclass
class LiveRig:
    redis: Redis  # for the app (bytes, as callrouter web's own client)
    fake: FakeAmi
    consumer: AmiConsumer


@asynccontextmanager
async def live_rig(url: str) -> AsyncIterator[LiveRig]:
    """The fake AMI with one adviser in ``GENERAL`` and a consumer holding the writer lease,
    writing live state under the default keys of the Redis database at ``url``."""
    writer_redis = Redis.from_url(url, decode_responses=True)
    app_redis = Redis.from_url(url)
    try:
        async with FakeAmi("callrouter", SECRET) as fake:
            fake.add_member(GENERAL, AGENT, "Agent One", membership="static", send=False)
            settings = fast_ami_settings(fake.port, SECRET)
            lease = WriterLease(writer_redis, "ctl-a", settings.lease_ttl_s, KEYS)
            consumer = AmiConsumer(settings, QueueStateStore(writer_redis, "ctl-a", KEYS), lease)
            await consumer.start()
            try:
                deadline = time.monotonic() + 10
                while not (consumer.is_writer and consumer.stats.reconciles_applied > 0):
                    assert time.monotonic() < deadline, "the AMI consumer did not start writing"
                    await asyncio.sleep(0.02)
                yield LiveRig(app_redis, fake, consumer)
            finally:
                await consumer.stop()
    finally:
        await writer_redis.aclose()
        await app_redis.aclose()
