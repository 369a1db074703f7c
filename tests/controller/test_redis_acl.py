"""The shipped Redis users (``deploy/redis/users.acl``) on a real redis-server.

Every key and channel of ``routing/redis_keys.py`` is checked with ``ACL DRYRUN`` for each user:
what the table below says it needs is allowed, writing what it may only read is refused. A key
added to ``RedisKeys`` without a row here fails the test, so the ACL file is kept in step.
Then the users at work: ``readonly`` and ``controller`` cannot write a toggle, the service can,
and a controller reading as ``controller`` obeys it; ``state`` runs as ``readonly``.
The patterns (``~callrouter:{*}:...``) cover every ``redis.key_tag``; the file with ``{*}`` made
one centre's tag (docs/redis.md, "Several centres on one Redis") gives that centre's users its
keys alone."""

from __future__ import annotations

import inspect
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis as sync_redis
from redis.asyncio import Redis
from redis.exceptions import AuthenticationError, NoPermissionError, ResponseError

from callrouter.cli import main
from ivr.controller import PlanHolder
from routing.live.source import CachedLiveSource
from routing.redis_keys import KEYS, RedisKeys
from routing.supervisor import ToggleRequest, apply_toggle, check_request
from tests.controller.conftest import EXAMPLE
from tests.support.redis_server import RedisServer, free_port, start_redis
from tests.support.toggle_keys import KEYRING

ACL_FILE = Path(__file__).parents[2] / "deploy" / "redis" / "users.acl"
USERS = ("controller", "service", "readonly")
PASSWORD = "test-only-password"

# What each user needs of each key: "rw" read and write, "r" read only (writing refused),
# "-" nothing at all.
# Channels: "sub" subscribe, "pub" publish (both allowed by a channel pattern).
NEEDS: dict[str, dict[str, str]] = {
    "queue_waiting": {"controller": "rw", "service": "r", "readonly": "r"},
    "queue_left": {"controller": "rw", "service": "r", "readonly": "r"},
    "queue_members": {"controller": "rw", "service": "r", "readonly": "r"},
    "queue_snapshot": {"controller": "rw", "service": "r", "readonly": "r"},
    "queue_handle_times": {"controller": "rw", "service": "r", "readonly": "r"},
    "queue_first_joins": {"controller": "rw", "service": "r", "readonly": "r"},
    "known_queues": {"controller": "rw", "service": "r", "readonly": "r"},
    "ami_status": {"controller": "rw", "service": "r", "readonly": "r"},
    "ami_writer_lease": {"controller": "rw", "service": "r", "readonly": "r"},
    # This centre's own snapshot is written by the AMI consumer; a partner's by the service's
    # partner endpoint (web/partners.py), with its replay guard.
    "centre_snapshot": {"controller": "rw", "service": "rw", "readonly": "r"},
    "partner_sequence": {"controller": "rw", "service": "rw", "readonly": "r"},
    "toggle": {"controller": "r", "service": "rw", "readonly": "r"},
    "toggles_changed_channel": {"controller": "sub", "service": "pub", "readonly": "sub"},
    "audit_stream": {"controller": "rw", "service": "rw", "readonly": "r"},
    "plan_in_force": {"controller": "rw", "service": "rw", "readonly": "r"},
    "overflow_latch": {"controller": "rw", "service": "r", "readonly": "r"},
    # The service appends too: a disposition for a call no controller holds (records/dispositions.py)
    "records_stream": {"controller": "rw", "service": "rw", "readonly": "r"},
    "record_appended": {"controller": "rw", "service": "rw", "readonly": "r"},
    # Dispositions over HTTP: the service writes the request and its status, the controllers read
    # the stream in a consumer group (reading and acknowledging write it) and set the status.
    "record_dispositions": {"controller": "rw", "service": "rw", "readonly": "r"},
    "record_disposition": {"controller": "rw", "service": "rw", "readonly": "r"},
    "record_owner": {"controller": "rw", "service": "r", "readonly": "r"},
    "record_owner_alive": {"controller": "rw", "service": "r", "readonly": "r"},
    "record_owner_alive_pattern": {"controller": "rw", "service": "r", "readonly": "r"},
    "live_changed_channel": {"controller": "pub", "service": "sub", "readonly": "sub"},
    "record_facts_for": {"controller": "rw", "service": "r", "readonly": "r"},
    "sink_lease": {"controller": "rw", "service": "r", "readonly": "r"},
    "sink_redo": {"controller": "rw", "service": "r", "readonly": "r"},
    "sink_dead": {"controller": "rw", "service": "r", "readonly": "r"},
    "sink_stats": {"controller": "rw", "service": "r", "readonly": "r"},
    # Published plans: the service publishes and rolls back; controllers follow (with the ACL
    # users an empty store is not seeded by a controller: publish the first version first).
    "plan_versions": {"controller": "r", "service": "rw", "readonly": "r"},
    "plan_texts": {"controller": "r", "service": "rw", "readonly": "r"},
    "plan_live": {"controller": "r", "service": "rw", "readonly": "r"},
    "plan_changed_channel": {"controller": "sub", "service": "pub", "readonly": "sub"},
    # The web service's identities: password hashes, session and token digests are the service's
    # alone ("-": neither read nor written by the others).
    "web_users": {"controller": "-", "service": "rw", "readonly": "-"},
    "web_user": {"controller": "-", "service": "rw", "readonly": "-"},
    "web_session": {"controller": "-", "service": "rw", "readonly": "-"},
    "web_token": {"controller": "-", "service": "rw", "readonly": "-"},
    "web_token_ids": {"controller": "-", "service": "rw", "readonly": "-"},
    "web_login_failures": {"controller": "-", "service": "rw", "readonly": "-"},
    "partner_sender_lease": {"controller": "-", "service": "rw", "readonly": "-"},
    # Queued callbacks: the IVR requests and the lease holder dials (controller); a supervisor
    # cancels through the service.
    "callbacks_pending": {"controller": "rw", "service": "rw", "readonly": "r"},
    "callback": {"controller": "rw", "service": "rw", "readonly": "r"},
}


