"""Recent handle times per queue, written by the AMI writer for the expected-wait estimate."""

from __future__ import annotations

from redis.asyncio import Redis

from routing.live.events import AgentComplete, to_queue_event
from routing.live.store import HANDLE_TIMES_KEPT, QueueStateStore, read_handle_times
from routing.redis_keys import RedisKeys
from tests.ami.helpers import fixture_messages

Q = "council-revenues"


def done(uid: str, talk_s: int, ts: float, queue: str = Q) -> AgentComplete:
    return AgentComplete(queue, uid, "PJSIP/agent1", "Agent One", 30, talk_s, "caller", ts)


async def test_the_captured_agent_complete_gives_its_talk_time(store: QueueStateStore) -> None:
    """ami_queue_answered_call.txt: AgentComplete HoldTime 2, TalkTime 6: the handle time is
    the 6 s of talk (HoldTime is the caller's wait before the answer)."""
    events = [e for m in fixture_messages("queue_answered_call.txt") if (e := to_queue_event(m, 100.0))]
    assert any(isinstance(e, AgentComplete) for e in events)
    assert await store.apply_many(events)
    assert await store.handle_times(Q) == [6.0]


async def test_replayed_events_are_kept_once_and_only_the_newest_kept(store: QueueStateStore) -> None:
    events = [done(f"u{n}", 60 + n, 1000.0 + n) for n in range(HANDLE_TIMES_KEPT + 10)]
    assert await store.apply_many(events)
    assert await store.apply_many(events[-5:])  # a replay
    kept = await store.handle_times(Q)
    assert len(kept) == HANDLE_TIMES_KEPT
    assert kept[0] == 60 + 10  # the ten oldest were dropped
    assert kept[-1] == 60 + HANDLE_TIMES_KEPT + 9


async def test_queues_are_kept_apart(store: QueueStateStore) -> None:
    assert await store.apply_many([done("a", 100, 1.0), done("b", 200, 2.0, queue="waste")])
    assert await store.handle_times(Q) == [100.0]
    assert await store.handle_times("waste") == [200.0]


async def test_a_writer_without_the_lease_writes_nothing(redis: Redis, keys: RedisKeys) -> None:
    stale = QueueStateStore(redis, "writer-b", keys)
    assert not await stale.record_handle_times([done("a", 100, 1.0)])
    assert await read_handle_times(redis, keys, Q) == []


async def test_a_foreign_entry_is_skipped(store: QueueStateStore, redis: Redis, keys: RedisKeys) -> None:
    await redis.zadd(keys.queue_handle_times(Q), {"garbage": 1.0})
    assert await store.apply_many([done("a", 90, 2.0)])
    assert await read_handle_times(redis, keys, Q) == [90.0]
