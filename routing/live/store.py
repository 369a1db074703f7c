"""Live queue state in Redis, written from AMI events, read as QueueSnapshots.

Layers (as wazo-calld's state persistor): the key scheme is ``routing.redis_keys``,
the codec is the pure ``encode_event``/``member_json`` below, the backend is Redis
with the Lua scripts of ``routing.live.scripts``.

Writes are atomic and idempotent: one script call applies a whole batch of events
(or a whole reconcile picture) and recomputes the derived snapshot of every queue it
touched. Waiting callers are a sorted set Uniqueid -> join time (a duplicate join keeps
the first time), leaves leave a tombstone so a replayed older join is ignored, and a
member record is replaced only by a newer event. Applying the same events twice, or
replaying a stream, therefore leaves the same state.

Freshness: every write by the lease holder (events, reconcile, Pong) sets
``alive_at``; snapshots carry it as ``observed_at``. When the AMI stream or the writer
dies, ``observed_at`` stops moving and ``LiveState`` treats the snapshot as unknown
once it is older than its ``max_age_s``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from routing.core.live import QueueSnapshot
from routing.live import scripts
from routing.live.events import (
    AgentComplete,
    CallerJoined,
    CallerLeft,
    Hangup,
    MemberAdded,
    MemberEvent,
    MemberPaused,
    MemberRemoved,
    MemberStatus,
    QueueEvent,
)
from routing.live.queue_status import QueuePicture, QueueStatusPicture
from routing.redis_keys import KEYS, RedisKeys

MAX_EVENTS_PER_CALL = 2000
"""Events per script call: keeps one call short (Redis runs scripts one at a time)."""

SNAPSHOT_FIELDS = ("waiting", "oldest_join", "logged_in", "available")

HANDLE_TIMES_KEPT = 50
"""Recent handle times kept per queue for the expected-wait estimate (``routing.core.wait``)."""

FIRST_JOINS_KEPT_S = 4 * 3600
"""How long a caller's first join to a queue is remembered (longer than any wait)."""

JOIN_SLACK_S = 1.0
"""QueueEntry ``Wait`` is truncated to whole seconds: the caller joined up to a second
earlier than ``observed_at - Wait``; the reconcile keeps the earlier estimate."""


def member_json(event: MemberEvent, *, removed: bool = False) -> str:
    """The stored member record; ``ts`` first so the script can read it cheaply."""
    record = {
        "ts": event.ts,
        "name": event.name,
        "status": int(event.status),
        "paused": event.paused,
        "paused_reason": event.paused_reason,
        "in_call": event.in_call,
        "logged_in": event.logged_in,
        "available": event.available,
        "removed": removed,
    }
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False)


def encode_event(event: QueueEvent) -> list[str]:
    """The script ops for one event; empty when the event does not change state.

    CallerAbandoned is always followed by CallerLeft, and member device/in-call state
    comes from the QueueMemberStatus that follows AgentCalled/Connect/Complete, so
    those events change nothing here."""
    match event:
        case CallerJoined():
            return ["J", event.queue, event.uniqueid, repr(event.ts)]
        case CallerLeft():
            return ["L", event.queue, event.uniqueid, repr(event.ts)]
        case MemberStatus() | MemberAdded() | MemberPaused() | MemberRemoved():
            record = member_json(event, removed=isinstance(event, MemberRemoved))
            return ["M", event.queue, event.interface, record, repr(event.ts)]
        case Hangup():
            return ["H", event.uniqueid, repr(event.ts)]
    return []


def encode_queue(picture: QueuePicture, observed_at: float) -> list[str]:
    """Reconcile args for one queue: name, counts, members, callers (join estimates)."""
    args = [picture.queue, str(len(picture.members)), str(len(picture.callers))]
    for member in picture.members:
        args += [member.interface, member_json(member)]
    for caller in picture.callers:
        args += [caller.uniqueid, repr(observed_at - caller.wait_s - JOIN_SLACK_S / 2)]
    return args


