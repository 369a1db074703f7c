"""Redis restarted: with the project's redis.conf toggles survive; without its data, a toggle
that vanished with no audit entry is logged as a consistency event (``toggle.vanished``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from ivr.controller import PlanHolder
from routing.core.live import LiveState, Toggle, Toggles
from routing.live.source import CachedLiveSource, vanished_toggles
from routing.redis_keys import KEYS
from routing.supervisor import ToggleRequest, apply_toggle, check_request
from tests.controller.conftest import EXAMPLE
from tests.support.redis_server import PROJECT_CONF, RedisServer, free_port, start_redis
from tests.support.toggle_keys import KEYRING

HOLDER = PlanHolder.load(EXAMPLE)
NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def _copy(**toggles: dict[str, Toggle]) -> dict[str, tuple[LiveState, Toggles]]:
    return {tid: (LiveState(), Toggles(**toggles)) for tid in ("harborough", "charnwood")}


def test_only_active_toggles_of_known_tenants_can_vanish() -> None:
    """Expired (or about to expire by its TTL) toggles and tenants a reload dropped are not vanished."""
    lasting = Toggle("flooding", "sam", NOW + timedelta(hours=1))
    expiring = Toggle("flooding", "sam", NOW + timedelta(seconds=1))
    before = _copy(emergency={"harborough": lasting, "charnwood": expiring}, closure={"charnwood": lasting})
    after = _copy(closure={"charnwood": lasting})
    found = vanished_toggles(before, after, NOW)
    assert [(v.tenant, v.kind, v.toggle) for v in found] == [("harborough", "emergency", lasting)]
    dropped = {"charnwood": after["charnwood"]}
    assert vanished_toggles(before, dropped, NOW) == []


async def _switch(redis: Redis, tenant: str, kind: str, on: bool) -> None:
    now = datetime.now(UTC)
    request = ToggleRequest(kind, tenant, on, by="S. Patel", reason="test", expires="2h")
    toggle = check_request(HOLDER.current.plan, request, now)
    await apply_toggle(redis, request, toggle, now, keyring=KEYRING)


async def _refresh(source: CachedLiveSource) -> None:
    """One refresh, retried while the restarted server is not answering yet (bounded)."""
    async with asyncio.timeout(10):
        while True:
            try:
                await source.refresh(datetime.now(UTC))
                return
            except (RedisConnectionError, OSError):
                await asyncio.sleep(0.05)


def _restart(server: RedisServer, workdir: Path) -> RedisServer:
    server.stop()
    return start_redis(server.port, workdir, conf=PROJECT_CONF, max_lifetime_s=120)


async def test_restart_keeps_toggles_and_a_lost_one_is_reported(
    tmp_path: Path, logs: Callable[[], list[dict[str, Any]]]
) -> None:
    """Our redis.conf keeps an active toggle over a restart; a Redis restarted without its data
    loses it, and the controller logs that once, as a warning with tenant and kind. A toggle
    switched off with its audit entry is not reported."""
    data = tmp_path / "data"
    data.mkdir()
    server = start_redis(free_port(), data, conf=PROJECT_CONF, max_lifetime_s=120)
    redis = Redis.from_url(server.url, socket_connect_timeout=0.5, socket_timeout=2)
    source = CachedLiveSource(redis, lambda: HOLDER.current, keyring=KEYRING)
    try:
        await _switch(redis, "harborough", "emergency", on=True)
        await _switch(redis, "charnwood", "closure", on=True)
        await _refresh(source)
        await _switch(redis, "charnwood", "closure", on=False)
        await _refresh(source)

        server = _restart(server, data)  # the same data folder: the append-only file is replayed
        await _refresh(source)
        _, toggles = source.read_now(HOLDER.current, "harborough", datetime.now(UTC))
        assert toggles.emergency["harborough"].by == "S. Patel"
        assert 7_000_000 < await redis.pttl(KEYS.toggle("emergency", "harborough")) <= 7_200_000

        empty = tmp_path / "empty"
        empty.mkdir()
        server = _restart(server, empty)  # without its data
        await _refresh(source)
        _, toggles = source.read_now(HOLDER.current, "harborough", datetime.now(UTC))
        assert toggles.emergency == {}
    finally:
        await redis.aclose()
        server.stop()
    vanished = [e for e in logs() if e.get("event") == "toggle.vanished"]
    assert [(e["level"], e["tenant"], e["kind"], e["by"]) for e in vanished] == [
        ("warning", "harborough", "emergency", "S. Patel")
    ]
