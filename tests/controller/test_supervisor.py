"""Supervisor toggles: refusals in plain words, storage with expiry, the audit trail, the CLI."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from callrouter.cli import main
from callrouter.service import publish_plan
from ivr.controller import PlanHolder
from routing.core.live import Toggle
from routing.live.source import signed_toggle_json, verified_toggle
from routing.redis_keys import KEYS, RedisKeys
from routing.supervisor import (
    ToggleError,
    ToggleRequest,
    apply_toggle,
    audit_entry,
    audit_tail,
    check_request,
    check_text,
    facts_from_json,
    parse_expiry,
    plan_facts,
    shown,
    when,
)
from tests.controller.conftest import EXAMPLE
from tests.support.redis_server import RedisServer, running_redis
from tests.support.toggle_keys import KEYRING

PLAN = PlanHolder.load(EXAMPLE).current.plan
NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
LONDON = ZoneInfo("Europe/London")


def request(**changes: object) -> ToggleRequest:
    base = {
        "kind": "emergency",
        "tenant": "harborough",
        "on": True,
        "by": "sam",
        "reason": "flooding",
        "expires": "1h",
    }
    return ToggleRequest(**{**base, **changes})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"tenant": "leicester"}, "unknown tenant 'leicester' (known: charnwood, harborough)"),
        ({"kind": "party"}, "unknown toggle 'party'"),
        ({"reason": " "}, "give a reason"),
        ({"by": ""}, "say who is making the change"),
        ({"expires": ""}, "give an expiry"),
        ({"expires": "2026-11-24 09:00"}, "is in the past"),
        ({"expires": "30d"}, "more than 14 days ahead"),
        ({"expires": "soon"}, "give a duration (90m, 2h, 1d) or a time"),
        ({"service": "parking"}, "unknown service (queue) 'parking' for harborough"),
        ({"kind": "closure", "service": "waste"}, "a closure applies to the whole council"),
        (
            {"kind": "announcement", "service": "xmas"},
            "unknown announcement 'xmas' for harborough (known: bins-2026)",
        ),
    ],
)
def test_bad_requests_are_refused_with_a_clear_message(changes: dict[str, object], message: str) -> None:
    """Unknown tenant, expiry in the past, missing reason... each refused in plain words."""
    with pytest.raises(ToggleError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_request(PLAN, request(**changes), NOW)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90m", NOW + timedelta(minutes=90)),
        ("2h", NOW + timedelta(hours=2)),
        ("1d", NOW + timedelta(days=1)),
        ("18:00", datetime(2026, 11, 24, 18, 0, tzinfo=LONDON)),
        ("09:00", datetime(2026, 11, 25, 9, 0, tzinfo=LONDON)),
        ("2026-11-26 08:30", datetime(2026, 11, 26, 8, 30, tzinfo=LONDON)),
    ],
)
def test_expiry_forms(text: str, expected: datetime) -> None:
    """Durations, a clock time (today or tomorrow) and a date-time in London."""
    assert parse_expiry(text, NOW, LONDON) == expected


def test_switching_off_needs_no_expiry() -> None:
    """Off is off: no expiry, still a reason and a name."""
    assert check_request(PLAN, request(on=False, expires=""), NOW) is None


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


async def test_toggle_is_stored_with_its_expiry_and_audited(redis: Redis) -> None:
    """On: stored with a TTL to its expiry; off: deleted; both audited with the previous value."""
    keys = RedisKeys(prefix=f"test-{uuid.uuid4().hex[:8]}:")
    on = request()
    toggle = check_request(PLAN, on, NOW)
    first_id, previous = await apply_toggle(redis, on, toggle, NOW, keys, keyring=KEYRING)
    assert previous is None
    stored = await redis.get(keys.toggle("emergency", "harborough"))
    assert stored is not None
    assert verified_toggle(KEYRING, keys.toggle("emergency", "harborough"), stored) == toggle
    assert 3590_000 < await redis.pttl(keys.toggle("emergency", "harborough")) <= 3600_000
    off = request(on=False, reason="water receded")
    _, previous = await apply_toggle(redis, off, None, NOW, keys, keyring=KEYRING)
    assert previous == toggle
    assert await redis.get(keys.toggle("emergency", "harborough")) is None
    entries = await audit_tail(redis, 5, keys)
    assert [e["what"] for e in entries] == ["toggle.emergency.off", "toggle.emergency.on"]
    assert entries[0]["previous"]["reason"] == "flooding"
    assert entries[0]["reason"] == "water receded"
    assert entries[1]["id"] == first_id
    assert entries[1]["by"] == "sam"


@pytest.mark.usefixtures("toggle_key_env")
def test_cli_toggle_and_state(redis_server: RedisServer, capsys: pytest.CaptureFixture[str]) -> None:
    """The supervisor's commands against a real Redis; a refusal exits 2."""
    with SyncRedis.from_url(redis_server.url) as client:
        client.delete(KEYS.toggle("emergency", "charnwood"))
    common = ["--direct", "--plan", str(EXAMPLE), "--redis", redis_server.url]
    code = main(
        [
            "toggle",
            "emergency",
            "charnwood",
            "--on",
            "--reason",
            "flooding in Loughborough",
            "--expires",
            "2h",
            "--by",
            "sam",
            *common,
            "--json",
        ]
    )
    out = json.loads(capsys.readouterr().out)
    assert (code, out["on"], out["tenant"]) == (0, True, "charnwood")
    assert main(["state", *common]) == 0
    text = capsys.readouterr().out
    assert "charnwood: toggles: emergency (flooding in Loughborough; by sam;" in text
    assert "toggle.emergency.on charnwood flooding in Loughborough" in text
    assert main(["toggle", "closure", "charnwood", "--on", "--by", "sam", "--expires", "1h", *common]) == 2
    assert "refused: give a reason" in capsys.readouterr().err
    assert (
        main(["toggle", "emergency", "charnwood", "--off", "--reason", "over", "--by", "sam", *common]) == 0
    )


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"reason": "x" * 501}, "--reason is 501 characters long: at most 500"),
        ({"by": "S" * 81}, "--by is 81 characters long: at most 80"),
        ({"reason": "flooding\x1b[2J\x1b[H"}, r"--reason holds a control character \(\\x1b\)"),
        ({"reason": "flooding\u009b31m"}, r"--reason holds a control character \(\\x9b\)"),
        ({"by": "sam\nroot: toggle.closure.off"}, r"--by holds a control character \(\\n\)"),
        ({"by": "sam\u202eelohw"}, r"--by holds a control character \(\\u202e\)"),
        ({"reason": "bad\udcff bytes"}, r"--reason holds a control character \(\\udcff\)"),
    ],
)
def test_text_is_bounded_and_plain(changes: dict[str, object], message: str) -> None:
    """Reason and name: bounded, one line, no ANSI escapes or bidi overrides; refused plainly."""
    with pytest.raises(ToggleError, match=message):
        check_request(PLAN, request(**changes), NOW)


