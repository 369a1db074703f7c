"""``redis.key_tag``: the hash tag of every key, one per centre.

The setting is validated (a tag of 1 to 64 letters, digits, ``_.-``; no brace), defaults to
``main`` (an existing install keeps its keys), and every command that names a Redis key takes it
from the settings: each command run here with ``CALLROUTER_REDIS_KEY_TAG=east`` against a real
redis-server touches keys of tag ``east`` and no other, as Redis's own ``MONITOR`` reports them
(the commands inside Lua scripts included), so a command that ignored the setting fails here.
Two centres with their own tags on one redis-server do not see each other's toggles, plans,
users or audit trail; ``callrouter redis migrate-keys --from-tag`` moves a centre's keys from one
tag to another (toggles signed again for their new names)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from callrouter import settings
from callrouter.cli import main
from routing.core.live import Toggle
from routing.redis_keys import KEYS, RedisKeys, retagged_name
from routing.supervisor import StoredToggles, signed_toggle_json, toggles_for_tenant
from tests.controller.conftest import EXAMPLE
from tests.support.redis_monitor import Monitor, monitoring, tags_in
from tests.support.redis_server import RedisServer, running_redis
from tests.support.toggle_keys import KEYRING
from tests.support.web import PASSWORD

EAST, WEST = RedisKeys(tag="east"), RedisKeys(tag="west")


# --- the setting --------------------------------------------------------------------------------


def test_the_tag_defaults_to_main_and_comes_from_the_settings(tmp_path: Path) -> None:
    assert settings.load({}, {}).redis_keys() == KEYS
    assert KEYS.tag == "main"
    assert settings.load({}, {"CALLROUTER_REDIS_KEY_TAG": "east"}).redis_keys() == EAST
    config = tmp_path / "callrouter.toml"
    config.write_text('[redis]\nkey_tag = "north-1.a_b"\n')
    keys = settings.load({}, {}, config).redis_keys()
    assert keys.audit_stream() == "callrouter:{north-1.a_b}:audit"


@pytest.mark.parametrize(
    "tag", ["", "a{b", "east}", "{east}", "two words", "x" * 65, "caf\u00e9", "a*b", "tab\t", "new\nline"]
)
def test_a_tag_that_cannot_be_one_is_refused_naming_the_setting(tmp_path: Path, tag: str) -> None:
    config = tmp_path / "callrouter.toml"
    config.write_text(f"[redis]\nkey_tag = {json.dumps(tag)}\n")
    with pytest.raises(settings.SettingsError, match=r"redis\.key_tag.*is not a key tag: 1 to 64"):
        settings.load({}, {}, config)


def test_a_name_moves_from_one_tag_to_another_and_nothing_else_does() -> None:
    assert retagged_name(KEYS.audit_stream(), KEYS, EAST) == EAST.audit_stream()
    assert retagged_name(KEYS.toggle("emergency", "harborough"), KEYS, EAST) == EAST.toggle(
        "emergency", "harborough"
    )
    assert retagged_name(KEYS.sink_dead("charnwood", "harborough/crm"), KEYS, EAST) == EAST.sink_dead(
        "charnwood", "harborough/crm"
    )
    assert retagged_name(WEST.audit_stream(), KEYS, EAST) is None  # another tag's: not moved
    assert retagged_name("callrouter:audit", KEYS, EAST) is None  # the old scheme's: not this
    assert retagged_name("other:{main}:audit", KEYS, EAST) is None


# --- every command keeps to its tag ------------------------------------------------------------


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    with running_redis(max_lifetime_s=300) as server:
        yield server


def only_tag(segments: dict[str, list[str]], tag: str) -> None:
    """Each segment touched keys of ``tag`` and of no other tag."""
    for label, lines in segments.items():
        if label.startswith("("):
            continue
        tags = set().union(*(tags_in(line) for line in lines))
        assert tags == {tag}, (
            f"{label}: touched tags {sorted(tags)}: {[x for x in lines if tag not in x][:5]}"
        )


def run(monitor: Monitor, label: str, argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    monitor.mark(label)
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out + err


@pytest.mark.usefixtures("toggle_key_env")
def test_every_command_touches_its_centres_keys_alone(
    own_redis: RedisServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("CALLROUTER_CONFIG", raising=False)
    monkeypatch.setenv("CALLROUTER_REDIS", own_redis.url)
    monkeypatch.setenv("CALLROUTER_REDIS_KEY_TAG", "east")
    archive = tmp_path / "archive"
    archive.mkdir()
    password = tmp_path / "password"
    password.write_text(PASSWORD)
    plan = ["--plan", str(EXAMPLE)]
    publish = ["plan", "publish", "--direct", str(EXAMPLE), "--comment", "first", "--by", "al"]
    add = ["users", "add", "bob", "--password-file", str(password), "--role", "harborough:viewer"]
    export = ["records", "export", "--tenant", "harborough", "--archive", str(archive)]
    toggle = ["toggle", "--direct", "emergency", "charnwood", "--reason", "flood", "--by", "sam"]
    day = ["--from", "2026-11-24", "--to", "2026-11-24"]
    commands: list[tuple[str, list[str], int | None]] = [
        ("plan publish", publish, 0),
        ("plan versions", ["plan", "versions", "--direct"], 0),
        ("plan show", ["plan", "show", "--direct", "1"], 0),
        ("plan rollback", ["plan", "rollback", "--direct", "1", "--comment", "again", "--by", "al"], None),
        ("toggle on", [*toggle, "--on", "--expires", "2h", *plan], 0),
        ("toggle with the plan in force", [*toggle, "--off"], None),  # reads the published plan
        ("state", ["state", "--direct", *plan], 0),
        ("users add", add, 0),
        ("users token", ["users", "token", "bob", "--name", "tests"], 0),
        ("users list", ["users", "list"], 0),
        ("callbacks list", ["callbacks", "list", "harborough", "--direct"], 0),
        ("records status", ["records", "status", *plan], 0),
        ("records dead-letters", ["records", "dead-letters", *plan], 0),
        ("records retry", ["records", "retry", "--all", *plan], None),
        ("records replay", ["records", "replay", "--tenant", "harborough", *day, *plan], None),
        ("records export", [*export, *day, *plan], None),
    ]  # fmt: skip
    with monitoring(own_redis) as monitor:
        for label, argv, expected in commands:
            code, said = run(monitor, label, argv, capsys)
            if expected is not None:
                assert code == expected, f"{label}: exit {code}: {said}"
        segments = monitor.segments()
    assert set(segments) >= {label for label, _, _ in commands}
    only_tag(segments, "east")
    with SyncRedis.from_url(own_redis.url) as client:
        assert client.keys("callrouter:{main}:*") == []
        assert client.exists(EAST.audit_stream(), EAST.plan_live(), EAST.web_user("bob")) == 3


# --- two centres on one Redis ------------------------------------------------------------------


@pytest.mark.usefixtures("toggle_key_env")
def test_two_centres_on_one_redis_do_not_see_each_others_state(
    own_redis: RedisServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("CALLROUTER_CONFIG", raising=False)
    monkeypatch.setenv("CALLROUTER_REDIS", own_redis.url)
    password = tmp_path / "password"
    password.write_text(PASSWORD)

    def as_centre(tag: str, *argv: str) -> tuple[int, str]:
        monkeypatch.setenv("CALLROUTER_REDIS_KEY_TAG", tag)
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out + err

    toggle = ["toggle", "--direct", "emergency", "charnwood", "--on", "--reason", "flood", "--by", "sam",
              "--expires", "2h", "--plan", str(EXAMPLE)]  # fmt: skip
    assert as_centre("east", *toggle)[0] == 0
    assert (
        as_centre("east", "plan", "publish", "--direct", str(EXAMPLE), "--comment", "c", "--by", "al")[0] == 0
    )
    assert as_centre("east", "users", "add", "bob", "--password-file", str(password))[0] == 0

    code, east = as_centre("east", "state", "--direct", "--plan", str(EXAMPLE), "--json")
    assert code == 0
    east_state = json.loads(east)
    assert "emergency" in east_state["tenants"]["charnwood"]["toggles"]
    assert [e["what"] for e in east_state["audit"]][:3] == [
        "auth.user.added",
        "plan.publish",
        "toggle.emergency.on",
    ]

    code, west = as_centre("west", "state", "--direct", "--plan", str(EXAMPLE), "--json")
    assert code == 0
    west_state = json.loads(west)
    assert west_state["tenants"]["charnwood"]["toggles"] == {}
    assert west_state["audit"] == []
    assert (east_state["key_tag"], west_state["key_tag"]) == ("east", "west")
    assert (
        "the keys of tag west (redis.key_tag)"
        in as_centre("west", "state", "--direct", "--plan", str(EXAMPLE))[1]
    )
    assert as_centre("west", "plan", "versions", "--direct")[1].startswith("no versions")
    assert json.loads(as_centre("west", "users", "list", "--json")[1]) == {"users": [], "tokens": []}
    assert [u["user"] for u in json.loads(as_centre("east", "users", "list", "--json")[1])["users"]] == [
        "bob"
    ]

    # the second centre's own toggle lands beside the first's, each obeyed under its own tag
    assert as_centre("west", *toggle[:-4], "--expires", "1h", "--plan", str(EXAMPLE))[0] == 0
    with SyncRedis.from_url(own_redis.url) as client:
        assert (
            client.exists(EAST.toggle("emergency", "charnwood"), WEST.toggle("emergency", "charnwood")) == 2
        )
        assert client.keys("callrouter:{main}:*") == []


# --- migrate-keys --from-tag -------------------------------------------------------------------


def _main_centre(client: SyncRedis) -> None:
    """A centre's keys under ``main`` as an older install wrote them, and one of another centre."""
    now = datetime.now(UTC)
    client.zadd(KEYS.queue_waiting("hdc-revenues"), {"1795990000.1": 1795990000.0})
    client.xadd(KEYS.records_stream("charnwood"), {"t": "harborough", "e": "{}"})
    client.hset(KEYS.web_session("ab12"), mapping={"user": "sam"})
    client.pexpire(KEYS.web_session("ab12"), 600_000)
    name = KEYS.toggle("emergency", "harborough")
    toggle = Toggle("flooding", "S. Patel", now + timedelta(hours=2))
    client.set(name, signed_toggle_json(KEYRING, name, toggle, now), px=7_200_000)
    client.xadd(KEYS.audit_stream(), {"entry": "old"})
    client.xadd(EAST.audit_stream(), {"entry": "east ran already"})  # its new name holds data
    client.xadd(WEST.audit_stream(), {"entry": "another centre"})


