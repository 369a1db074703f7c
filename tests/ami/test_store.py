"""QueueStateStore against a real redis-server: atomic, idempotent, fenced, fresh."""

from __future__ import annotations

from datetime import UTC, datetime

from redis.asyncio import Redis

from routing.core.live import LiveState
from routing.live.events import CallerJoined, CallerLeft, DeviceState, Hangup, MemberRemoved, MemberStatus
from routing.live.queue_status import QueuedCaller, QueuePicture, QueueStatusPicture
from routing.live.store import QueueStateStore, read_centre_snapshot
from routing.redis_keys import RedisKeys

Q = "council-revenues"


def join(uid: str, ts: float, queue: str = Q) -> CallerJoined:
    return CallerJoined(queue, uid, f"PJSIP/{uid}", "01632960123", "Jane Resident", 1, 1, ts)


def leave(uid: str, ts: float, queue: str = Q) -> CallerLeft:
    return CallerLeft(queue, uid, 1, 0, ts)


def member(
    iface: str,
    ts: float,
    status: DeviceState = DeviceState.NOT_INUSE,
    *,
    paused: bool = False,
    in_call: bool = False,
) -> MemberStatus:
    return MemberStatus(Q, iface, "Agent", iface, "static", status, paused, "", in_call, 0, 0, ts)


