"""``callrouter redis migrate-keys``: a Redis written with the key names before hash tags is
renamed to today's names on a real redis-server of its own (values and expiries kept; toggles
signed again for their new names, so controllers still obey them); ``--dry-run`` changes nothing;
a key whose new name holds data is left; a cluster is refused."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from callrouter.cli import main
from routing.core.live import Toggle
from routing.redis_keys import KEYS, RedisKeys, tagged_name
from routing.supervisor import signed_toggle_json, toggles_for_tenant
from tests.support.redis_server import RedisServer, running_redis
from tests.support.toggle_keys import KEYRING

OLD_TOGGLE = "callrouter:toggle:emergency:harborough"


def test_old_names_map_to_tagged_names() -> None:
    assert tagged_name("callrouter:queue:hdc-revenues:waiting") == KEYS.queue_waiting("hdc-revenues")
    assert tagged_name("callrouter:records:{charnwood}:stream") == KEYS.records_stream("charnwood")
    assert tagged_name("callrouter:records:{charnwood}:sink:harborough/crm:dead") == KEYS.sink_dead(
        "charnwood", "harborough/crm"
    )
    assert tagged_name(OLD_TOGGLE) == KEYS.toggle("emergency", "harborough")
    assert tagged_name("callrouter:web:session:ab12") == KEYS.web_session("ab12")
    assert tagged_name(KEYS.audit_stream()) is None  # already tagged
    assert tagged_name("other:queue:x:waiting") is None
    north = RedisKeys(prefix="t1:", tag="north")
    assert tagged_name("t1:audit", north) == north.audit_stream()


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    with running_redis(max_lifetime_s=120) as server:
        yield server


def _old_data(client: SyncRedis) -> None:
    now = datetime.now(UTC)
    client.zadd("callrouter:queue:hdc-revenues:waiting", {"1795990000.1": 1795990000.0})
    client.xadd("callrouter:records:{charnwood}:stream", {"t": "harborough", "e": "{}"})
    client.hset("callrouter:web:session:ab12", mapping={"user": "sam"})
    client.pexpire("callrouter:web:session:ab12", 600_000)
    toggle = Toggle("flooding", "S. Patel", now + timedelta(hours=2))
    client.set(OLD_TOGGLE, signed_toggle_json(KEYRING, OLD_TOGGLE, toggle, now), px=7_200_000)
    client.set("callrouter:toggle:closure:charnwood", "not a signed toggle", px=60_000)
    client.xadd("callrouter:audit", {"entry": "old"})
    client.xadd(KEYS.audit_stream(), {"entry": "new"})  # the new version ran already


async def obeyed(url: str) -> str:
    """Who set Harborough's emergency toggle, as a controller reads it (its MAC checked)."""
    redis = Redis.from_url(url)
    try:
        stored = await toggles_for_tenant(redis, "harborough", KEYRING)
        return stored.in_force["emergency"].by
    finally:
        await redis.aclose()


def test_migrate_keys_renames_keeps_expiries_and_signs_toggles_again(
    own_redis: RedisServer, toggle_key_env: object, capsys: pytest.CaptureFixture[str]
) -> None:
    client = SyncRedis.from_url(own_redis.url)
    try:
        _old_data(client)
        before = sorted(client.keys("*"))
        assert main(["redis", "migrate-keys", "--dry-run", "--json", "--redis", own_redis.url]) == 0
        counted = json.loads(capsys.readouterr().out)
        assert (counted["renamed"], counted["resigned"], counted["kept"]) == (3, 1, ["callrouter:audit"])
        assert sorted(client.keys("*")) == before  # a dry run changes nothing

        assert main(["redis", "migrate-keys", "--redis", own_redis.url]) == 0
        out = capsys.readouterr().out
        assert out.startswith("renamed 3 keys; toggles signed again for their new names: 1\n")
        assert "toggle left where it is (malformed): callrouter:toggle:closure:charnwood" in out
        assert client.zscore(KEYS.queue_waiting("hdc-revenues"), "1795990000.1") == 1795990000.0
        assert client.xlen(KEYS.records_stream("charnwood")) == 1
        assert 590_000 < client.pttl(KEYS.web_session("ab12")) <= 600_000
        assert 7_100_000 < client.pttl(KEYS.toggle("emergency", "harborough")) <= 7_200_000
        assert not client.exists(OLD_TOGGLE, "callrouter:queue:hdc-revenues:waiting")
        assert client.xlen("callrouter:audit") == 1  # left: its new name held data
    finally:
        client.close()

    assert asyncio.run(obeyed(own_redis.url)) == "S. Patel"  # the MAC verifies for the new name


def test_migrate_keys_moves_a_toggle_that_has_no_expiry(
    own_redis: RedisServer, toggle_key_env: object, capsys: pytest.CaptureFixture[str]
) -> None:
    """A toggle key without a time to live (PERSIST run on it by hand) is moved and signed
    again, still without one: never deleted without its new copy written."""
    client = SyncRedis.from_url(own_redis.url)
    now = datetime.now(UTC)
    try:
        toggle = Toggle("flooding", "S. Patel", now + timedelta(hours=2))
        client.set(OLD_TOGGLE, signed_toggle_json(KEYRING, OLD_TOGGLE, toggle, now))
        assert main(["redis", "migrate-keys", "--json", "--redis", own_redis.url]) == 0
        moved = json.loads(capsys.readouterr().out)
        assert (moved["resigned"], moved["kept"]) == (1, [])
        new = KEYS.toggle("emergency", "harborough")
        assert not client.exists(OLD_TOGGLE)
        assert client.pttl(new) == -1  # no expiry before, none after
    finally:
        client.close()

    assert asyncio.run(obeyed(own_redis.url)) == "S. Patel"


def test_migrate_keys_refuses_a_cluster(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CALLROUTER_REDIS_CLUSTER", "true")
    assert main(["redis", "migrate-keys", "--redis", "redis://127.0.0.1:1/0"]) == 2
    assert "run migrate-keys on the single Redis server" in capsys.readouterr().err
