"""Delivery rigs: a real redis-server, a real aiohttp fake CRM on 127.0.0.1 and a worker."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from redis.asyncio import Redis

from callrouter.logs import configure_logging
from emulator.crm import FakeCrm
from records.delivery import DeliveryWorker, Policy
from records.sinks import Sink, WebhookSink
from records.stream import Envelope, RecordStream
from routing.core.plan import WebhookSink as WebhookSinkConfig
from routing.redis_keys import RedisKeys
from tests.support.redis_server import PROJECT_CONF, RedisServer, free_port, start_redis

SECRET = b"test-webhook-secret"
CENTRE = "charnwood"  # the example plan's centre
TENANT = "harborough"
T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
FAST = Policy(
    batch=200, block_ms=100, lease_s=2.0, backoff_base_s=0.02, backoff_cap_s=0.4,
    breaker_threshold=5, breaker_open_s=0.2, breaker_open_cap_s=0.5, trim_every_s=3600,
)  # fmt: skip


def envelope(rid: str, version: int = 1, tenant: str = TENANT, **payload: Any) -> Envelope:
    return Envelope(rid, version, tenant, CENTRE, T0, T0 + timedelta(seconds=version),
                    {"record_id": rid, "version": version, **payload})  # fmt: skip


def webhook_config(
    url: str, timeout_s: float = 2.0, max_in_flight: int = 32, batch_size: int = 1
) -> WebhookSinkConfig:
    return WebhookSinkConfig(
        batch_size=batch_size,type="webhook", url=url, secret_env="CRM_SECRET", timeout_s=timeout_s,
                             max_in_flight=max_in_flight)  # fmt: skip


@dataclass
class Rig:
    redis: Redis
    keys: RedisKeys
    crm: FakeCrm
    stream: RecordStream
    tasks: list[tuple[asyncio.Event, asyncio.Task[None]]] = field(default_factory=list)

    def webhook(self, name: str = "crm", tenant: str = TENANT, **config: Any) -> WebhookSink:
        return WebhookSink(f"{tenant}/{name}", webhook_config(self.crm.url, **config), SECRET)

    def start_worker(self, sinks: dict[str, Sink], policy: Policy = FAST) -> DeliveryWorker:
        worker = DeliveryWorker(self.redis, CENTRE, sinks, policy=policy, keys=self.keys)
        stop = asyncio.Event()
        self.tasks.append((stop, asyncio.create_task(worker.run(stop))))
        return worker

    async def stop_workers(self) -> None:
        for stop, _task in self.tasks:
            stop.set()
        for _stop, task in self.tasks:
            await asyncio.wait_for(task, timeout=10)
        self.tasks.clear()

    async def wait_for_dead_letters(self, sink: str, count: int, timeout_s: float = 10) -> dict[bytes, bytes]:
        deadline = time.monotonic() + timeout_s
        while len(dead := await self.redis.hgetall(self.keys.sink_dead(CENTRE, sink))) < count:
            assert time.monotonic() < deadline, f"{len(dead)} of {count} dead letters"
            await asyncio.sleep(0.05)
        return dead

    async def stats(self, sink: str) -> dict[str, str]:
        raw = await self.redis.hgetall(self.keys.sink_stats(CENTRE, sink))
        return {k.decode(): v.decode() for k, v in raw.items()}


@pytest.fixture
async def rig(redis_server: RedisServer) -> AsyncIterator[Rig]:
    redis = Redis.from_url(redis_server.url)
    keys = RedisKeys(prefix=f"t{uuid.uuid4().hex[:8]}:")
    crm = FakeCrm(SECRET)
    await crm.start()
    made = Rig(redis, keys, crm, RecordStream(redis, CENTRE, keys=keys))
    try:
        yield made
    finally:
        await made.stop_workers()
        await crm.stop()
        await redis.aclose()


EXAMPLE_PLAN = Path(__file__).parents[2] / "examples" / "plan.yaml"


def plan_with_sinks(folder: Path, crm_url: str, file_dir: Path | None = None) -> Path:
    """The example plan with CRM sinks for harborough: the fake CRM, and a file sink if asked."""
    plan = yaml.safe_load(EXAMPLE_PLAN.read_text(encoding="utf-8"))
    sinks: dict[str, Any] = {
        "crm": {"type": "webhook", "url": crm_url, "secret_env": "CRM_SECRET", "timeout_s": 2}
    }
    if file_dir is not None:
        sinks["archive"] = {"type": "file", "directory": str(file_dir)}
    for tenant in plan["tenants"].values():  # the example's own sinks are not the tests'
        tenant.pop("crm", None)
    plan["tenants"][TENANT]["crm"] = {"sinks": sinks}
    path = folder / "plan.yaml"
    path.write_text(yaml.safe_dump(plan), encoding="utf-8")
    return path


@pytest.fixture
def aof_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of its own with the project's redis.conf (append-only file, everysec)."""
    workdir = tmp_path / "redis"
    workdir.mkdir()
    server = start_redis(free_port(), workdir, conf=PROJECT_CONF, max_lifetime_s=300)
    try:
        yield server
    finally:
        server.stop()


def worker_process(
    plan: Path,
    redis_url: str,
    log: Path,
    archive: Path,
    lease_s: float = 1.0,
    *,
    extra: Sequence[str] = (),
    lifetime_s: int = 120,
) -> subprocess.Popen[bytes]:
    """``callrouter records deliver`` as a real process logging to ``log``, writing the owner's
    archive in ``archive``, stopped by ``timeout`` (after ``lifetime_s``) if forgotten."""
    argv = ["timeout", str(lifetime_s), sys.executable, "-m", "callrouter.cli", "records", "deliver",
            "--plan", str(plan), "--redis", redis_url, "--archive", str(archive),
            "--lease-s", str(lease_s), *extra]  # fmt: skip
    env = {**os.environ, "CRM_SECRET": SECRET.decode()}
    with log.open("ab") as out:
        return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)


@pytest.fixture
def logs() -> Iterator[Callable[[], str]]:
    """Every log line written while the test runs (JSON lines), as one text."""
    stream = io.StringIO()
    configure_logging(json=True, level="debug", stream=stream)
    yield stream.getvalue
    configure_logging(json=True, level="warning", stream=io.StringIO())