def _templates(keys: RedisKeys) -> list[str]:
    """(prefix, suffix) of each per-queue key around the queue name."""
    marker = "\x00"
    out: list[str] = []
    for build in (keys.queue_waiting, keys.queue_left, keys.queue_members, keys.queue_snapshot):
        out += build(marker).split(marker)
    return out


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _time(value: Any) -> datetime | None:
    text = _text(value) if value is not None else ""
    return datetime.fromtimestamp(float(text), UTC) if text else None


def _snapshot(queue: str, fields: Sequence[Any], alive: datetime, now: datetime) -> QueueSnapshot:
    waiting, oldest, logged_in, available = [_text(v) if v is not None else "" for v in fields]
    longest = max(0.0, now.timestamp() - float(oldest)) if oldest else 0.0
    return QueueSnapshot(
        queue=queue,
        waiting=int(waiting or 0),
        longest_wait_s=longest,
        logged_in=int(logged_in or 0),
        available=int(available or 0),
        observed_at=alive,
    )


@dataclass(frozen=True, slots=True)
class LiveTimestamps:
    """When the writer last applied events, reconciled, got a Pong, knew it was live."""

    last_event_at: datetime | None
    last_reconcile_at: datetime | None
    last_pong_at: datetime | None
    alive_at: datetime | None
    writer: str | None