def key_methods(keys: RedisKeys = KEYS) -> dict[str, str]:
    """Every key or channel name of the schema ``keys``, with sample arguments."""
    found = {}
    for name, method in inspect.getmembers(keys, inspect.ismethod):
        if name.startswith("_"):
            continue
        params = [p for p in inspect.signature(method).parameters if p != "self"]
        found[name] = method(*(f"sample-{p}" for p in params))
    return found


def one_centre(acl: str, tag: str) -> str:
    """The ACL file for the users of one centre sharing a Redis with others: its key and channel
    patterns limited to the centre's tag (docs/redis.md)."""
    return acl.replace("{*}", "{" + tag + "}").replace("&callrouter:*", "&callrouter:{" + tag + "}:*")


@contextmanager
def acl_server(acl: str) -> Iterator[RedisServer]:
    """A redis-server loading ``acl`` with a password for every user."""
    workdir = Path(tempfile.mkdtemp(prefix="callrouter-acl-"))
    copy = workdir / "users.acl"
    copy.write_text(acl.replace(" resetpass ", f" resetpass >{PASSWORD} "))
    server = start_redis(
        free_port(), workdir, "--aclfile", str(copy), "--save", "", "--appendonly", "no", max_lifetime_s=300
    )
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def acl_redis() -> Iterator[RedisServer]:
    """A redis-server loading a copy of the shipped ACL file."""
    with acl_server(ACL_FILE.read_text()) as server:
        yield server


def url(server: RedisServer, user: str) -> str:
    return f"redis://{user}@{server.host}:{server.port}/0"


def client(server: RedisServer, user: str) -> sync_redis.Redis:
    return sync_redis.Redis.from_url(url(server, user), password=PASSWORD)


def dryrun(admin: sync_redis.Redis, user: str, *command: str) -> bool:
    answer = admin.execute_command("ACL", "DRYRUN", user, *command)
    return bool(answer in (b"OK", "OK"))


def test_every_key_is_in_the_table() -> None:
    """A new key in routing/redis_keys.py needs its row here and its pattern in the ACL file."""
    assert sorted(key_methods()) == sorted(NEEDS)


@pytest.mark.parametrize("keys", [KEYS, RedisKeys(tag="east")], ids=["main", "east"])
def test_each_user_reaches_what_it_needs_and_writes_nothing_else(
    acl_redis: RedisServer, keys: RedisKeys
) -> None:
    with client(acl_redis, "admin") as admin:
        for method, name in key_methods(keys).items():
            for user in USERS:
                need = NEEDS[method][user]
                where = f"{user} {method} ({name})"
                if need in ("sub", "pub"):
                    assert dryrun(admin, user, "SUBSCRIBE" if need == "sub" else "PUBLISH", name, *(
                        ["x"] if need == "pub" else []
                    )), where  # fmt: skip
                    continue
                if need == "-":
                    assert not dryrun(admin, user, "GET", name), f"{where}: should not read"
                    assert not dryrun(admin, user, "SET", name, "x"), f"{where}: should not write"
                    continue
                assert dryrun(admin, user, "GET", name), f"{where}: cannot read"
                assert dryrun(admin, user, "SET", name, "x") == (need == "rw"), (
                    f"{where}: write should be {need}"
                )
        for user in USERS:  # nobody but the admin runs what could wipe or reconfigure Redis
            for command in (["FLUSHALL"], ["CONFIG", "SET", "appendonly", "no"], ["KEYS", "*"]):
                assert not dryrun(admin, user, *command), (user, command)
            assert not dryrun(admin, user, "GET", "not-callrouter:key"), user


