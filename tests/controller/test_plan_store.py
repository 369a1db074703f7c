"""The plan store against a real redis-server: publish, versions, rollback, preview, and a
controller's follower keeping the last good plan when a stored version does not load."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from redis.asyncio import Redis

from callrouter.service import StoreFollower
from ivr.controller import PlanHolder
from routing import plan_store
from routing.redis_keys import RedisKeys
from routing.supervisor import audit_tail
from tests.controller.conftest import EXAMPLE
from tests.support.redis_server import RedisServer

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
GOOD = EXAMPLE.read_text()
SHORT_DAY = GOOD.replace('weekdays: ["08:30-17:30"]', 'weekdays: ["08:30-12:00"]', 1)
BAD = "version: 1\ncentre: x\ntenants:\n  a:\n    hours: 5\n    entry: {type: nowhere}\n"


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_server.url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def keys() -> RedisKeys:
    return RedisKeys(prefix=f"test-{uuid.uuid4().hex[:8]}:")


def test_the_short_day_plan_differs() -> None:
    assert SHORT_DAY != GOOD


async def test_publish_stores_a_version_with_its_sha256_and_makes_it_live(
    redis: Redis, keys: RedisKeys
) -> None:
    change = await plan_store.publish(redis, GOOD, "alice", "first plan", NOW, keys=keys)
    assert change.changed
    assert change.live.version == 1
    assert change.live.generation == 1
    assert change.live.activate_at == NOW + timedelta(seconds=plan_store.ACTIVATION_DELAY_S)
    await plan_store.publish(redis, SHORT_DAY, "bob", "short Tuesday", NOW + timedelta(hours=1), keys=keys)
    listed = await plan_store.versions(redis, keys=keys)
    assert [(v.number, v.author, v.comment) for v in listed] == [
        (2, "bob", "short Tuesday"),
        (1, "alice", "first plan"),
    ]
    assert listed[0].sha256 == hashlib.sha256(SHORT_DAY.encode()).hexdigest()
    assert listed[1].sha256 == hashlib.sha256(GOOD.encode()).hexdigest()
    assert listed[1].at == NOW
    live = await plan_store.live(redis, keys=keys)
    assert live is not None
    assert (live.version, live.generation, live.sha256) == (2, 2, listed[0].sha256)
    stored = await plan_store.get(redis, 1, keys=keys)
    assert stored is not None
    assert stored.text == GOOD
    entries = await audit_tail(redis, keys=keys)
    assert [(e["what"], e["by"], e["version"], e["generation"]) for e in entries] == [
        ("plan.publish", "bob", 2, 2),
        ("plan.publish", "alice", 1, 1),
    ]
    assert entries[0]["from_version"] == 1
    assert entries[0]["previous"] == {"version": 1, "generation": 1}
    json.dumps([v.data() for v in listed])  # what the API returns


async def test_a_publish_checked_against_a_live_version_that_moved_stores_nothing(
    redis: Redis, keys: RedisKeys
) -> None:
    """Compare and set: two publishers checked against version 1; the second is refused."""
    first = await plan_store.publish(redis, GOOD, "alice", "first plan", NOW, keys=keys, expect_live_sha="")
    seen = first.live.sha256
    await plan_store.publish(redis, SHORT_DAY, "bob", "short day", NOW, keys=keys, expect_live_sha=seen)
    with pytest.raises(plan_store.LiveMoved, match="live plan changed"):
        await plan_store.publish(
            redis, GOOD.replace("08:30", "08:00", 1), "carol", "early", NOW, keys=keys, expect_live_sha=seen
        )
    assert [v.number for v in await plan_store.versions(redis, keys=keys)] == [2, 1]
    live = await plan_store.live(redis, keys=keys)
    assert live is not None
    assert (live.version, live.generation) == (2, 2)
    with pytest.raises(plan_store.LiveMoved):  # expecting an empty store that is not empty
        await plan_store.publish(redis, GOOD, "dan", "again", NOW, keys=keys, expect_live_sha="")


async def test_publishing_the_live_text_again_changes_nothing(redis: Redis, keys: RedisKeys) -> None:
    await plan_store.publish(redis, GOOD, "alice", "first plan", NOW, keys=keys)
    again = await plan_store.publish(redis, GOOD, "bob", "again", NOW, keys=keys)
    assert not again.changed
    assert "nothing published" in again.message
    assert "live version 1" in again.message
    assert len(await plan_store.versions(redis, keys=keys)) == 1
    assert len(await audit_tail(redis, keys=keys)) == 1
    live = await plan_store.live(redis, keys=keys)
    assert live is not None
    assert live.generation == 1


async def test_an_invalid_plan_is_refused_with_every_problem_and_the_live_plan_stays(
    redis: Redis, keys: RedisKeys
) -> None:
    await plan_store.publish(redis, GOOD, "alice", "first plan", NOW, keys=keys)
    with pytest.raises(plan_store.PlanStoreError) as refused:
        await plan_store.publish(redis, BAD, "bob", "broken", NOW, name="bad.yaml", keys=keys)
    problems = [str(p) for p in refused.value.problems]
    assert len(problems) >= 4, problems
    assert any(p.startswith("bad.yaml:5: tenants.a.hours") for p in problems), problems
    assert any("unknown destination type 'nowhere'" in p and p.startswith("bad.yaml:6") for p in problems), (
        problems
    )
    assert any("missing required field 'centres'" in p for p in problems), problems
    live = await plan_store.live(redis, keys=keys)
    assert live is not None
    assert (live.version, live.generation) == (1, 1)
    assert len(await plan_store.versions(redis, keys=keys)) == 1
    assert len(await audit_tail(redis, keys=keys)) == 1


@pytest.mark.parametrize(
    ("author", "comment", "said"),
    [
        ("alice", "", "the comment is empty"),
        ("", "why", "the author is empty"),
        ("alice", "x" * 501, "at most 500"),
        ("alice", "ok\x1b[31m red", "control character"),
        ("alice\nforged line", "why", "control character"),
    ],
)
async def test_author_and_comment_are_checked(
    redis: Redis, keys: RedisKeys, author: str, comment: str, said: str
) -> None:
    with pytest.raises(plan_store.PlanStoreError, match=said):
        await plan_store.publish(redis, GOOD, author, comment, NOW, keys=keys)
    assert await plan_store.live(redis, keys=keys) is None


async def test_rollback_makes_an_old_version_live_as_a_new_generation(redis: Redis, keys: RedisKeys) -> None:
    await plan_store.publish(redis, GOOD, "alice", "first plan", NOW, keys=keys)
    await plan_store.publish(redis, SHORT_DAY, "bob", "short Tuesday", NOW, keys=keys)
    change = await plan_store.rollback(redis, 1, "carol", "the short day was a mistake", NOW, keys=keys)
    assert change.changed
    assert change.previous_version == 2
    assert (change.live.version, change.live.generation) == (1, 3)
    assert change.message == "rolled back from version 2 to version 1 (generation 3)"
    again = await plan_store.rollback(redis, 1, "carol", "twice", NOW, keys=keys)
    assert not again.changed
    entry = (await audit_tail(redis, keys=keys))[0]
    assert (entry["what"], entry["by"], entry["from_version"], entry["version"]) == (
        "plan.rollback",
        "carol",
        2,
        1,
    )
    # versions never change: both still there, as published
    assert [v.number for v in await plan_store.versions(redis, keys=keys)] == [2, 1]
    second = await plan_store.get(redis, 2, keys=keys)
    assert second is not None
    assert second.text == SHORT_DAY
    with pytest.raises(plan_store.PlanStoreError, match="no version 9 \\(the store has versions 1 to 2\\)"):
        await plan_store.rollback(redis, 9, "carol", "no such", NOW, keys=keys)


async def test_first_only_seeds_an_empty_store_once(redis: Redis, keys: RedisKeys) -> None:
    first = await plan_store.publish(redis, GOOD, "controller a", "seed", NOW, first_only=True, keys=keys)
    second = await plan_store.publish(
        redis, SHORT_DAY, "controller b", "seed", NOW, first_only=True, keys=keys
    )
    assert first.changed
    assert not second.changed
    assert second.live.version == 1
    assert len(await plan_store.versions(redis, keys=keys)) == 1


def test_preview_gives_the_differences_and_the_timelines_as_plan_diff_and_timeline_do() -> None:
    data = plan_store.preview(GOOD, SHORT_DAY, NOW, weeks=1)
    json.dumps(data)
    assert data["changes"] == len(data["differences"]) > 0
    first = data["differences"][0]
    assert first["number"] == "+441632960001"
    assert first["old"].startswith("open")
    assert first["new"].startswith("closed")
    harborough = data["timelines"]["harborough"]
    assert harborough["changed"]
    assert any(t["at"] == "2026-11-24T12:00:00+00:00" and not t["open"] for t in harborough["candidate"])
    assert not any(t["at"] == "2026-11-24T12:00:00+00:00" for t in harborough["live"])
    same = plan_store.preview(GOOD, GOOD, NOW, weeks=1)
    assert same["changes"] == 0
    assert not any(t["changed"] for t in same["timelines"].values())


async def test_preview_against_the_live_version(redis: Redis, keys: RedisKeys) -> None:
    nothing_live = await plan_store.preview_live(redis, SHORT_DAY, NOW, weeks=1, keys=keys)
    assert nothing_live["live_version"] is None
    assert nothing_live["changes"] == 0
    assert nothing_live["timelines"]["harborough"]["live"] == []
    await plan_store.publish(redis, GOOD, "alice", "first plan", NOW, keys=keys)
    data = await plan_store.preview_live(redis, SHORT_DAY, NOW, weeks=1, keys=keys)
    assert (data["live_version"], data["live_generation"]) == (1, 1)
    assert data["differences"] == plan_store.preview(GOOD, SHORT_DAY, NOW, weeks=1)["differences"]


def test_preview_refuses_a_candidate_with_errors() -> None:
    with pytest.raises(plan_store.PlanStoreError) as refused:
        plan_store.preview(GOOD, BAD, NOW)
    assert len(refused.value.problems) >= 4


def test_switch_waits_for_the_activation_time_but_not_for_a_clock_far_ahead() -> None:
    activate = NOW + timedelta(seconds=0.5)
    assert plan_store.switch_delay(activate, NOW + timedelta(seconds=0.2), NOW, 2.0) == pytest.approx(0.3)
    assert plan_store.switch_delay(activate, NOW + timedelta(seconds=0.7), NOW, 2.0) == 0.0
    far = NOW + timedelta(hours=1)
    assert plan_store.switch_delay(far, NOW + timedelta(seconds=0.5), NOW, 2.0) == pytest.approx(1.5)


async def test_a_stored_version_that_fails_to_load_keeps_the_last_good_plan(
    redis: Redis, keys: RedisKeys, tmp_path: Path
) -> None:
    """Should not happen (versions are validated when published), but a raw write could do it."""
    await plan_store.publish(redis, GOOD, "alice", "first plan", NOW, keys=keys)
    holder = PlanHolder.load(EXAMPLE)
    holder.generation = 1
    follower = StoreFollower(holder, redis, keys=keys)
    before = holder.current
    bad_sha = hashlib.sha256(BAD.encode()).hexdigest()
    await redis.hset(keys.plan_texts(), "2", BAD)
    meta = {"author": "mallory", "at": NOW.isoformat(), "comment": "raw", "sha256": bad_sha}
    await redis.hset(keys.plan_versions(), "2", json.dumps(meta))
    await redis.hset(keys.plan_live(), mapping={"generation": 2, "version": 2, "sha256": bad_sha,
                                                  "activate_at": NOW.timestamp()})  # fmt: skip
    assert await follower.check() == "rejected"
    assert holder.current is before
    assert holder.generation == 1
    assert await follower.check() == "unchanged"  # not tried again
    change = await plan_store.publish(redis, SHORT_DAY, "bob", "short Tuesday", datetime.now(UTC), keys=keys)
    assert await follower.check() == "switched"
    assert holder.generation == change.live.generation == 3
    assert holder.current is not before


async def test_the_poll_finds_a_generation_whose_notice_was_lost(redis: Redis, keys: RedisKeys) -> None:
    """The pub/sub notice is the fast path; a poll every 0.2 s finds a generation without one."""
    first = await plan_store.publish(redis, GOOD, "alice", "first plan", NOW, keys=keys)
    holder = PlanHolder.load(EXAMPLE)
    holder.generation = first.live.generation
    follower = StoreFollower(holder, redis, poll_s=0.2, keys=keys)
    running = asyncio.create_task(follower.run())
    try:
        await asyncio.sleep(0.3)  # listening
        sha = hashlib.sha256(SHORT_DAY.encode()).hexdigest()
        meta = {"author": "bob", "at": NOW.isoformat(), "comment": "no notice", "sha256": sha}
        await redis.hset(keys.plan_texts(), "2", SHORT_DAY)
        await redis.hset(keys.plan_versions(), "2", json.dumps(meta))
        written = time.time()
        await redis.hset(keys.plan_live(), mapping={"generation": 2, "version": 2, "sha256": sha,
                                                      "activate_at": written})  # fmt: skip
        async with asyncio.timeout(5):
            while holder.generation != 2:
                await asyncio.sleep(0.01)
        assert time.time() - written < 0.5
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