def test_migrate_keys_moves_a_centre_to_its_own_tag(
    own_redis: RedisServer, toggle_key_env: object, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.delenv("CALLROUTER_CONFIG", raising=False)
    monkeypatch.setenv("CALLROUTER_REDIS_KEY_TAG", "east")
    client = SyncRedis.from_url(own_redis.url)
    try:
        _main_centre(client)
        before = sorted(client.keys("*"))
        argv = ["redis", "migrate-keys", "--from-tag", "main", "--redis", own_redis.url]
        assert main([*argv, "--dry-run", "--json"]) == 0
        counted = json.loads(capsys.readouterr().out)
        assert (counted["renamed"], counted["resigned"]) == (3, 1)
        assert counted["kept"] == [KEYS.audit_stream()]
        assert sorted(client.keys("*")) == before  # a dry run changes nothing

        assert main(argv) == 0
        assert capsys.readouterr().out.startswith(
            "renamed 3 keys; toggles signed again for their new names: 1\n"
        )
        assert client.zscore(EAST.queue_waiting("hdc-revenues"), "1795990000.1") == 1795990000.0
        assert client.xlen(EAST.records_stream("charnwood")) == 1
        assert 590_000 < client.pttl(EAST.web_session("ab12")) <= 600_000
        assert 7_100_000 < client.pttl(EAST.toggle("emergency", "harborough")) <= 7_200_000
        assert sorted(k.decode() for k in client.keys("callrouter:{main}:*")) == [KEYS.audit_stream()]
        assert client.xlen(WEST.audit_stream()) == 1  # another centre's keys are not touched
    finally:
        client.close()
    stored = asyncio.run(_toggles(own_redis, "harborough", EAST))
    assert stored.in_force["emergency"].reason == "flooding"  # obeyed under its new name
    assert stored.ignored == {}


async def _toggles(server: RedisServer, tenant: str, keys: RedisKeys) -> StoredToggles:
    """The tenant's toggles as a controller checks them."""
    redis = Redis.from_url(server.url)
    try:
        return await toggles_for_tenant(redis, tenant, KEYRING, keys)
    finally:
        await redis.aclose()


def test_migrate_keys_refuses_a_tag_it_cannot_move(
    own_redis: RedisServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("CALLROUTER_CONFIG", raising=False)
    monkeypatch.setenv("CALLROUTER_REDIS_KEY_TAG", "east")
    argv = ["redis", "migrate-keys", "--redis", own_redis.url, "--from-tag"]
    assert main([*argv, "east"]) == 2
    assert "is redis.key_tag already" in capsys.readouterr().err
    assert main([*argv, "{main}"]) == 2
    assert "--from-tag: '{main}' is not a key tag" in capsys.readouterr().err
    monkeypatch.setenv("CALLROUTER_REDIS_CLUSTER", "true")
    assert main([*argv, "main"]) == 2
    assert "refused: run migrate-keys on the single Redis server" in capsys.readouterr().err
