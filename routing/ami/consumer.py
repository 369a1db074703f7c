"""The AMI consumer: live queue events from Asterisk into the Redis queue state.

Pipeline. panoramisk calls one plain function for every event
(``register_event('*', ...)``). It drops ``DTMFBegin``/``DTMFEnd`` on arrival (key
presses are never converted or stored: they can be card numbers or PINs), stamps the
event with its receive time, hands it to the optional ``on_message`` tap (headers and
receive time, synchronously: the contact records' builder) and puts it on a bounded
``asyncio.Queue``. When the
queue is half full, reading from the socket pauses until it is nearly drained (the
burst waits in kernel buffers); if it still fills up, the event is dropped, counted,
logged, and a reconcile is requested since the state has missed something. A
supervised task takes events off the queue in batches, converts them
(``routing.live.events``, pure) and applies each batch in one atomic script call.

Connection. Login with user and secret (never logged); on failure, reconnect with
exponential back-off capped at ``reconnect_max_s``. Every ``ping_interval_s`` a
``Ping`` is sent and the ``Pong`` awaited for ``pong_deadline_s``; without it the
connection is closed and re-opened (a hung Asterisk keeps TCP open but says nothing).

Reconcile. On every (re)connect, on taking the writer lease, after dropped events and
every ``reconcile_interval_s``, the consumer sends ``QueueStatus`` (all queues). Its
list items travel through the same ordered queue as live events (see
``Utf8AmiProtocol.handle_message``), so the picture replaces the state exactly at its
place in the stream: events before it are superseded, events after it apply on top.

System name. On every connect, off the event path, the consumer asks ``CoreSettings`` once
(bounded by ``action_timeout_s``) and says what it learns when it differs from what it last
said: ``ami.core_settings`` (info: the Asterisk version and system name), and
``ami.system_name_unfit`` (an error) when the ids that name makes cannot be record ids; a
refusal or no reply is one warning (``ami.core_settings_unavailable``) and changes nothing else.

Writers. Every instance connects and listens; only the holder of the writer lease
(``routing.live.lease``) writes. A standby discards events; when it takes the lease
it reconciles first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import count
from typing import Any, TypeVar

from redis.exceptions import RedisError

from routing.ami.client import RECONCILE_ACTION_PREFIX, AmiClient, plain_headers
from routing.ami.core_settings import ACTION, CoreSettings, LogLine, read_reply, report
from routing.ami.settings import AmiSettings
from routing.live.events import QueueEvent, is_dtmf, to_queue_event
from routing.live.lease import WriterLease
from routing.live.queue_status import (
    IncompleteQueueStatus,
    QueueStatusAssembler,
    QueueStatusPicture,
)
from routing.live.store import QueueStateStore
from routing.metrics import AmiTypes

log = logging.getLogger("routing.ami")

Received = tuple[float, dict[str, str]]
"""An event as queued: receive time (Unix s) and its headers."""

PICTURE_HEADROOM = 8
"""Queue places reserved for reconcile pictures (live events stop at queue_maxsize)."""

RECONCILE_MIN_GAP_S = 0.5
"""At most two QueueStatus requests a second, however often one is asked for."""


@dataclass
class ConsumerStats:
    """Counters, for logs, health checks and tests."""

    events_received: int = 0
    dtmf_dropped: int = 0
    queue_full_dropped: int = 0
    read_pauses: int = 0
    events_applied: int = 0
    items_processed: int = 0
    events_discarded_standby: int = 0
    batches_applied: int = 0
    reconciles_applied: int = 0
    connects: int = 0
    connect_failures: int = 0
    keepalive_failures: int = 0
    takeovers: int = 0
    redis_errors: int = 0
    tap_errors: int = 0


@dataclass(frozen=True, slots=True)
class WithdrawResult:
    """Asterisk's answer to ``QueueWithdrawCaller``.

    ``requested`` is True for ``Withdraw requested successfully``; otherwise ``reason``
    is Asterisk's reason: ``Already requested``, ``No such caller`` or ``No such
    queue``. A successful request takes effect only after the member's current ring
    attempt and the retry pause (seconds later); the caller then leaves with
    QueueCallerAbandon + QueueCallerLeave and the dialplan sees QUEUESTATUS=WITHDRAW
    and QUEUE_WITHDRAW_INFO=``info``."""

    requested: bool
    message: str

    @property
    def reason(self) -> str:
        return self.message.rpartition(": ")[2]


T = TypeVar("T")


async def _honour_cancel(aw: Awaitable[T]) -> T:
    """Await a redis-py call, then re-raise a cancellation it swallowed.

    redis-py 8.1 lets a command that was cancelled mid-flight complete and return
    normally; the task's cancel request is then lost and a loop would go on for ever.
    The request is still visible as ``Task.cancelling()``."""
    result = await aw
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
    return result


class Backoff:
    """Reconnect delays: initial, doubling, capped; ``reset`` after a healthy session."""

    def __init__(self, initial_s: float, cap_s: float) -> None:
        self.initial_s, self.cap_s = initial_s, cap_s
        self._next = initial_s

    def next(self) -> float:
        delay, self._next = self._next, min(self._next * 2, self.cap_s)
        return delay

    def reset(self) -> None:
        self._next = self.initial_s


class AmiConsumer:
    """Keeps the Redis queue state of one Asterisk in step with its AMI stream."""

    def __init__(
        self,
        settings: AmiSettings,
        store: QueueStateStore,
        lease: WriterLease,
        *,
        clock: Callable[[], float] = time.time,
        on_event: Callable[[QueueEvent | QueueStatusPicture], None] | None = None,
        on_message: Callable[[Mapping[str, str], float], None] | None = None,
    ) -> None:
        self.settings, self.store, self.lease = settings, store, lease
        self.clock, self.on_event, self.on_message = clock, on_event, on_message
        self.stats = ConsumerStats()
        self.types = AmiTypes()  # events by type, for /metrics (routing.metrics reads it when scraped)
        self.last_event_at: float | None = None  # receive time (clock) of the last event
        self.apply_lag_s: float | None = None  # the last batch: oldest event's receipt to its write
        self.is_writer = False
        self._backoff = Backoff(settings.reconnect_initial_s, settings.reconnect_max_s)
        self._action_ids = count(1)
        self._assembler: QueueStatusAssembler | None = None
        self._task: asyncio.Task[None] | None = None
        self._release_on_stop = True
        self._reading_paused = False
        self.core_settings: CoreSettings | None = None  # the last CoreSettings reply read
        self._core_said: tuple[LogLine, ...] = ()  # said about CoreSettings last (said on change)

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Run in the background until :meth:`stop`."""
        self._task = asyncio.create_task(self.run(), name="ami-consumer")

    async def stop(self, *, release_lease: bool = True) -> None:
        """Stop; ``release_lease=False`` leaves the lease to expire, as a crash would."""
        self._release_on_stop = release_lease
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def run(self) -> None:
        """Connect, consume, keep the lease, reconcile; until cancelled."""
        maxsize = self.settings.queue_maxsize + PICTURE_HEADROOM
        self._events: asyncio.Queue[Received | QueueStatusPicture] = asyncio.Queue(maxsize)
        self._reconcile_wanted = asyncio.Event()
        self._client = AmiClient(self.settings, log)
        self._client.on_event(self._on_ami_event)
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._connection_loop(), name="ami-connection")
                tg.create_task(self._apply_loop(), name="ami-apply")
                tg.create_task(self._lease_loop(), name="ami-lease")
                tg.create_task(self._reconcile_loop(), name="ami-reconcile")
                tg.create_task(self._publish_loop(), name="ami-publish")
        finally:
            await self._shutdown()

    async def _shutdown(self) -> None:
        self._client.close()
        if self._release_on_stop and self.is_writer:
            with contextlib.suppress(RedisError):
                await self.lease.release()
        self.is_writer = False

    @property
    def connected(self) -> bool:
        return hasattr(self, "_client") and self._client.connected

    def request_reconcile(self) -> None:
        """Ask for a QueueStatus reconcile as soon as possible."""
        self._reconcile_wanted.set()

    # --- the one panoramisk callback ---------------------------------------------------------

    def _on_ami_event(self, manager: Any, message: Mapping[str, str]) -> None:
        """Runs inside panoramisk's data_received: drop DTMF, stamp, enqueue. Never raises."""
        headers = plain_headers(message)
        if is_dtmf(headers.get("Event", "")):
            self.stats.dtmf_dropped += 1
            return
        ts = self.clock()
        if headers.get("ActionID", "").startswith(RECONCILE_ACTION_PREFIX):
            self._reconcile_item(headers, ts)
            return
        self.stats.events_received += 1
        self.types.count(headers.get("Event", ""))
        self.last_event_at = ts
        if self.on_message is not None:
            self._tap(headers, ts)
        if self._events.qsize() >= self.settings.queue_maxsize:
            self._dropped_full()
            return
        self._events.put_nowait((ts, headers))
        if not self._reading_paused and self._events.qsize() >= self.settings.queue_maxsize // 2:
            self._flow_control(pause=True)

    def _tap(self, headers: dict[str, str], ts: float) -> None:
        """Every event (but DTMF and reconcile replies) as received, e.g. for contact records;
        before the bounded queue, so the tap sees events the live state has to drop."""
        assert self.on_message is not None
        try:
            self.on_message(headers, ts)
        except Exception as exc:  # a listener's fault must not cost the live state an event
            self.stats.tap_errors += 1
            log.warning("ami.tap_failed error=%s", type(exc).__name__)

    def _flow_control(self, *, pause: bool) -> None:
        """Pause reading while the queue is half full, resume when it is nearly empty.

        A burst then waits in the kernel's socket buffers (megabytes) instead of being
        dropped; events are dropped only if the queue still fills up."""
        self._reading_paused = pause
        self._client.pause_reading(pause)
        self.stats.read_pauses += pause

    def _reconcile_item(self, headers: dict[str, str], ts: float) -> None:
        """Assemble the QueueStatus reply here, in stream order; queue the picture whole.

        The queue keeps PICTURE_HEADROOM places that live events may not use, so a
        picture is never dropped for lack of room (which would loop: drop, reconcile,
        drop)."""
        picture = self._assemble(headers, ts)
        if picture is None:
            return
        try:
            self._events.put_nowait(picture)
        except asyncio.QueueFull:
            log.warning("ami.reconcile_dropped action_id=%s", picture.action_id)
            self.request_reconcile()

    def _dropped_full(self) -> None:
        self.stats.queue_full_dropped += 1
        if self.stats.queue_full_dropped % 10_000 == 1:
            log.warning("ami.queue_full dropped=%d", self.stats.queue_full_dropped)
        self.request_reconcile()

    # --- connection and keepalive ---------------------------------------------------------------

    async def _connection_loop(self) -> None:
        while True:
            if await self._connect_once():
                asked = asyncio.create_task(self._check_core_settings(), name="ami-core-settings")
                try:
                    await self._keepalive_until_lost()
                finally:
                    asked.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await asked
                self._client.close()
                log.warning("ami.disconnected host=%s", self.settings.host)
            await asyncio.sleep(self._backoff.next())

    async def _connect_once(self) -> bool:
        try:
            await self._client.connect()
        except (OSError, TimeoutError) as exc:
            self.stats.connect_failures += 1
            log.warning("ami.connect_failed host=%s error=%s", self.settings.host, exc)
            return False
        self.stats.connects += 1
        self._reading_paused = False
        log.info("ami.connected host=%s user=%s", self.settings.host, self.settings.username)
        self.request_reconcile()
        return True

    async def _keepalive_until_lost(self) -> None:
        s = self.settings
        while not self._client.lost.done():
            await asyncio.wait({self._client.lost}, timeout=s.ping_interval_s)
            if self._client.lost.done():
                return
            try:
                await self._client.send({"Action": "Ping"}, deadline_s=s.pong_deadline_s)
            except (TimeoutError, ConnectionError) as exc:
                self.stats.keepalive_failures += 1
                log.warning("ami.no_pong deadline_s=%s error=%s", s.pong_deadline_s, exc)
                return
            self._backoff.reset()
            await self._write_safely(self.store.mark_alive(self.clock()))

    async def _check_core_settings(self) -> None:
        """Ask ``CoreSettings`` once for this connection and say what it shows when that differs
        from what was said last (see the module doc). Its own task, bounded by
        ``action_timeout_s``: a slow or missing reply delays nothing, and no failure leaves it."""
        found: CoreSettings | Exception
        try:
            reply = await self._client.send({"Action": ACTION}, deadline_s=self.settings.action_timeout_s)
            found = self.core_settings = read_reply(reply[0])
        except ConnectionError:
            return  # lost: asked again on the next connection
        except Exception as exc:  # a refusal, no reply, or worse: it only informs, never stops
            found = exc
        lines = report(found)
        if lines != self._core_said:
            self._core_said = lines
            for level, line in lines:
                log.log(level, line)

    # --- applying events ---------------------------------------------------------------------------

    async def _apply_loop(self) -> None:
        while True:
            batch = await self._next_batch()
            items = self._convert(batch)
            if not self.is_writer:
                self.stats.events_discarded_standby += len(batch)
            else:
                await self._write(items, alive_at=self.clock())
                first = batch[0]
                if isinstance(first, tuple):
                    self.apply_lag_s = self.clock() - first[0]
            self.stats.items_processed += len(batch)

    async def _next_batch(self) -> list[Received | QueueStatusPicture]:
        if self._reading_paused and self._events.qsize() <= self.settings.batch_max:
            self._flow_control(pause=False)
        batch = [await self._events.get()]
        while len(batch) < self.settings.batch_max:
            try:
                batch.append(self._events.get_nowait())
            except asyncio.QueueEmpty:
                break
        return batch

    def _convert(self, batch: list[Received | QueueStatusPicture]) -> list[QueueEvent | QueueStatusPicture]:
        items: list[QueueEvent | QueueStatusPicture] = []
        for item in batch:
            if isinstance(item, QueueStatusPicture):
                items.append(item)
                if self.on_event is not None:
                    self.on_event(item)
                continue
            event = to_queue_event(item[1], item[0])
            if event is not None:
                items.append(event)
                if self.on_event is not None:
                    self.on_event(event)
        return items

    def _assemble(self, headers: dict[str, str], ts: float) -> QueueStatusPicture | None:
        action_id = headers["ActionID"]
        if self._assembler is None or self._assembler.action_id != action_id:
            self._assembler = QueueStatusAssembler(action_id)
        try:
            return self._assembler.add(headers, ts)
        except IncompleteQueueStatus as exc:
            log.warning("ami.reconcile_incomplete action_id=%s %s", action_id, exc)
            self.request_reconcile()
            return None

    async def _write(self, items: list[QueueEvent | QueueStatusPicture], alive_at: float) -> None:
        run: list[QueueEvent] = []
        for item in items:
            if isinstance(item, QueueStatusPicture):
                await self._write_events(run, alive_at=None)
                run = []
                await self._write_safely(self.store.reconcile(item))
                self.stats.reconciles_applied += 1
            else:
                run.append(item)
        await self._write_events(run, alive_at=alive_at)

    async def _write_events(self, events: list[QueueEvent], alive_at: float | None) -> None:
        if events or alive_at is not None:
            await self._write_safely(self.store.apply_many(events, alive_at=alive_at))
            self.stats.events_applied += len(events)
            self.stats.batches_applied += 1

    async def _write_safely(self, write: Awaitable[bool]) -> None:
        """Await a store write; a fenced-out write means the lease is gone."""
        try:
            if not await _honour_cancel(write):
                self._lost_lease("write fenced out")
        except RedisError as exc:
            self.stats.redis_errors += 1
            log.warning("ami.redis_error %s", exc)
            self.request_reconcile()

    def _lost_lease(self, why: str) -> None:
        if self.is_writer:
            log.warning("ami.writer_lease_lost holder=%s why=%s", self.lease.holder, why)
        self.is_writer = False

    # --- lease, reconcile, publish ------------------------------------------------------------------

    async def _lease_loop(self) -> None:
        while True:
            try:
                holding, taken = await _honour_cancel(self.lease.hold())
            except RedisError as exc:
                self.stats.redis_errors += 1
                log.warning("ami.lease_error %s", exc)
                holding, taken = False, False
            if taken or (holding and not self.is_writer):  # still ours (e.g. after a Redis failover)
                self._took_lease()
            elif not holding:
                self._lost_lease("held by another instance")
            await asyncio.sleep(self.lease.renew_interval_s)

    def _took_lease(self) -> None:
        self.stats.takeovers += 1
        self.is_writer = True
        log.info("ami.writer_lease_taken holder=%s", self.lease.holder)
        self.request_reconcile()

    async def _reconcile_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.reconcile_interval_s):
                    await self._reconcile_wanted.wait()
            self._reconcile_wanted.clear()
            if self.is_writer and self._client.connected:
                await self._send_queue_status()
                await asyncio.sleep(RECONCILE_MIN_GAP_S)

    async def _send_queue_status(self) -> None:
        """QueueStatus for all queues; its items reach the store via the event queue."""
        action_id = f"{RECONCILE_ACTION_PREFIX}{next(self._action_ids)}"
        action = {"Action": "QueueStatus", "ActionID": action_id}
        try:
            await self._client.send(action, deadline_s=self.settings.action_timeout_s, as_list=True)
        except (TimeoutError, ConnectionError) as exc:
            log.warning("ami.reconcile_failed error=%s", exc)

    async def _publish_loop(self) -> None:
        s = self.settings
        while s.centre and s.publish_queue:
            await asyncio.sleep(s.publish_interval_s)
            if self.is_writer:
                await self._publish(s.centre, s.publish_queue)

    async def _publish(self, centre: str, queue: str) -> None:
        now = datetime.fromtimestamp(self.clock(), UTC)
        try:
            snapshot = await _honour_cancel(self.store.snapshot(queue, now))
        except RedisError as exc:
            log.warning("ami.publish_error %s", exc)
            return
        if snapshot is not None:
            await self._write_safely(self.store.publish_centre(centre, snapshot, self.settings.stale_age_s))

    # --- actions ------------------------------------------------------------------------------------

    async def send_action(self, action: Mapping[str, str]) -> dict[str, str]:
        """One action on this instance's AMI connection; its reply. ``as_list=False``: the
        reply to an ``Async`` Originate is its first message, and the ``OriginateResponse``
        that follows comes as an event (to every AMI session, this one included).

        Raises ConnectionError when AMI is down and TimeoutError without a reply."""
        if not hasattr(self, "_client"):
            raise ConnectionError("AMI not started")
        reply = await self._client.send(action, deadline_s=self.settings.action_timeout_s, as_list=False)
        return reply[0]

    async def queue_withdraw_caller(
        self, queue: str, caller_channel: str, info: str | None = None
    ) -> WithdrawResult:
        """Ask Asterisk to take ``caller_channel`` (e.g. ``PJSIP/sipp-0000001d``) out of
        ``queue``; ``info`` reaches the dialplan as ``QUEUE_WITHDRAW_INFO``.

        Raises ConnectionError when AMI is down and TimeoutError without a reply."""
        action = {"Action": "QueueWithdrawCaller", "Queue": queue, "Caller": caller_channel}
        if info:
            action["WithdrawInfo"] = info
        reply = await self._client.send(action, deadline_s=self.settings.action_timeout_s)
        return WithdrawResult(reply[0].get("Response") == "Success", reply[0].get("Message", ""))