class QueueStateStore:
    """Live queue state of one Asterisk, written by the lease holder ``writer``.

    ``redis`` may decode responses or not. Reads need no lease; writes return False
    (and change nothing) when ``writer`` does not hold the AMI writer lease."""

    def __init__(self, redis: Redis, writer: str, keys: RedisKeys = KEYS) -> None:
        self._redis = redis
        self.writer = writer
        self.keys = keys
        self._apply = redis.register_script(scripts.APPLY)
        self._reconcile = redis.register_script(scripts.RECONCILE)
        self._mark_alive = redis.register_script(scripts.MARK_ALIVE)
        self._fenced_set = redis.register_script(scripts.FENCED_SET)
        self._read_all = redis.register_script(scripts.READ_ALL)
        self._handle_times = redis.register_script(scripts.HANDLE_TIMES)
        self._first_joins = redis.register_script(scripts.FIRST_JOINS)
        self._templates = _templates(keys)

    def _head_keys(self) -> list[str]:
        k = self.keys
        return [k.known_queues(), k.ami_status(), k.ami_writer_lease()]

    def _head(self, now: float) -> list[str]:
        return [*self._templates, self.writer, repr(now), self.keys.live_changed_channel()]

    # --- writes --------------------------------------------------------------------------

    async def apply(self, event: QueueEvent) -> bool:
        """Apply one event atomically (see :meth:`apply_many`)."""
        return await self.apply_many([event])

    async def apply_many(self, events: Iterable[QueueEvent], alive_at: float | None = None) -> bool:
        """Apply events in order, up to MAX_EVENTS_PER_CALL per atomic script call.

        ``alive_at`` (default: the newest event time) is recorded as the time the
        stream was last known live. False when this instance is not the writer."""
        ops: list[str] = []
        count, newest = 0, 0.0
        completed: list[AgentComplete] = []
        joins: list[tuple[str, str, float]] = []
        for event in events:
            ops += encode_event(event)
            if isinstance(event, AgentComplete):
                completed.append(event)
            elif isinstance(event, CallerJoined):
                joins.append((event.queue, event.uniqueid, event.ts))
            count, newest = count + 1, max(newest, event.ts)
            if count == MAX_EVENTS_PER_CALL:
                if not await self._run_apply(ops, newest):
                    return False
                ops, count = [], 0
        stamp = alive_at if alive_at is not None else newest
        applied = await self._run_apply(ops, max(stamp, newest)) if ops or stamp else True
        return applied and await self.record_handle_times(completed) and await self.keep_first_joins(joins)

    async def keep_first_joins(self, joins: Iterable[tuple[str, str, float]]) -> bool:
        """``(queue, uniqueid, join time)`` of callers who joined: a caller seen joining the same
        queue before keeps that first time in the waiting set. One fenced script call for the
        whole batch, after the batch's own (nothing to do: True)."""
        by_queue: dict[str, list[str]] = {}
        newest = 0.0
        for queue, uniqueid, ts in joins:
            by_queue.setdefault(queue, []).extend([uniqueid, repr(ts)])
            newest = max(newest, ts)
        if not by_queue:
            return True
        k = self.keys
        keys, args = [k.ami_writer_lease()], [self.writer, repr(newest - FIRST_JOINS_KEPT_S)]
        for queue, pairs in by_queue.items():
            keys += [k.queue_first_joins(queue), k.queue_waiting(queue), k.queue_snapshot(queue)]
            args += [str(len(pairs) // 2), *pairs]
        return int(await self._first_joins(keys=keys, args=args)) >= 0

    async def record_handle_times(self, completed: Iterable[AgentComplete]) -> bool:
        """Keep each answered call's handle time (AgentComplete ``TalkTime``) in its queue's
        recent handle times (a separate fenced write, one per queue; nothing to do: True).
        ``HoldTime`` is the caller's wait before the answer, not part of the handling."""
        by_queue: dict[str, list[str]] = {}
        for event in completed:
            by_queue.setdefault(event.queue, []).extend(
                [repr(event.ts), f"{event.uniqueid}|{event.talk_time_s}"]
            )
        for queue, pairs in by_queue.items():
            keys = [self.keys.ami_writer_lease(), self.keys.queue_handle_times(queue)]
            args = [self.writer, str(HANDLE_TIMES_KEPT), *pairs]
            if int(await self._handle_times(keys=keys, args=args)) < 0:
                return False
        return True

    async def _run_apply(self, ops: list[str], now: float) -> bool:
        result = await self._apply(keys=self._head_keys(), args=[*self._head(now), *ops])
        return int(result) >= 0

    async def reconcile(self, picture: QueueStatusPicture, *, full: bool = True) -> bool:
        """Replace the state of every queue in ``picture`` atomically.

        ``full``: the picture answers a QueueStatus for all queues, so queues it does
        not mention no longer exist and are removed. Events received before the
        picture (older ``ts``) are ignored afterwards for the queues it covers."""
        args = [*self._head(picture.observed_at), "1" if full else "0"]
        for queue in picture.queues.values():
            args += encode_queue(queue, picture.observed_at)
        if int(await self._reconcile(keys=self._head_keys(), args=args)) < 0:
            return False
        # QueueEntry's Wait counts from the caller's latest join: keep the first ones
        joins = [
            (q.queue, c.uniqueid, picture.observed_at - c.wait_s - JOIN_SLACK_S / 2)
            for q in picture.queues.values()
            for c in q.callers
        ]
        return await self.keep_first_joins(joins)

    async def mark_alive(self, ts: float, field: str = "last_pong_at") -> bool:
        """Record that the AMI stream was live at ``ts`` (e.g. a Pong arrived)."""
        k = self.keys
        keys = [k.ami_status(), k.ami_writer_lease()]
        return int(await self._mark_alive(keys=keys, args=[self.writer, repr(ts), field])) >= 0

    async def publish_centre(self, centre: str, snapshot: QueueSnapshot, ttl_s: float) -> bool:
        """Publish one snapshot for partner centres under ``centre_snapshot(centre)``."""
        keys = [self.keys.centre_snapshot(centre), self.keys.ami_writer_lease()]
        args = [self.writer, snapshot_json(snapshot), str(max(1, int(ttl_s * 1000)))]
        return int(await self._fenced_set(keys=keys, args=args)) >= 0

    # --- reads ---------------------------------------------------------------------------

    async def snapshot(self, queue: str, now: datetime) -> QueueSnapshot | None:
        """One queue's snapshot, or None when the queue or the writer's clock is unknown."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hmget(self.keys.queue_snapshot(queue), list(SNAPSHOT_FIELDS))
            pipe.hget(self.keys.ami_status(), "alive_at")
            fields, alive_raw = await pipe.execute()
        alive = _time(alive_raw)
        if alive is None or fields[0] is None:
            return None
        return _snapshot(queue, fields, alive, now)

    async def _read_only(self, keys: list[str], args: list[str]) -> Any:
        """READ_ALL as EVALSHA_RO: declared read-only, so a Redis user that may only read these
        keys (the service, ``readonly``: ``deploy/redis/users.acl``) may run it."""
        script = self._read_all
        try:
            return await self._redis.evalsha_ro(script.sha, len(keys), *keys, *args)
        except NoScriptError:  # a restarted Redis has forgotten it
            await self._redis.script_load(script.script)
            return await self._redis.evalsha_ro(script.sha, len(keys), *keys, *args)

    async def snapshots(self, now: datetime) -> dict[str, QueueSnapshot]:
        """Every known queue's snapshot (one round trip); empty when nothing is known."""
        pre, suf = self._templates[6:8]
        keys = [self.keys.known_queues(), self.keys.ami_status()]
        flat = [_text(v) for v in await self._read_only(keys, [pre, suf])]
        alive = _time(flat[0])
        if alive is None:
            return {}
        rows = (flat[i : i + 5] for i in range(1, len(flat), 5))
        return {row[0]: _snapshot(row[0], row[1:], alive, now) for row in rows}

    async def last_update(self) -> LiveTimestamps:
        """The writer's timestamps (all None before anything was written)."""
        names = ["last_event_at", "last_reconcile_at", "last_pong_at", "alive_at", "writer"]
        values = await self._redis.hmget(self.keys.ami_status(), names)
        event, reconcile, pong, alive = (_time(v) for v in values[:4])
        writer = _text(values[4]) if values[4] is not None else None
        return LiveTimestamps(event, reconcile, pong, alive, writer)

    async def handle_times(self, queue: str) -> list[float]:
        """The queue's recent handle times in seconds, oldest first (at most HANDLE_TIMES_KEPT)."""
        return await read_handle_times(self._redis, self.keys, queue)

    async def waiting_callers(self, queue: str) -> dict[str, float]:
        """Uniqueid -> join time (Unix s) of the callers waiting in ``queue``."""
        rows: list[Any] = await self._redis.zrange(self.keys.queue_waiting(queue), 0, -1, withscores=True)
        return {_text(row[0]): float(row[1]) for row in rows}


def snapshot_json(snapshot: QueueSnapshot) -> str:
    """The published form of a snapshot (``observed_at`` as ISO-8601)."""
    return json.dumps(
        {
            "queue": snapshot.queue,
            "waiting": snapshot.waiting,
            "longest_wait_s": snapshot.longest_wait_s,
            "logged_in": snapshot.logged_in,
            "available": snapshot.available,
            "observed_at": snapshot.observed_at.isoformat(),
        },
        separators=(",", ":"),
    )


def snapshot_from_json(text: str | bytes) -> QueueSnapshot:
    """Inverse of :func:`snapshot_json`."""
    data = json.loads(text)
    return QueueSnapshot(
        queue=str(data["queue"]),
        waiting=int(data["waiting"]),
        longest_wait_s=float(data["longest_wait_s"]),
        logged_in=int(data["logged_in"]),
        available=int(data["available"]),
        observed_at=datetime.fromisoformat(data["observed_at"]),
    )


async def read_centre_snapshot(redis: Redis, centre: str, keys: RedisKeys = KEYS) -> QueueSnapshot | None:
    """The snapshot a (partner) centre published, or None when absent or expired."""
    raw = await redis.get(keys.centre_snapshot(centre))
    return None if raw is None else snapshot_from_json(raw)


async def read_handle_times(redis: Redis, keys: RedisKeys, queue: str) -> list[float]:
    """The recent handle times of ``queue`` (seconds, oldest first) as the AMI writer kept them."""
    rows: list[Any] = await redis.zrange(keys.queue_handle_times(queue), 0, -1)
    return handle_times_from(rows)


def handle_times_from(rows: Iterable[Any]) -> list[float]:
    """The handle times (seconds) in the members of a ``queue_handle_times`` ZSET, in order."""
    out: list[float] = []
    for row in rows:
        _uid, _, talk = _text(row).rpartition("|")
        try:
            out.append(float(talk))
        except ValueError:
            continue  # not ours: never let one bad entry stop an estimate
    return out
