"""Overflow while callers wait: withdraw long waiters from a local queue for a partner centre.

Every few seconds, for each plan queue whose overflow policy has ``max_wait_s``, the callers
who have waited that long are asked out of the queue with AMI ``QueueWithdrawCaller`` (the
dialplan then sees ``QUEUESTATUS=WITHDRAW`` and the ``overflow`` route sends them to the
policy's target), longest first, and only as many as the partner centre has advisers free in
its fresh published state (:func:`routing.core.overflow.due_for_withdrawal`). Only the instance
holding the AMI writer lease withdraws, so two controllers never ask twice.

The queue state in Redis keeps callers by uniqueid; Asterisk withdraws by channel name, so
:class:`ChannelBook` follows the AMI stream (joins, leaves, reconciles) for the names.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

import structlog
from redis.asyncio import Redis

from routing.ami.consumer import AmiConsumer
from routing.ami.settings import AmiSettings
from routing.core.decide import CompiledPlan
from routing.core.live import LiveState
from routing.core.overflow import due_for_withdrawal
from routing.core.plan import ExternalDest
from routing.live.events import CallerJoined, CallerLeft, Hangup, QueueEvent
from routing.live.lease import WriterLease
from routing.live.queue_status import QueueStatusPicture
from routing.live.source import CachedLiveSource
from routing.live.store import QueueStateStore
from routing.redis_keys import KEYS, RedisKeys

log = structlog.get_logger("callrouter.calls")


class ChannelBook:
    """Channel names of the callers waiting in queues, by uniqueid."""

    def __init__(self) -> None:
        self.channels: dict[str, str] = {}

    def on_event(self, item: QueueEvent | QueueStatusPicture) -> None:
        if isinstance(item, CallerJoined):
            self.channels[item.uniqueid] = item.channel
        elif isinstance(item, CallerLeft | Hangup):
            self.channels.pop(item.uniqueid, None)
        elif isinstance(item, QueueStatusPicture):
            waiting = {c.uniqueid: c.channel for q in item.queues.values() for c in q.callers}
            self.channels = {**self.channels, **waiting}


class Withdrawer:
    """Sweeps the plan's queues and withdraws overdue callers for overflow."""

    def __init__(
        self,
        consumer: AmiConsumer,
        store: QueueStateStore,
        book: ChannelBook,
        *,
        plan: Callable[[], CompiledPlan],
        live: Callable[[CompiledPlan, str, datetime], LiveState],
        clock: Callable[[], datetime],
        interval_s: float = 5.0,
    ) -> None:
        self.consumer, self.store, self.book = consumer, store, book
        self.plan, self.live, self.clock, self.interval_s = plan, live, clock, interval_s
        self.requested: set[str] = set()
        self.withdrawn = 0

    async def sweep(self) -> int:
        """One pass over every queue; returns how many callers were withdrawn."""
        if not self.consumer.is_writer:
            return 0
        plan, count = self.plan(), 0
        for tid, tenant in plan.plan.tenants.items():
            for name, queue in tenant.queues.items():
                policy = queue.overflow
                if policy is None or policy.max_wait_s is None:
                    continue
                waiting = await self.store.waiting_callers(queue.asterisk_queue)
                fresh = {uid: joined for uid, joined in waiting.items() if uid not in self.requested}
                target = policy.to.centre if isinstance(policy.to, ExternalDest) else None
                partner = self.live(plan, tid, self.clock()).partner(target, self.clock()) if target else None
                chosen, why = due_for_withdrawal(policy, fresh, time.time(), partner, target is not None)
                for uid in chosen:
                    count += await self._withdraw(tid, name, queue.asterisk_queue, uid, why)
        self.requested &= set(self.book.channels)
        return count

    async def _withdraw(self, tenant: str, queue: str, asterisk_queue: str, uid: str, why: str) -> int:
        channel = self.book.channels.get(uid)
        if channel is None:
            log.warning(
                "call.withdraw_skipped", tenant=tenant, queue=queue, uniqueid=uid, reason="channel unknown"
            )
            return 0
        self.requested.add(uid)
        result = await self.consumer.queue_withdraw_caller(
            asterisk_queue, channel, f"overflow {tenant}/{queue}"
        )
        log.info(
            "call.withdrawn" if result.requested else "call.withdraw_refused",
            tenant=tenant,
            queue=queue,
            uniqueid=uid,
            reason=why,
            asterisk=result.message,
        )
        self.withdrawn += result.requested
        return int(result.requested)

    async def run(self) -> None:
        while True:
            try:
                await self.sweep()
            except (ConnectionError, TimeoutError, OSError) as exc:  # AMI or Redis away: next sweep
                log.warning("withdraw.sweep_failed", error=type(exc).__name__)
            await asyncio.sleep(self.interval_s)


@dataclass
class AmiPipeline:
    """AMI events into Redis (the consumer, under the writer lease) and the withdrawer."""

    consumer: AmiConsumer
    store: QueueStateStore
    withdrawer: Withdrawer


def ami_pipeline(
    settings: AmiSettings,
    redis: Redis,
    instance: str,
    live: CachedLiveSource,
    *,
    clock: Callable[[], datetime],
    keys: RedisKeys = KEYS,
    withdraw_interval_s: float = 5.0,
    on_message: Callable[[Mapping[str, str], float], None] | None = None,
) -> AmiPipeline:
    """Wire one controller instance's AMI side: consumer, store, lease, channel book, withdrawer."""
    store = QueueStateStore(redis, writer=instance, keys=keys)
    book = ChannelBook()
    lease = WriterLease(redis, instance, ttl_s=settings.lease_ttl_s, keys=keys)
    consumer = AmiConsumer(settings, store, lease, on_event=book.on_event, on_message=on_message)
    withdrawer = Withdrawer(
        consumer,
        store,
        book,
        plan=live.plan,
        live=lambda p, t, n: live.read_now(p, t, n)[0],
        clock=clock,
        interval_s=withdraw_interval_s,
    )
    return AmiPipeline(consumer, store, withdrawer)