def test_plain_text_of_any_script_is_kept() -> None:
    """Accents, Welsh, typographic dashes and 500 characters exactly are fine."""
    reason = "Llifogydd yn Nhrefaldwyn – ffyrdd ar gau; café closed"
    toggle = check_request(PLAN, request(reason=f"  {reason}  ", by="Siân Ŵyn"), NOW)
    assert toggle is not None
    assert (toggle.reason, toggle.by) == (reason, "Siân Ŵyn")
    assert check_text("--reason", "r" * 500, 500) == "r" * 500


def test_shown_escapes_and_bounds() -> None:
    """Text stored before it was checked is shown with its controls as visible escapes."""
    assert shown("red\x1b[31m alert\r\n\\x1b") == "red\\x1b[31m alert\\r\\n\\\\x1b"
    assert shown("é – ok") == "é – ok"
    assert shown("y" * 600) == "y" * 500 + "…"


def test_expiry_is_shown_with_its_date_in_the_councils_zone() -> None:
    """A three-day toggle says which day; summer time is named as such."""
    assert when(NOW + timedelta(days=3, hours=4, minutes=23), LONDON) == "Fri 27 Nov 2026 14:23 GMT"
    assert when(datetime(2026, 6, 1, 13, 0, tzinfo=UTC), LONDON) == "Mon 01 Jun 2026 14:00 BST"


