"""What the AMI writer keeps for the wait loop: recent handle times per queue (the expected-wait
estimate) and each waiting caller's first join (the queue's longest wait across slices)."""

from __future__ import annotations

from redis.asyncio import Redis

from routing.live.events import AgentComplete, to_queue_event
from routing.live.queue_status import QueuedCaller, QueuePicture, QueueStatusPicture
from routing.live.store import HANDLE_TIMES_KEPT, QueueStateStore, read_handle_times
from routing.redis_keys import RedisKeys
from tests.ami.helpers import fixture_messages
from tests.ami.test_store import at, join, leave

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


# --- a caller who rejoins keeps their first join (the wait loop's slices) -------------------------


async def test_a_rejoining_caller_keeps_the_first_join(store: QueueStateStore) -> None:
    """Join at 100, leave at 160 (a slice's timeout), rejoin at 165: still waiting since 100, so
    the queue's longest wait at 200 is 100 s, not 35 s; another caller is untouched."""
    events = [join("a", 100.0), join("b", 150.0), leave("a", 160.0), join("a", 165.0)]
    assert await store.apply_many(events)
    assert await store.waiting_callers(Q) == {"a": 100.0, "b": 150.0}
    snap = await store.snapshot(Q, at(200.0))
    assert snap is not None
    assert snap.longest_wait_s == 100.0


async def test_rejoins_in_separate_batches_and_replays(store: QueueStateStore) -> None:
    assert await store.apply_many([join("a", 100.0)])
    assert await store.apply_many([leave("a", 160.0)])
    assert await store.apply_many([join("a", 165.0)])
    assert await store.apply_many([join("a", 165.0)])  # replayed
    assert await store.waiting_callers(Q) == {"a": 100.0}


async def test_a_reconcile_keeps_the_first_join(store: QueueStateStore) -> None:
    """QueueStatus's Wait counts from the latest join: the reconcile keeps the first."""
    assert await store.apply_many([join("a", 100.0), leave("a", 160.0), join("a", 165.0)])
    caller = QueuedCaller("a", "PJSIP/a", 1, 35, "01632960123", "Jane Resident")
    picture = QueueStatusPicture({Q: QueuePicture(Q, 1, (), (caller,))}, 200.0)
    assert await store.reconcile(picture)
    assert await store.waiting_callers(Q) == {"a": 100.0}


async def test_a_first_join_without_the_lease_writes_nothing(redis: Redis, keys: RedisKeys) -> None:
    stale = QueueStateStore(redis, "writer-b", keys)
    assert not await stale.keep_first_joins([(Q, "a", 100.0)])
    assert await redis.zrange(keys.queue_first_joins(Q), 0, -1) == []


async def test_rejoins_in_several_queues_in_one_batch(store: QueueStateStore) -> None:
    events = [
        join("a", 100.0),
        join("b", 110.0, queue="waste"),
        join("c", 120.0, queue="waste"),
        leave("a", 160.0),
        leave("c", 161.0, queue="waste"),
        join("a", 165.0),
        join("c", 166.0, queue="waste"),
        join("d", 167.0, queue="waste"),
    ]
    assert await store.apply_many(events)
    assert await store.waiting_callers(Q) == {"a": 100.0}
    assert await store.waiting_callers("waste") == {"b": 110.0, "c": 120.0, "d": 167.0}