def test_a_centres_own_users_reach_its_keys_and_no_other_centres() -> None:
    east, west = RedisKeys(tag="east"), RedisKeys(tag="west")
    with acl_server(one_centre(ACL_FILE.read_text(), "east")) as server, client(server, "admin") as admin:
        for method, name in key_methods(east).items():  # what each user needs, as with every tag
            for user in USERS:
                need = NEEDS[method][user]
                if need in ("sub", "pub"):
                    command = ["SUBSCRIBE", name] if need == "sub" else ["PUBLISH", name, "x"]
                    assert dryrun(admin, user, *command), (user, name)
                else:
                    assert dryrun(admin, user, "GET", name) == (need != "-"), (user, name)
        for name in key_methods(west).values():  # another centre's: nothing at all
            for user in USERS:
                for command in (
                    ["GET", name],
                    ["SET", name, "x"],
                    ["SUBSCRIBE", name],
                    ["PUBLISH", name, "x"],
                ):
                    assert not dryrun(admin, user, *command), (user, command)


def test_without_a_user_nothing_is_answered(acl_redis: RedisServer) -> None:
    anonymous = sync_redis.Redis(host=acl_redis.host, port=acl_redis.port)
    with anonymous, pytest.raises((ResponseError, AuthenticationError), match=r"NOAUTH|authenticated"):
        anonymous.get(KEYS.toggle("closure", "harborough"))


def test_readonly_and_controller_cannot_set_a_toggle(acl_redis: RedisServer) -> None:
    """The raw write of the issue, tried as each user that must not make it."""
    key = KEYS.toggle("closure", "harborough")
    for user in ("readonly", "controller"):
        with client(acl_redis, user) as redis, pytest.raises(NoPermissionError):
            redis.set(key, '{"reason":"","by":"x","expires_at":"2099-01-01T00:00:00+00:00"}')
    with client(acl_redis, "admin") as admin:
        assert admin.get(key) is None


async def test_the_service_writes_a_toggle_the_controller_obeys(acl_redis: RedisServer) -> None:
    """As ``service``: the toggle and its audit entry; as ``controller``: apply_toggle refused
    whole (no toggle, no audit entry), the live copy refreshed, the toggle in force and a latch
    written."""
    holder = PlanHolder.load(EXAMPLE)
    now = datetime.now(UTC)
    request = ToggleRequest("emergency", "harborough", True, "user:3", "Flooding", "1h")
    toggle = check_request(holder.current.plan, request, now)
    controller = Redis.from_url(url(acl_redis, "controller"), password=PASSWORD)
    service = Redis.from_url(url(acl_redis, "service"), password=PASSWORD)
    try:
        with pytest.raises(ResponseError, match="no permissions"):
            await apply_toggle(controller, request, toggle, now, keyring=KEYRING)
        assert await service.xlen(KEYS.audit_stream()) == 0
        await apply_toggle(service, request, toggle, now, keyring=KEYRING)
        live = CachedLiveSource(controller, lambda: holder.current, keyring=KEYRING)
        await live.refresh(now)
        await live.source.remember((("harborough/revenues", True),))
        _, toggles = live.read_now(holder.current, "harborough", now)
        assert toggles.emergency["harborough"] == toggle
        assert await controller.get(KEYS.overflow_latch("harborough", "revenues")) == b"1"
    finally:
        await controller.aclose()
        await service.aclose()


@pytest.mark.usefixtures("toggle_key_env")
def test_state_runs_as_readonly(acl_redis: RedisServer, capsys: pytest.CaptureFixture[str]) -> None:
    """``callrouter state`` as ``readonly``: the toggle the service wrote (the test above), the
    live queues (a read-only script) and the audit trail."""
    argv = ["state", "--direct", "--plan", str(EXAMPLE), "--redis", url(acl_redis, "readonly")]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CALLROUTER_REDIS_PASSWORD", PASSWORD)
        assert main(argv) == 0
    out = capsys.readouterr().out
    assert "harborough: toggles: emergency (Flooding; by user:3; until " in out
    assert "user:3: toggle.emergency.on harborough Flooding" in out


def test_keys_under_another_prefix_are_out_of_reach(acl_redis: RedisServer) -> None:
    """The patterns name the production prefix: keys of another prefix are refused, so the
    file is edited (not widened to ``~*``) when a deployment changes the prefix."""
    with client(acl_redis, "admin") as admin:
        other = RedisKeys(prefix="elsewhere:")
        assert not dryrun(admin, "controller", "GET", other.toggle("closure", "harborough"))