def at(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


async def counts(store: QueueStateStore, now: float, queue: str = Q) -> tuple[int, float, int, int]:
    snap = await store.snapshot(queue, at(now))
    assert snap is not None
    return snap.waiting, round(snap.longest_wait_s, 3), snap.logged_in, snap.available


async def test_joins_leaves_and_members_make_the_snapshot(store: QueueStateStore) -> None:
    events = [
        join("a", 100.0),
        join("b", 103.0),
        member("PJSIP/1", 101.0),
        member("PJSIP/2", 101.5, paused=True),
        member("PJSIP/3", 102.0, DeviceState.INUSE, in_call=True),
        member("PJSIP/4", 102.5, DeviceState.UNAVAILABLE),
        leave("a", 104.0),
    ]
    assert await store.apply_many(events)
    assert await counts(store, 110.0) == (1, 7.0, 3, 1)
    assert await store.waiting_callers(Q) == {"b": 103.0}


async def test_duplicates_and_replays_are_harmless(store: QueueStateStore) -> None:
    events = [join("a", 100.0), join("b", 101.0), member("PJSIP/1", 100.5), leave("a", 102.0)]
    for event in events:  # every event delivered twice
        assert await store.apply_many([event, event])
    first = await counts(store, 110.0)
    assert await store.apply_many(events)  # the whole stream replayed
    assert await store.apply_many(list(reversed(events)))  # and replayed backwards
    assert await counts(store, 110.0) == first == (1, 9.0, 1, 1)
    assert await store.waiting_callers(Q) == {"b": 101.0}


async def test_a_duplicate_join_keeps_the_first_join_time(store: QueueStateStore) -> None:
    await store.apply_many([join("a", 100.0), join("a", 105.0)])
    assert await store.waiting_callers(Q) == {"a": 100.0}


async def test_a_later_rejoin_after_leaving_counts_again(store: QueueStateStore) -> None:
    """The caller waits again, since their first join: a rejoin is the wait loop's next slice
    (docs/callbacks.md; tests/ami/test_handle_times.py)."""
    await store.apply_many([join("a", 100.0), leave("a", 108.0), join("a", 120.0)])
    assert await store.waiting_callers(Q) == {"a": 100.0}


async def test_older_member_update_does_not_overwrite_newer(store: QueueStateStore) -> None:
    await store.apply_many([member("PJSIP/1", 200.0, paused=True), member("PJSIP/1", 150.0)])
    assert (await counts(store, 210.0))[2:] == (1, 0)
    removed = MemberRemoved(
        Q, "PJSIP/1", "Agent", "PJSIP/1", "dynamic", DeviceState.NOT_INUSE, False, "", False, 0, 0, 201.0
    )
    await store.apply_many([removed, member("PJSIP/1", 199.0)])
    assert (await counts(store, 210.0))[2:] == (0, 0)


async def test_hangup_removes_a_caller_whose_leave_was_missed(store: QueueStateStore) -> None:
    await store.apply_many([join("a", 100.0), join("b", 101.0, queue="other")])
    await store.apply_many([Hangup("a", "PJSIP/a", 16, "Normal Clearing", 130.0)])
    assert await store.waiting_callers(Q) == {}
    assert await store.waiting_callers("other") == {"b": 101.0}


def picture(
    ts: float, callers: dict[str, int], members: list[MemberStatus], queue: str = Q
) -> QueueStatusPicture:
    entries = tuple(
        QueuedCaller(uid, f"PJSIP/{uid}", i + 1, wait, "", "")
        for i, (uid, wait) in enumerate(callers.items())
    )
    return QueueStatusPicture({queue: QueuePicture(queue, len(entries), tuple(members), entries)}, ts)


async def test_reconcile_corrects_drift(store: QueueStateStore) -> None:
    await store.apply_many([join("ghost", 100.0), join("kept", 101.0), member("PJSIP/1", 100.0, paused=True)])
    await store.apply_many([join("x", 100.0, queue="gone")])
    truth = picture(130.0, {"kept": 29, "missed": 10}, [member("PJSIP/1", 130.0), member("PJSIP/2", 130.0)])
    assert await store.reconcile(truth)
    assert set(await store.waiting_callers(Q)) == {"kept", "missed"}
    assert (await store.waiting_callers(Q))["kept"] == 101.0  # known join time kept
    assert 119.0 <= (await store.waiting_callers(Q))["missed"] <= 120.0
    assert await counts(store, 130.0) == (2, 29.0, 2, 2)
    assert set(await store.snapshots(at(130.0))) == {Q}  # a full reconcile drops unknown queues


async def test_events_older_than_the_reconcile_are_ignored(store: QueueStateStore) -> None:
    assert await store.reconcile(picture(130.0, {"kept": 5}, []))
    await store.apply_many([join("old", 120.0), leave("kept", 125.0), join("new", 131.0)])
    assert set(await store.waiting_callers(Q)) == {"kept", "new"}


async def test_a_non_holder_writes_nothing(redis: Redis, keys: RedisKeys, store: QueueStateStore) -> None:
    intruder = QueueStateStore(redis, "writer-b", keys)
    assert not await intruder.apply_many([join("a", 100.0)])
    assert not await intruder.reconcile(picture(100.0, {"a": 1}, []))
    assert not await intruder.mark_alive(100.0)
    assert [k async for k in redis.scan_iter(match=f"{keys.prefix}*")] == [keys.ami_writer_lease()]


async def test_snapshot_reports_how_old_the_state_is(store: QueueStateStore) -> None:
    await store.apply_many([join("a", 100.0)])
    assert await store.mark_alive(140.0)
    snap = await store.snapshot(Q, at(200.0))
    assert snap is not None
    assert snap.observed_at == at(140.0)
    live = LiveState(queues={Q: snap}, max_age_s=30.0)
    assert live.snapshot(Q, at(160.0)) == snap
    assert live.snapshot(Q, at(200.0)) is None  # stale: treated as unknown
    stamps = await store.last_update()
    assert (stamps.last_event_at, stamps.last_pong_at, stamps.writer) == (at(100.0), at(140.0), "writer-a")


async def test_nothing_known_gives_no_snapshot(store: QueueStateStore) -> None:
    assert await store.snapshot(Q, at(1.0)) is None
    assert await store.snapshots(at(1.0)) == {}


async def test_centre_snapshot_is_published_with_a_ttl(
    redis: Redis, keys: RedisKeys, store: QueueStateStore
) -> None:
    await store.apply_many([join("a", 100.0), member("PJSIP/1", 100.0)])
    snap = await store.snapshot(Q, at(112.5))
    assert snap is not None
    assert await store.publish_centre("harborough", snap, ttl_s=30)
    assert await read_centre_snapshot(redis, "harborough", keys) == snap
    assert 0 < await redis.pttl(keys.centre_snapshot("harborough")) <= 30_000
    assert await read_centre_snapshot(redis, "nowhere", keys) is None


async def test_big_batches_are_split_and_exact(store: QueueStateStore) -> None:
    events = [join(f"c{i}", 1000.0 + i) for i in range(5000)]
    events += [leave(f"c{i}", 7000.0 + i) for i in range(0, 5000, 2)]
    assert await store.apply_many(events)
    assert (await counts(store, 13000.0))[0] == 2500
    snap = await store.snapshot(Q, at(13000.0))
    assert snap is not None
    assert snap.longest_wait_s == 12000.0 - 1.0
    assert snap.observed_at == at(7000.0 + 4998)  # the newest event of the batch
