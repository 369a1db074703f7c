"""The live feed: one reader of Redis per process, the live view, its changes to many subscribers.

:class:`LiveReader` gathers everything :func:`routing.live.view.build_view` needs in one
pipelined round trip (plus a ``SCAN`` of the controllers' alive keys every few seconds: they
change rarely). :class:`LiveFeed` runs ONE loop per process: it reads when the AMI writer
publishes a change (``live_changed_channel``, published by the writer's own scripts), when a
supervisor changes a toggle (``toggles_changed_channel``), and at least every ``interval_s``
(default 0.2 s, so ages move and a lost notification costs at most one interval); never more
often than every ``min_gap_s`` (default 0.02 s), so a burst of events costs at most 50 reads a
second. It builds
the view, diffs its tiles against the previous ones and gives every subscriber the tiles that
changed.

Subscribers (:meth:`LiveFeed.subscribe`) each have a bounded queue. The loop never waits for
one: a subscriber whose queue is full is dropped, its queue replaced by one ``resync``
message, and its iteration ends after it; it subscribes again and starts from a snapshot.
So a stuck client costs one queue of memory, never the others' delay.

Messages (``docs/live-view.md``): the first is ``{"id", "type": "snapshot", "at", "tiles"}``,
then ``{"id", "type": "changes", "at", "changed", "removed"}``; a dropped subscriber's last
is ``{"id", "type": "resync", "at", "reason"}``. Ids increase (not by one per subscriber:
a subscriber sees only the changes of its tenants) and start at the process start time in
milliseconds, so ids after a restart of the process are larger than the ones before.

When Redis cannot be read, the feed keeps the last good read, rebuilds the view from it as time
passes (ages grow, figures turn stale after ``max_age_s``) and marks the ``feed`` tile stale
with the error; it resumes by itself when Redis answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable, Collection
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import structlog
from redis.asyncio import Redis

from routing.core.decide import CompiledPlan
from routing.core.live import Toggle
from routing.live.source import TOGGLE_KINDS, partner_centres, toggle_from_json
from routing.live.store import snapshot_from_json
from routing.live.view import FeedHealth, LiveRead, QueueRead, Tile, build_view, diff, only, tiles, visible
from routing.redis_keys import KEYS, RedisKeys

log = structlog.get_logger("callrouter.live.feed")
Message = dict[str, Any]
ToggleDecoder = Callable[[str, Any], Toggle]
"""(Redis key, stored value) -> the toggle the controllers obey, or :class:`ValueError` (with the
reason) for one they ignore. Give the controllers' own check, so the view shows exactly the
toggles they obey (with toggle MACs: ``functools.partial(verified_toggle, keyring)``)."""


def unverified_toggle(key: str, raw: Any) -> Toggle:
    """A :data:`ToggleDecoder` that only parses (for controllers that do not verify toggles)."""
    return toggle_from_json(raw)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _float(value: Any) -> float | None:
    text = _text(value) if value is not None else ""
    try:
        return float(text) if text else None
    except ValueError:
        return None


def _time(value: Any) -> datetime | None:
    ts = _float(value)
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


def paused_members(records: list[Any]) -> int:
    """Members logged in and paused, from the stored member records (JSON)."""
    count = 0
    for raw in records:
        try:
            member = json.loads(raw)
        except ValueError:
            continue
        if not member.get("removed") and member.get("logged_in") and member.get("paused"):
            count += 1
    return count


class LiveReader:
    """Reads the live view's inputs from Redis: one pipelined round trip per read."""

    def __init__(
        self,
        redis: Redis,
        keys: RedisKeys = KEYS,
        *,
        instances_every_s: float = 2.0,
        toggle_decoder: ToggleDecoder = unverified_toggle,
        plan_live_key: str | None = None,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.toggle_decoder = toggle_decoder
        self.plan_live_key = plan_live_key
        self.instances_every_s = instances_every_s
        self._instances: tuple[str, ...] = ()
        self._instances_at = float("-inf")

    async def read(self, plan: CompiledPlan, now: datetime) -> LiveRead:
        k = self.keys
        tenants = plan.plan.tenants
        queues = sorted({q.asterisk_queue for t in tenants.values() for q in t.queues.values()})
        partners = sorted({c for t in tenants.values() for c in partner_centres(t)})
        latches = [(tid, qid) for tid, t in tenants.items() for qid in sorted(t.queues)]
        toggles = [(tid, kind) for tid in tenants for kind in TOGGLE_KINDS]
        singles = [
            *(k.centre_snapshot(c) for c in partners),
            *(k.overflow_latch(tid, qid) for tid, qid in latches),
            *(k.toggle(kind, tid) for tid, kind in toggles),
            k.ami_writer_lease(),
            k.plan_in_force(),
        ]
        # One GET per key rather than one MGET: redis-py's Redis Cluster pipeline refuses MGET
        # (the round trip is the same one either way).
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hmget(k.ami_status(), ["alive_at", "last_event_at"])
            for key in singles:
                pipe.get(key)
            for name in queues:
                pipe.hmget(k.queue_snapshot(name), ["waiting", "oldest_join", "logged_in", "available"])
                pipe.hvals(k.queue_members(name))
            if self.plan_live_key is not None:
                pipe.hgetall(self.plan_live_key)
            status, *replies = await pipe.execute()
        values, per_queue = replies[: len(singles)], replies[len(singles) :]
        live_plan = per_queue.pop() if self.plan_live_key is not None else {}
        await self._refresh_instances(plan.plan.centre)
        n_p, n_l, n_t = len(partners), len(latches), len(toggles)
        partner_values = values[:n_p]
        latch_values = values[n_p : n_p + n_l]
        toggle_values = values[n_p + n_l : n_p + n_l + n_t]
        lease, facts = values[n_p + n_l + n_t :]
        obeyed, rejected = self._toggles(toggles, toggle_values)
        return LiveRead(
            read_at=now,
            alive_at=_time(status[0]),
            last_event_at=_time(status[1]),
            lease_holder=_text(lease) if lease is not None else None,
            queues=self._queues(queues, per_queue),
            partners={c: snapshot_from_json(v) for c, v in zip(partners, partner_values, strict=True) if v},
            latches=frozenset(f"{t}/{q}" for (t, q), v in zip(latches, latch_values, strict=True) if v),
            toggles=obeyed,
            rejected=rejected,
            plan_in_force=self._facts(facts, live_plan),
            instances=self._instances,
        )

    @staticmethod
    def _queues(names: list[str], rows: list[Any]) -> dict[str, QueueRead]:
        out = {}
        for i, name in enumerate(names):
            fields, members = rows[2 * i], rows[2 * i + 1]
            if fields[0] is None:  # the writer has no state for this queue
                continue
            out[name] = QueueRead(
                waiting=int(_float(fields[0]) or 0),
                oldest_join=_float(fields[1]),
                logged_in=int(_float(fields[2]) or 0),
                available=int(_float(fields[3]) or 0),
                paused=paused_members(members or []),
            )
        return out

    def _toggles(
        self, names: list[tuple[str, str]], values: list[Any]
    ) -> tuple[dict[str, dict[str, Toggle]], dict[str, dict[str, str]]]:
        """The toggles the controllers obey, and why each other stored one is ignored (the
        controllers log those as security events; the view only shows them)."""
        obeyed: dict[str, dict[str, Toggle]] = {}
        rejected: dict[str, dict[str, str]] = {}
        for (tid, kind), value in zip(names, values, strict=True):
            if not value:
                continue
            try:
                obeyed.setdefault(tid, {})[kind] = self.toggle_decoder(self.keys.toggle(kind, tid), value)
            except ValueError as error:  # a raw write must not take the view down
                rejected.setdefault(tid, {})[kind] = str(error)[:200]
        return obeyed, rejected

    @staticmethod
    def _facts(raw: Any, live_plan: dict[Any, Any]) -> dict[str, Any] | None:
        """The published plan facts, with the plan store's live generation over them if any."""
        data: Any = None
        if raw is not None:
            with contextlib.suppress(ValueError):
                data = json.loads(raw)
        facts = dict(data) if isinstance(data, dict) else {}
        for name in ("generation", "version", "sha256"):
            value = live_plan.get(name) or live_plan.get(name.encode())
            if value is not None:
                text = _text(value)
                facts[name] = int(text) if name != "sha256" and text.isdigit() else text
        return facts or None

    async def _refresh_instances(self, centre: str) -> None:
        """The controller instances with an alive key, listed again every ``instances_every_s``."""
        if time.monotonic() - self._instances_at < self.instances_every_s:
            return
        pattern = self.keys.record_owner_alive_pattern(centre)
        head = pattern[:-1]
        found = [_text(key)[len(head) :] async for key in self.redis.scan_iter(match=pattern, count=500)]
        self._instances = tuple(sorted(found))
        self._instances_at = time.monotonic()


class Subscription:
    """One subscriber's messages: ``async for message in subscription`` (ends after a resync).

    Use as an async context manager (or call :meth:`close`) so the feed forgets it."""

    def __init__(self, feed: LiveFeed, tenants: Collection[str] | None, size: int) -> None:
        self.feed = feed
        self.tenants = frozenset(tenants) if tenants is not None else None
        self.queue: asyncio.Queue[Message] = asyncio.Queue(maxsize=size)
        self.dropped = False
        self.needs_snapshot = True
        self.last_id = 0

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Message:
        if self.dropped and self.queue.empty():
            raise StopAsyncIteration
        message = await self.queue.get()
        if message["type"] == "resync":
            self.close()
        return message

    def offer(self, message: Message) -> bool:
        """Queue ``message`` without waiting; False (and dropped) when the queue is full."""
        if self.dropped:
            return False
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            self.drop(message["id"], "too slow: the queue of changes was full")
            return False
        self.last_id = message["id"]
        return True

    def drop(self, event_id: int, reason: str) -> None:
        """Replace everything queued with one ``resync`` message and stop."""
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait({"id": event_id, "type": "resync", "at": _now_iso(), "reason": reason})
        self.dropped = True
        self.feed.forget(self)

    def close(self) -> None:
        self.dropped = True
        self.feed.forget(self)

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _honour_cancel() -> None:
    """Re-raise a cancellation that redis-py swallowed: it lets a command cancelled mid-flight
    complete and return normally, and the loop would then go on for ever (the request is still
    visible as ``Task.cancelling()``; ``routing.ami.consumer`` does the same)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


class LiveFeed:
    """The live view of every tenant, kept current, with changes for subscribers.

    ``toggle_decoder``: the controllers' own check of a stored toggle (see :data:`ToggleDecoder`).
    ``plan_live_key``: the plan store's live record (generation, version, sha256), read with the
    rest; ``also_wake_on``: more channels whose messages wake the feed (the plan store's)."""

    def __init__(
        self,
        redis: Redis,
        plan: Callable[[], CompiledPlan],
        *,
        keys: RedisKeys = KEYS,
        interval_s: float = 0.2,
        min_gap_s: float = 0.02,
        max_age_s: float = 30.0,
        queue_size: int = 64,
        timeout_s: float = 1.0,
        notify: bool = True,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        toggle_decoder: ToggleDecoder = unverified_toggle,
        plan_live_key: str | None = None,
        also_wake_on: Collection[str] = (),
    ) -> None:
        self.redis = redis
        self.plan = plan
        self.keys = keys
        self.reader = LiveReader(redis, keys, toggle_decoder=toggle_decoder, plan_live_key=plan_live_key)
        self.also_wake_on = tuple(also_wake_on)
        self.interval_s = interval_s
        self.min_gap_s = min_gap_s
        self.max_age_s = max_age_s
        self.queue_size = queue_size
        self.timeout_s = timeout_s
        self.notify = notify
        self.clock = clock
        self.event_id = int(time.time() * 1000)
        self.tiles: dict[str, Tile] | None = None
        self.at = ""
        self.reads = 0
        self.failures = 0
        self.dropped = 0
        self._last: LiveRead | None = None
        self._subscribers: set[Subscription] = set()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    # --- running -----------------------------------------------------------------------------

    async def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._poll(), name="live-feed-poll"))
        if self.notify:
            self._tasks.append(asyncio.create_task(self._listen(), name="live-feed-listen"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        for sub in list(self._subscribers):
            sub.drop(self.event_id, "the live feed stopped")

    async def __aenter__(self) -> LiveFeed:
        await self.start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def _poll(self) -> None:
        while True:
            self._wake.clear()  # a notification during the read wakes the next round at once
            try:
                await self.refresh()
            except Exception:  # a bug in building the view must not end the feed: log, go on
                log.exception("live.feed_refresh_failed")
            _honour_cancel()
            await asyncio.sleep(self.min_gap_s)  # bounds the reads a burst of events costs
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval_s):
                    await self._wake.wait()

    async def _listen(self) -> None:
        """Wake the poller on the writer's and the supervisors' change notifications."""
        channels = [self.keys.live_changed_channel(), self.keys.toggles_changed_channel(), *self.also_wake_on]
        while True:
            pubsub = self.redis.pubsub()
            try:
                await pubsub.subscribe(*channels)
                self._wake.set()  # changes missed while not listening
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    _honour_cancel()
                    if message is not None:
                        self._wake.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis gone: the poller goes on at its interval
                log.debug("live.feed_listen_failed", error=type(exc).__name__)
                await asyncio.sleep(min(1.0, self.interval_s * 5))
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def refresh(self) -> None:
        """Read, build the view, send the changes (never raises for Redis errors)."""
        now = self.clock()
        plan = self.plan()
        try:
            async with asyncio.timeout(self.timeout_s):
                self._last = await self.reader.read(plan, now)
            self.reads += 1
            health = FeedHealth()
        except Exception as exc:  # Redis down or slow: keep the last read, let it age
            self.failures += 1
            if self.failures in (1, 10) or self.failures % 300 == 0:
                log.warning("live.feed_read_failed", error=type(exc).__name__, failures=self.failures)
            last = self._last.read_at if self._last else None
            health = FeedHealth(ok=False, failures=self.failures, error=type(exc).__name__, last_read_at=last)
        read = self._last or LiveRead(read_at=now)
        view = build_view(plan, read, now, max_age_s=self.max_age_s, health=health)
        self.publish(tiles(view), view.at)

    def publish(self, new: dict[str, Tile], at: str) -> None:
        """Give each subscriber the tiles it may see that changed; snapshots to new ones."""
        before, self.tiles, self.at = self.tiles, new, at
        changes = diff(before or {}, new)
        if changes:
            self.event_id += 1
        for sub in list(self._subscribers):
            if sub.needs_snapshot:
                self._snapshot(sub)
                continue
            if not changes:
                continue
            changed = only(changes.changed, sub.tenants)
            removed = [tid for tid in changes.removed if before is None or _seen(before[tid], sub.tenants)]
            if changed or removed:
                message = {
                    "id": self.event_id,
                    "type": "changes",
                    "at": at,
                    "changed": changed,
                    "removed": removed,
                }
                if not sub.offer(message):
                    self.dropped += 1

    def _snapshot(self, sub: Subscription) -> None:
        if self.tiles is None:
            return
        sub.needs_snapshot = False
        message = {
            "id": self.event_id,
            "type": "snapshot",
            "at": self.at,
            "tiles": only(self.tiles, sub.tenants),
        }
        if not sub.offer(message):
            self.dropped += 1

    # --- subscribing -------------------------------------------------------------------------

    def subscribe(self, tenants: Collection[str] | None = None) -> Subscription:
        """A new subscriber to the tiles of ``tenants`` (None: all): a snapshot, then changes."""
        sub = Subscription(self, tenants, self.queue_size)
        self._subscribers.add(sub)
        self._snapshot(sub)
        return sub

    def forget(self, sub: Subscription) -> None:
        self._subscribers.discard(sub)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    async def messages(self, tenants: Collection[str] | None = None) -> AsyncIterator[Message]:
        """``async for`` the messages of a new subscription (closed when the loop ends)."""
        async with self.subscribe(tenants) as sub:
            async for message in sub:
                yield message


def _seen(tile: Tile, tenants: Collection[str] | None) -> bool:
    return visible(tile, tenants)