def test_plan_facts_check_like_the_plan() -> None:
    """The published facts of a plan refuse and accept what the plan itself does."""
    facts = plan_facts(PLAN)
    assert check_request(facts, request(), NOW) == check_request(PLAN, request(), NOW)
    with pytest.raises(ToggleError, match="unknown service"):
        check_request(facts, request(service="parking"), NOW)


@pytest.mark.usefixtures("toggle_key_env")
def test_state_shows_stored_text_escaped(
    redis_server: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """Entries already in Redis (written before the checks, or by someone with the key who
    skipped them) are shown escaped, and a three-day toggle shows its expiry with the date."""
    now = datetime.now(UTC)
    evil = Toggle("burst main\x1b[2J\x1b[31m", "mallory\x1b]0;pwned\x07", now + timedelta(days=3))
    key = KEYS.toggle("closure", "harborough")
    with SyncRedis.from_url(redis_server.url) as client:
        client.set(key, signed_toggle_json(KEYRING, key, evil, now), px=60_000)
        entry = audit_entry("toggle.closure.on", evil.by, now, tenant="harborough", reason=evil.reason)
        client.xadd(KEYS.audit_stream(), {"entry": entry, "previous": ""})
        try:
            assert main(["state", "--direct", "--plan", str(EXAMPLE), "--redis", redis_server.url]) == 0
        finally:
            client.delete(key)
    out = capsys.readouterr().out
    assert "\x1b" not in out
    assert "\x07" not in out
    assert "closure (burst main\\x1b[2J\\x1b[31m; by mallory\\x1b]0;pwned\\x07; until " in out
    expiry = when(evil.expires_at, LONDON)
    assert f"until {expiry})" in out
    assert re.search(r"mallory\\x1b\]0;pwned\\x07: toggle\.closure\.on harborough burst main\\x1b", out)


@pytest.mark.usefixtures("toggle_key_env")
def test_cli_refuses_control_characters(
    redis_server: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """The refusal names the character without sending it to the terminal; nothing is stored."""
    argv = ["toggle", "--direct", "closure", "harborough", "--on", "--reason", "x\x1b[2J", "--by", "sam"]
    code = main([*argv, "--expires", "1h", "--plan", str(EXAMPLE), "--redis", redis_server.url])
    err = capsys.readouterr().err
    assert code == 2
    assert (
        err
        == "callrouter: refused: --reason holds a control character (\\x1b): plain text only, on one line\n"
    )
    with SyncRedis.from_url(redis_server.url) as client:
        assert client.get(KEYS.toggle("closure", "harborough")) is None


async def test_serve_publishes_the_plan_in_force_and_each_reload(tmp_path: Path) -> None:
    """What ``toggle`` without a plan checks against follows the controller's reloads."""
    plan = tmp_path / "plan.yaml"
    plan.write_text(EXAMPLE.read_text())
    holder = PlanHolder.load(plan)
    with running_redis(max_lifetime_s=60) as server:
        client = Redis.from_url(server.url)
        task = asyncio.create_task(publish_plan(holder, client, interval=0.02))
        try:
            async with asyncio.timeout(5):
                while (raw := await client.get(KEYS.plan_in_force())) is None:
                    await asyncio.sleep(0.02)
            assert facts_from_json(raw) == plan_facts(holder.current.plan)
            plan.write_text(EXAMPLE.read_text().replace("id: bins-2026", "id: bins-2027"))
            assert holder.reload().ok
            async with asyncio.timeout(5):
                while (
                    "bins-2027"
                    not in facts_from_json(await client.get(KEYS.plan_in_force()))["harborough"].announcements
                ):
                    await asyncio.sleep(0.02)
            stored = json.loads(await client.get(KEYS.plan_in_force()))
            assert (stored["path"], stored["version"]) == (str(plan), holder.version)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await client.aclose()
