"""Redis through Sentinel: the one client factory follows a failover, and with
``redis.wait_replicas = 1`` a toggle or contact record acknowledged before the primary is killed
is on the primary promoted in its place.

Real servers: a primary, one replica and three sentinels of the test's own (``tests/support/
redis_sentinel.py``); the primary is killed with SIGKILL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from callrouter.redis_client import RedisTarget, connect, parse_sentinel
from callrouter.settings import SettingsError, load
from ivr.controller import PlanHolder
from records.appender import envelope_of
from records.stream import RecordStream
from routing.redis_keys import KEYS
from routing.replicas import NotReplicated, ReplicaWait
from routing.supervisor import ToggleRequest, apply_toggle, check_request, toggles_for_tenant
from tests.controller.conftest import EXAMPLE
from tests.records.factory import record
from tests.support.redis_sentinel import SentinelSet, running_sentinel_set
from tests.support.toggle_keys import KEYRING

HOLDER = PlanHolder.load(EXAMPLE)
RESUME_LIMIT_S = 5.0  # the goal: reads and writes on the new primary within 5 s of the failover


@pytest.fixture
def sentinel_set() -> Iterator[SentinelSet]:
    with running_sentinel_set(max_lifetime_s=180) as found:
        yield found


def test_sentinel_settings_from_the_environment_and_their_errors() -> None:
    env = {"CALLROUTER_REDIS_SENTINELS": "10.0.0.1:26379, 10.0.0.2:26379,[::1]:26380",
           "CALLROUTER_REDIS_SERVICE_NAME": "council-state", "CALLROUTER_REDIS_WAIT_REPLICAS": "1",
           "CALLROUTER_REDIS_SENTINEL_PASSWORD": "sentinel secret"}  # fmt: skip
    found = load({}, env)
    target = found.redis_target()
    assert target.sentinels == (("10.0.0.1", 26379), ("10.0.0.2", 26379), ("::1", 26380))
    assert (target.service_name, target.sentinel_password) == ("council-state", "sentinel secret")
    assert found.replica_wait() == ReplicaWait(1, 500)
    assert "sentinel secret" not in repr(found) + repr(target) + target.describe()
    assert target.describe() == "sentinel://10.0.0.1:26379,10.0.0.2:26379,::1:26380/council-state/0"
    with pytest.raises(SettingsError, match="CALLROUTER_REDIS_SENTINELS"):
        load({}, {"CALLROUTER_REDIS_SENTINELS": "10.0.0.1"})
    with pytest.raises(ValueError, match="is not HOST:PORT"):
        parse_sentinel("host:99999")


async def test_passwords_from_the_settings_reach_sentinels_and_servers(tmp_path: Path) -> None:
    """Sentinels with a password of their own and data servers with another: a client made from
    the settings (the sentinels' password from a file) reads and writes, and follows a failover;
    a wrong sentinel password is refused."""
    with running_sentinel_set(120, password="data-pw", sentinel_password="sentinel-pw") as found:
        secret = tmp_path / "sentinel.pw"
        secret.write_text("sentinel-pw\n")
        env = {**found.env(), "CALLROUTER_REDIS_PASSWORD": "data-pw",
               "CALLROUTER_REDIS_SENTINEL_PASSWORD_FILE": str(secret)}  # fmt: skip
        redis = load({}, env).redis_client(connect_timeout=0.5, timeout=2.0)
        wrong = load({}, {**env, "CALLROUTER_REDIS_SENTINEL_PASSWORD_FILE": "",
                          "CALLROUTER_REDIS_SENTINEL_PASSWORD": "wrong"}).redis_client(0.5, 2.0)  # fmt: skip
        try:
            await redis.set("callrouter:test:probe", "before")
            with pytest.raises(RedisError):
                await wrong.get("callrouter:test:probe")
            found.kill_primary()
            found.wait_failover()
            assert await _until_written(redis, RESUME_LIMIT_S) < RESUME_LIMIT_S
        finally:
            await redis.aclose()
            await wrong.aclose()


def _target(found: SentinelSet) -> RedisTarget:
    return RedisTarget("redis://ignored/0", sentinels=tuple(parse_sentinel(a) for a in found.addresses))


async def _toggle_on(redis: Redis, tenant: str, wait: ReplicaWait) -> None:
    now = datetime.now(UTC)
    request = ToggleRequest("emergency", tenant, True, by="S. Patel", reason="flooding", expires="2h")
    toggle = check_request(HOLDER.current.plan, request, now)
    await apply_toggle(redis, request, toggle, now, keyring=KEYRING, wait=wait)


async def _until_written(redis: Redis, deadline_s: float) -> float:
    """Seconds until a write through ``redis`` succeeds (retrying every 50 ms)."""
    started = time.monotonic()
    async with asyncio.timeout(deadline_s):
        while True:
            try:
                await redis.set("callrouter:test:probe", "1")
                return time.monotonic() - started
            except (RedisError, OSError):
                await asyncio.sleep(0.05)


async def test_acknowledged_toggle_and_record_survive_the_primary_killed(sentinel_set: SentinelSet) -> None:
    """With WAIT 1 a toggle and a record acknowledged just before the SIGKILL are on the new
    primary, and the same client reads and writes there within 5 s of the failover."""
    redis = connect(_target(sentinel_set), connect_timeout=0.5, timeout=2.0)
    wait = ReplicaWait(1, 1000)
    stream = RecordStream(redis, "charnwood", wait=wait)
    try:
        await _toggle_on(redis, "harborough", wait)
        arrived = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
        appended = await stream.append(envelope_of(record("1795990000.1", arrived), "charnwood"))
        assert appended is not None
        sentinel_set.kill_primary()  # at once: nothing had time to be copied afterwards
        killed = time.monotonic()
        new_primary = sentinel_set.wait_failover()
        failed_over = time.monotonic()
        resumed = await _until_written(redis, RESUME_LIMIT_S + 5)
        print(f"failover {failed_over - killed:.2f} s after the kill; writing again {resumed:.2f} s after")
        assert new_primary == (sentinel_set.replica.host, sentinel_set.replica.port)
        assert resumed < RESUME_LIMIT_S
        stored = await toggles_for_tenant(redis, "harborough", KEYRING)
        assert stored.in_force["emergency"].by == "S. Patel"
        entries = await redis.xrange(KEYS.records_stream("charnwood"))
        assert [e[0].decode() for e in entries] == [appended]
        await _toggle_on(redis, "charnwood", ReplicaWait())  # writes go on, with no replica left to wait for
        assert "emergency" in (await toggles_for_tenant(redis, "charnwood", KEYRING)).in_force
    finally:
        await redis.aclose()


async def test_unconfirmed_writes_are_reported_not_taken_as_done(sentinel_set: SentinelSet) -> None:
    """Asking for more replicas than answer: the toggle call and the record append raise
    NotReplicated (a RedisError, so the record pump keeps the version and tries again; the
    retry finds it in and waits for the replica again)."""
    redis = connect(_target(sentinel_set), connect_timeout=0.5, timeout=2.0)
    wait = ReplicaWait(2, 50)  # there is one replica
    try:
        with pytest.raises(NotReplicated, match="confirmed by 1 of 2 replicas"):
            await _toggle_on(redis, "harborough", wait)
        stream = RecordStream(redis, "charnwood", wait=wait)
        arrived = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
        envelope = envelope_of(record("1795990000.2", arrived), "charnwood")
        with pytest.raises(RedisError):
            await stream.append(envelope)
        # the pump tries again: the version is in already, and now its replica confirms it
        assert await RecordStream(redis, "charnwood", wait=ReplicaWait(1, 1000)).append(envelope) is None
    finally:
        await redis.aclose()
