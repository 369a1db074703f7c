"""Toggle integrity: only toggles signed with the toggle key change routing.

The issue's finding, replayed: a raw ``SET`` of a closure toggle with an empty reason and an
expiry in 2099 was obeyed within a second. Now it, a toggle edited by hand and a valid toggle
copied from another council are ignored by a real controller (calls placed through the
emulator on the wire) and logged as ``toggle_rejected``; a toggle written by ``apply_toggle``
is obeyed."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from callrouter.cli import main
from ivr.controller import PlanHolder
from routing.core.live import Toggle
from routing.live.source import RejectionLog, signed_toggle_json, toggle_json, verified_toggle
from routing.redis_keys import KEYS, RedisKeys
from routing.supervisor import (
    ToggleError,
    ToggleRequest,
    apply_toggle,
    audit,
    audit_for_tenant,
    check_request,
    escaped_entry,
    facts_json,
    plan_facts,
    when,
)
from routing.toggle_mac import (
    ToggleKeyError,
    ToggleKeyring,
    ToggleRejected,
    key_id,
    keyring_from_text,
    load_keyring,
    sign,
    verify,
)
from tests.controller.conftest import EXAMPLE
from tests.scenarios.test_toggles_and_outages import start_centre, stop_centre
from tests.support.redis_server import RedisServer
from tests.support.toggle_keys import KEYRING, OTHER_KEYRING, TEST_KEY, key_file

PLAN = PlanHolder.load(EXAMPLE).current.plan
NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
KEY = "callrouter:toggle:closure:harborough"
FLOOD = Toggle("flooding", "sam", NOW + timedelta(hours=2))


def rejected(keyring: ToggleKeyring | None, key: str, raw: str) -> str:
    with pytest.raises(ToggleRejected) as caught:
        verified_toggle(keyring, key, raw)
    return caught.value.reason


def test_a_signed_toggle_verifies_and_any_change_breaks_it() -> None:
    """Every field is covered: the reason, the expiry, the start, the key id; so is the key name."""
    raw = signed_toggle_json(KEYRING, KEY, FLOOD, NOW)
    assert verified_toggle(KEYRING, KEY, raw) == FLOOD
    stored = json.loads(raw)
    for name, value in [
        ("reason", "other"),
        ("by", "mallory"),
        ("expires_at", "2099-01-01T00:00:00+00:00"),
        ("since", "2099-01-01T00:00:00+00:00"),
        ("service", "waste"),
        ("extra", "field"),
    ]:
        assert rejected(KEYRING, KEY, json.dumps({**stored, name: value})) == "bad_mac", name
    assert rejected(KEYRING, "callrouter:toggle:closure:charnwood", raw) == "bad_mac"  # another council
    assert rejected(KEYRING, "callrouter:toggle:emergency:harborough", raw) == "bad_mac"  # another kind
    assert rejected(KEYRING, KEY, json.dumps({**stored, "kid": key_id(b"x" * 40)})) == "unknown_key"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (toggle_json(FLOOD), "unsigned"),
        ("not json", "malformed"),
        ("[1, 2]", "malformed"),
        ("x" * 5000, "malformed"),
    ],
)
def test_what_is_not_a_signed_toggle_is_rejected_with_its_reason(raw: str, reason: str) -> None:
    assert rejected(KEYRING, KEY, raw) == reason


def test_no_key_here_obeys_nothing_and_another_key_is_unknown() -> None:
    raw = signed_toggle_json(KEYRING, KEY, FLOOD, NOW)
    assert rejected(None, KEY, raw) == "no_key"
    assert rejected(OTHER_KEYRING, KEY, raw) == "unknown_key"


def test_a_signed_toggle_longer_than_any_may_last_is_refused() -> None:
    """Even correctly signed (a bug in a writer), a toggle of more than 14 days is not obeyed."""
    fields = json.loads(toggle_json(Toggle("r", "b", NOW + timedelta(days=30))))
    raw = sign(KEYRING, KEY, {**fields, "since": NOW.isoformat()})
    assert verify(KEYRING, KEY, raw)["reason"] == "r"
    assert rejected(KEYRING, KEY, raw) == "malformed"


def test_rotation_accepts_the_previous_key_until_it_is_dropped() -> None:
    """The new key first, the old second: toggles signed with either verify, new ones are signed
    with the new key; once the old line is removed, its toggles are unknown."""
    old_signed = signed_toggle_json(KEYRING, KEY, FLOOD, NOW)
    rotating = keyring_from_text(f"# new key first\n{'n' * 64}\n{TEST_KEY}\n")
    assert verified_toggle(rotating, KEY, old_signed) == FLOOD
    new_signed = signed_toggle_json(rotating, KEY, FLOOD, NOW)
    assert json.loads(new_signed)["kid"] == key_id(b"n" * 64) != json.loads(old_signed)["kid"]
    assert rejected(keyring_from_text("n" * 64), KEY, old_signed) == "unknown_key"


def test_key_file_checks(tmp_path: Path) -> None:
    """Owner-only files load; a group- or world-readable one, a missing one, an empty one, a
    short key and three keys are refused in words that never hold the key."""
    path = key_file(tmp_path)
    assert load_keyring(path).kids == KEYRING.kids
    assert TEST_KEY not in repr(load_keyring(path))
    for mode in (0o640, 0o604, 0o620):
        path.chmod(mode)
        with pytest.raises(ToggleKeyError, match=f"mode 0{mode:o}\\); make it the owner's only: chmod 600"):
            load_keyring(path)
    with pytest.raises(ToggleKeyError, match="No such file"):
        load_keyring(tmp_path / "missing")
    cases = [
        ("\n# nothing\n", "holds no key"),
        ("short\n", "shorter than 32"),
        (("a" * 40 + "\n") * 3, "give 1 or 2"),
    ]
    for text, message in cases:
        bad = tmp_path / f"bad-{uuid.uuid4().hex[:6]}"
        bad.write_text(text)
        os.chmod(bad, 0o600)
        with pytest.raises(ToggleKeyError, match=message) as caught:
            load_keyring(bad)
        assert "aaaa" not in str(caught.value)


def test_rejections_are_logged_at_most_once_a_minute_each(logs: Callable[[], list[dict[str, Any]]]) -> None:
    """A flood of bad writes is one line a minute per tenant, kind and reason, with the count
    of those not logged; the stored text is never in the line."""
    clock = [0.0]
    log = RejectionLog(interval_s=60, clock=lambda: clock[0])
    error = ToggleRejected("bad_mac", "the MAC does not verify for this key name")
    assert log.report("harborough", "closure", error)
    for _ in range(500):
        clock[0] += 0.1
        assert not log.report("harborough", "closure", error)
    assert log.report("harborough", "emergency", error)  # another kind: its own line
    clock[0] += 20
    assert log.report("harborough", "closure", error)
    lines = [e for e in logs() if e.get("event") == "toggle_rejected"]
    assert [(e["tenant"], e["kind"], e["reason"], e["suppressed"]) for e in lines] == [
        ("harborough", "closure", "bad_mac", 0),
        ("harborough", "emergency", "bad_mac", 0),
        ("harborough", "closure", "bad_mac", 500),
    ]
    assert all(e["level"] == "warning" and e["security"] is True for e in lines)


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


async def test_raw_writes_do_not_change_routing_and_a_signed_toggle_does(
    redis: Redis, logs: Callable[[], list[dict[str, Any]]]
) -> None:
    """Calls on the wire through a real controller reading a real Redis: a raw closure with an
    empty reason until 2099, a signed toggle edited by hand, and a valid Charnwood closure
    copied to Harborough are each ignored (and logged); a signed toggle is obeyed."""
    keys = RedisKeys(prefix=f"integrity-{uuid.uuid4().hex[:8]}:")
    centre, server, refresher = await start_centre(redis, keys)
    now = centre.clock[0]
    harborough, charnwood = keys.toggle("closure", "harborough"), keys.toggle("closure", "charnwood")
    emergency = keys.toggle("emergency", "harborough")
    closure = Toggle("Building evacuated", "S. Patel", now + timedelta(hours=1))
    edited = {
        **json.loads(signed_toggle_json(KEYRING, emergency, closure, now)),
        "expires_at": "2099-01-01T00:00Z",
    }
    raw_writes = [  # each its own tenant, kind and reason: each logged once
        (harborough, json.dumps({"reason": "", "by": "x", "expires_at": "2099-01-01T00:00:00+00:00"})),
        (emergency, json.dumps(edited)),
        (harborough, signed_toggle_json(KEYRING, charnwood, closure, now)),  # Charnwood's, copied
    ]
    try:
        for key, value in raw_writes:
            await redis.set(key, value, px=3_600_000)
            await asyncio.sleep(0.3)  # several refreshes (every 0.05 s here)
            summary = await centre.call("1")
            assert summary.startswith("route (open) -> menu main -> queue hdc-revenues"), (key, summary)
            await redis.delete(key)
        request = ToggleRequest("closure", "harborough", True, "S. Patel", "Building evacuated", "1h")
        toggle = check_request(centre.holder.current.plan, request, now)
        await apply_toggle(redis, request, toggle, now, keys, keyring=KEYRING)
        async with asyncio.timeout(1.0):  # obeyed within a second
            while not (summary := await centre.call("1")).startswith("route (closed)"):
                await asyncio.sleep(0.02)
    finally:
        await stop_centre(server, refresher)
    events = [e for e in logs() if e.get("event") == "toggle_rejected"]
    assert [(e["tenant"], e["kind"], e["reason"], e["suppressed"]) for e in events] == [
        ("harborough", "closure", "unsigned", 0),
        ("harborough", "emergency", "bad_mac", 0),
        ("harborough", "closure", "bad_mac", 0),  # the copy: signed for Charnwood's key name
    ]
    # nothing of the written value (its expiry, 2099-01-01) reaches the log
    assert all("2099-01-01" not in json.dumps(e) and e["security"] is True for e in events)


async def test_apply_toggle_refuses_what_controllers_would(redis: Redis) -> None:
    """Whoever calls it (the web service), the write path checks the identity, the text and
    the expiry: nothing is written when it refuses."""
    keys = RedisKeys(prefix=f"apply-{uuid.uuid4().hex[:8]}:")
    request = ToggleRequest("closure", "harborough", True, "user:42", "evacuated", "1h")
    for toggle, changes, message in [
        (Toggle("evacuated", "user:42", NOW - timedelta(minutes=1)), {}, "in the past"),
        (Toggle("evacuated", "user:42", NOW + timedelta(days=15)), {}, "more than 14 days"),
        (FLOOD, {"by": "user\n42"}, "control character"),
        (FLOOD, {"reason": "x" * 501}, "at most 500"),
        (FLOOD, {"kind": "party"}, "unknown toggle"),
        (FLOOD, {"tenant": "*"}, "not a tenant id"),
        (None, {}, "needs a toggle to store"),
    ]:
        bad = dataclasses.replace(request, **changes)
        with pytest.raises(ToggleError, match=message):
            await apply_toggle(redis, bad, toggle, NOW, keys, keyring=KEYRING)
    assert await redis.keys(f"{keys.prefix}*") == []


async def test_the_audit_trail_per_tenant(redis: Redis) -> None:
    """Newest first, that council's entries only, paged by entry id; an entry written by hand
    that is not JSON does not break the reading; text is escaped for display on request."""
    keys = RedisKeys(prefix=f"audit-{uuid.uuid4().hex[:8]}:")
    for n, tenant in enumerate(["harborough", "charnwood", "harborough", "harborough"]):
        on = ToggleRequest("emergency", tenant, True, f"user:{n}", f"reason {n}", "1h")
        toggle = check_request(PLAN, on, NOW + timedelta(minutes=n))
        await apply_toggle(redis, on, toggle, NOW + timedelta(minutes=n), keys, keyring=KEYRING)
    await audit(redis, "plan.reloaded", "serve", NOW, {"sha256": "abc"}, keys=keys)
    await redis.xadd(keys.audit_stream(), {"entry": "not json\x1b[2J", "previous": "{"})
    found = await audit_for_tenant(redis, "harborough", 10, keys)
    assert [(e["by"], e["reason"]) for e in found] == [
        ("user:3", "reason 3"),
        ("user:2", "reason 2"),
        ("user:0", "reason 0"),
    ]
    assert found[0]["previous"]["by"] == "user:2"  # the value it replaced, who set it, until when
    assert found[0]["expires_at"] == (NOW + timedelta(minutes=3, hours=1)).isoformat()
    page = await audit_for_tenant(redis, "harborough", 2, keys)
    rest = await audit_for_tenant(redis, "harborough", 2, keys, before=page[-1]["id"])
    assert [e["by"] for e in page + rest] == ["user:3", "user:2", "user:0"]
    assert [e["by"] for e in await audit_for_tenant(redis, "charnwood", 10, keys)] == ["user:1"]
    assert await audit_for_tenant(redis, "harborough", 10, keys, scan_limit=3) == found[:1]
    odd = escaped_entry({"what": "unreadable", "raw": "not json\x1b[2J", "n": 1, "list": ["a\nb"]})
    assert odd == {"what": "unreadable", "raw": "not json\\x1b[2J", "n": 1, "list": ["a\\nb"]}


def test_state_without_a_plan_shows_a_three_day_toggle_with_its_date(
    redis_server: RedisServer, toggle_key_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`callrouter state` with no plan configured reads the councils from the plan in force (as
    the controller publishes it), and shows the expiry with its date in the council's zone."""
    import redis as sync_redis

    now = datetime.now(UTC)
    three_days = Toggle("Roof repairs", "user:7", now + timedelta(days=3))
    key = KEYS.toggle("closure", "charnwood")
    with sync_redis.Redis.from_url(redis_server.url) as client:
        client.set(KEYS.plan_in_force(), facts_json(plan_facts(PLAN), str(EXAMPLE), 1, now))
        client.set(key, signed_toggle_json(KEYRING, key, three_days, now), px=60_000)
        try:
            assert main(["state", "--direct", "--redis", redis_server.url]) == 0
        finally:
            client.delete(key, KEYS.plan_in_force())
    out = capsys.readouterr().out
    expiry = when(three_days.expires_at, PLAN.tenants["charnwood"].zone())
    assert f"charnwood: toggles: closure (Roof repairs; by user:7; until {expiry})" in out
    assert expiry[:3] in {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"}
    assert expiry[4:6] == f"{three_days.expires_at.astimezone(PLAN.tenants['charnwood'].zone()):%d}"


def test_state_without_a_key_says_the_signatures_are_not_checked(
    redis_server: RedisServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read-only user with no toggle key still sees the toggles, told they were not checked;
    a value that is not a toggle at all is listed as ignored."""
    import redis as sync_redis

    monkeypatch.delenv("CALLROUTER_TOGGLE_KEY_FILE", raising=False)
    now = datetime.now(UTC)
    closure = KEYS.toggle("closure", "harborough")
    emergency = KEYS.toggle("emergency", "harborough")
    with sync_redis.Redis.from_url(redis_server.url) as client:
        client.set(
            closure,
            signed_toggle_json(
                KEYRING, closure, Toggle("Fire drill", "user:9", now + timedelta(hours=1)), now
            ),
            px=60_000,
        )
        client.set(emergency, "not a toggle\x1b[2J", px=60_000)
        try:
            assert main(["state", "--direct", "--plan", str(EXAMPLE), "--redis", redis_server.url]) == 0
        finally:
            client.delete(closure, emergency)
    out = capsys.readouterr().out
    assert "(no toggle key here: toggles listed as stored, their signatures not checked)" in out
    assert "harborough: toggles: closure (Fire drill; by user:9; until " in out
    assert "harborough: IGNORED emergency toggle in Redis (malformed: not a stored toggle)" in out
    assert "\x1b" not in out
