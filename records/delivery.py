"""The delivery worker: every record version to every CRM sink of its tenant, nothing lost.

One consumer group per sink (``<tenant>/<sink>``) on the centre's records stream, so each sink
advances on its own: a dead CRM holds back only its own sink. For each sink one worker at a
time holds a lease (``RedisKeys.sink_lease``) and delivers; others wait to take over. The
holder loops:

1. take a batch: first versions to send again (``records retry``/``replay``, the sink's redo
   stream), then its own unacknowledged entries (after an error), then entries a dead worker
   had taken (``XAUTOCLAIM`` once idle for a lease time; new entries wait until those are
   claimed, so nothing overtakes them), then new entries (``XREADGROUP >``);
2. deliver the batch: entries of other tenants are acknowledged at once; the rest are grouped
   by record id, each record's versions sent one after the other in stream order, different
   records concurrently (up to the sink's ``concurrency``). Each version is retried until the
   CRM takes it (2xx) or refuses it (4xx other than 408/429: a dead letter, kept with the CRM's
   answer until a person retries it): 5xx, 408, 429 and timeouts are retried without limit of
   time, after exponential backoff with full jitter, or after ``Retry-After`` when the CRM
   gives one (which pauses the whole sink: it is the CRM speaking for itself);
3. only when the whole batch is done (file sinks fsync'd) acknowledge it, in one transaction
   with the dead letters and counters. The next batch starts only then, so version 2 of a
   contact never overtakes version 1, even across retries, crashes and workers.

A circuit breaker per sink stops sending after a few failures in a row and sends one probe
after a cool-down that grows to a cap: a dead CRM costs one request per cool-down, never a hot
loop. None of this runs in the controller: routing only appends (one round trip).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
import uuid
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from records.archive import NO_TENANT
from records.sinks import Outcome, Sink
from records.stream import DEFAULT_RETENTION_S, Entry, EnvelopeError, parse_entry
from routing.live.scripts import RELEASE_LEASE, RENEW_LEASE
from routing.metrics import SinkMetrics
from routing.redis_keys import KEYS, RedisKeys

log = structlog.get_logger("callrouter.records")

Clock = Callable[[], float]
Rand = Callable[[], float]


@dataclass(frozen=True, slots=True)
class Policy:
    """How hard and how fast the worker tries (defaults for production; tests shorten them)."""

    batch: int = 500
    block_ms: int = 1000
    lease_s: float = 10.0
    backoff_base_s: float = 0.2
    backoff_cap_s: float = 60.0
    breaker_threshold: int = 5
    breaker_open_s: float = 1.0
    breaker_open_cap_s: float = 30.0
    trim_every_s: float = 60.0
    retention_s: int = DEFAULT_RETENTION_S


# --- pure decisions ------------------------------------------------------------------------------


def backoff_s(attempt: int, base_s: float, cap_s: float, rand: Rand) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base * 2**attempt))."""
    return float(rand() * min(cap_s, base_s * 2 ** min(attempt, 40)))


def retry_delay_s(attempt: int, outcome: Outcome, policy: Policy, rand: Rand) -> float:
    """How long one record waits before its next attempt: the CRM's ``Retry-After`` if it gave one."""
    if outcome.retry_after_s is not None:
        return outcome.retry_after_s
    return backoff_s(attempt, policy.backoff_base_s, policy.backoff_cap_s, rand)


BreakerState = Literal["closed", "open", "half-open"]


@dataclass
class Breaker:
    """A circuit breaker for one sink. Times are passed in (epoch or monotonic seconds, one kind)."""

    threshold: int = 5
    open_s: float = 1.0
    open_cap_s: float = 30.0
    failures: int = 0
    opens: int = 0
    open_until: float = 0.0
    probing: bool = False

    def state(self, now: float) -> BreakerState:
        if now < self.open_until:
            return "open"
        return "half-open" if self.failures >= self.threshold else "closed"

    def wait_s(self, now: float) -> float:
        """0 if a request may go now (taking the one probe when half-open), else how long to wait."""
        if now < self.open_until:
            return self.open_until - now
        if self.failures >= self.threshold:
            if self.probing:
                return self.open_s
            self.probing = True
        return 0.0

    def success(self) -> None:
        self.failures, self.opens, self.open_until, self.probing = 0, 0, 0.0, False

    def failure(self, now: float, retry_after_s: float | None, rand: Rand) -> None:
        self.failures += 1
        self.probing = False
        if retry_after_s is not None:
            self.open_until = max(self.open_until, now + retry_after_s)
        if self.failures >= self.threshold:
            cool = min(self.open_cap_s, self.open_s * 2**self.opens)
            self.opens = min(self.opens + 1, 40)
            self.open_until = max(self.open_until, now + cool * (0.5 + rand() / 2))

    def release_probe(self) -> None:
        """A probe that was cancelled (lease lost, stop) frees the slot for the next one."""
        self.probing = False


def stream_id_key(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


def appended_at(stream_id: str) -> float:
    """When an entry was appended (Unix seconds): the milliseconds of its stream id."""
    return stream_id_key(stream_id)[0] / 1000


# --- the lease ------------------------------------------------------------------------------------


class SinkLease:
    """One deliverer per sink: ``SET NX PX`` to take, compare-and-set to renew and release."""

    def __init__(self, redis: Redis, key: str, holder: str, ttl_s: float) -> None:
        self.redis, self.key, self.holder = redis, key, holder
        self.ttl_ms = max(1, int(ttl_s * 1000))
        self._renew = redis.register_script(RENEW_LEASE)
        self._release = redis.register_script(RELEASE_LEASE)

    async def hold(self) -> bool:
        if await self._renew(keys=[self.key], args=[self.holder, self.ttl_ms]):
            return True
        return bool(await self.redis.set(self.key, self.holder, nx=True, px=self.ttl_ms))

    async def release(self) -> None:
        await self._release(keys=[self.key], args=[self.holder])


# --- one sink ------------------------------------------------------------------------------------


@dataclass(slots=True)
class Item:
    stream_id: str
    entry: Entry | None
    source: Literal["stream", "redo"]
    problem: str = ""


@dataclass(slots=True)
class Tally:
    acks: list[str] = field(default_factory=list)
    redo_done: list[str] = field(default_factory=list)
    dead: dict[str, str] = field(default_factory=dict)
    delivered: int = 0


class LeaseLost(Exception):
    """This worker no longer holds the sink's lease: it stops delivering at once."""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class SinkWorker:
    """Delivers one sink's records while holding its lease."""

    def __init__(
        self,
        redis: Redis,
        centre: str,
        tenant: str,
        sink: Sink,
        *,
        consumer: str,
        policy: Policy = Policy(),
        keys: RedisKeys = KEYS,
        clock: Clock = time.time,
        rand: Rand = random.random,
    ) -> None:
        self.redis, self.centre, self.tenant, self.sink = redis, centre, tenant, sink
        self.consumer, self.policy, self.keys, self.clock, self.rand = consumer, policy, keys, clock, rand
        self.group = sink.name
        self.stream = keys.records_stream(centre)
        self.redo = keys.sink_redo(centre, sink.name)
        self.dead = keys.sink_dead(centre, sink.name)
        self.stats = keys.sink_stats(centre, sink.name)
        self.lease = SinkLease(redis, keys.sink_lease(centre, sink.name), consumer, policy.lease_s)
        self.breaker = Breaker(policy.breaker_threshold, policy.breaker_open_s, policy.breaker_open_cap_s)
        self.concurrency = max(1, sink.concurrency)
        self.metrics = SinkMetrics(sink.name)
        self._changed: asyncio.Future[None] | None = None
        self._failed_attempts = 0
        self.attempts_failed_total = 0
        self._last_error = ""
        self._group_ready = False
        self._last_renewed = 0.0

    # -- lease and group

    async def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:  # from the start of the stream: a new sink receives every record still kept
            await self.redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    async def _renew(self) -> bool:
        """Keep the lease; a Redis error counts as lost once a lease time has passed without renewal."""
        try:
            if await self.lease.hold():
                self._last_renewed = self.clock()
                return True
            return False
        except (RedisError, OSError):
            return self.clock() - self._last_renewed < self.policy.lease_s

    # -- taking a batch

    async def _next_batch(self) -> list[Item]:
        n = self.policy.batch
        # The three checks go in one round trip (benchmarked: with Redis on a busy core every
        # round trip between batches costs delivery time).
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.xrange(self.redo, count=n)
            pipe.xreadgroup(self.group, self.consumer, {self.stream: "0"}, count=n)
            pipe.xpending(self.stream, self.group)
            redo, own, summary = await pipe.execute()
        if redo:
            return [self._item(sid, fields, "redo") for sid, fields in redo]
        if own and own[0][1]:
            return [self._item(sid, fields, "stream") for sid, fields in own[0][1]]
        others = [c for c in summary.get("consumers") or [] if _text(c["name"]) != self.consumer]
        if others:
            return await self._claim(n)
        new: Any = await self.redis.xreadgroup(
            self.group, self.consumer, {self.stream: ">"}, count=n, block=self.policy.block_ms
        )
        return [self._item(sid, fields, "stream") for sid, fields in (new[0][1] if new else [])]

    async def _claim(self, n: int) -> list[Item]:
        """Entries a worker that died had taken, once idle a lease time; none new meanwhile."""
        reply = await self.redis.xautoclaim(
            self.stream, self.group, self.consumer, min_idle_time=self.lease.ttl_ms, start_id="0-0", count=n
        )
        claimed, deleted = reply[1], (reply[2] if len(reply) > 2 else [])
        if deleted:  # trimmed while pending: nothing left to deliver
            await self.redis.xack(self.stream, self.group, *deleted)
        if claimed:
            log.info("records_claimed", sink=self.sink.name, entries=len(claimed))
            return [self._item(sid, fields, "stream") for sid, fields in claimed]
        await asyncio.sleep(min(1.0, self.policy.lease_s / 4))
        return []

    def _item(self, sid: Any, fields: Any, source: Literal["stream", "redo"]) -> Item:
        stream_id = _text(sid)
        if not fields:
            return Item(stream_id, None, source, "entry deleted")
        try:
            return Item(stream_id, parse_entry(stream_id, fields), source)
        except EnvelopeError as exc:
            return Item(stream_id, None, source, str(exc)[:200])

    # -- delivering a batch

    def _notify(self) -> None:
        if self._changed is not None and not self._changed.done():
            self._changed.set_result(None)
        self._changed = None

    async def _admit(self) -> None:
        while (wait := self.breaker.wait_s(self.clock())) > 0:
            if self._changed is None:
                self._changed = asyncio.get_running_loop().create_future()
            await asyncio.wait({self._changed}, timeout=wait)

    async def _until_done(self, entry: Entry) -> Outcome:
        attempt = 0
        while True:
            await self._admit()
            try:
                outcome = await self.sink.send(entry.envelope)
            except BaseException:
                self.breaker.release_probe()
                raise
            if outcome.kind != "retry":
                if self.breaker.failures:
                    log.info("crm_answering", sink=self.sink.name)
                self.breaker.success()
                self._notify()
                return outcome
            self.breaker.failure(self.clock(), outcome.retry_after_s, self.rand)
            self._notify()
            self._failed_attempts += 1
            self.attempts_failed_total += 1
            self._last_error = f"{outcome.status or ''} {outcome.answer}".strip()[:200]
            if attempt == 0 or self.breaker.failures == self.policy.breaker_threshold:
                log.warning(
                    "crm_retry",
                    sink=self.sink.name,
                    status=outcome.status,
                    error=self._last_error,
                    breaker=self.breaker.state(self.clock()),
                )
            await asyncio.sleep(retry_delay_s(attempt, outcome, self.policy, self.rand))
            attempt += 1

    def _done(self, tally: Tally, item: Item) -> None:
        (tally.redo_done if item.source == "redo" else tally.acks).append(item.stream_id)

    def _dead_letter(self, tally: Tally, item: Item, status: int, answer: str) -> None:
        envelope = item.entry.envelope.to_json() if item.entry else None  # kept as sent, to send again
        key = item.entry.envelope.key if item.entry else f"entry:{item.stream_id}"
        tally.dead[key] = json.dumps(
            {
                "envelope": envelope,
                "status": status,
                "answer": answer,
                "at": self.clock(),
                "stream_id": item.stream_id,
            }
        )
        self._done(tally, item)

    async def _deliver(self, items: list[Item], tally: Tally) -> None:
        chains: dict[str, list[Item]] = {}
        for item in items:
            if item.entry is None:
                if item.problem == "entry deleted":
                    self._done(tally, item)
                else:
                    self._dead_letter(tally, item, 0, f"unreadable stream entry: {item.problem}")
            elif item.entry.envelope.tenant != self.tenant:
                self._done(tally, item)
            else:
                chains.setdefault(item.entry.envelope.record_id, []).append(item)
        slots = asyncio.Semaphore(self.concurrency)

        async def chain(versions: list[Item]) -> None:
            for item in versions:
                assert item.entry is not None
                async with slots:
                    outcome = await self._until_done(item.entry)
                if outcome.kind == "delivered":
                    tally.delivered += 1
                    self.metrics.latency.observe(max(0.0, self.clock() - appended_at(item.stream_id)))
                    self._done(tally, item)
                else:
                    log.warning(
                        "crm_refused",
                        sink=self.sink.name,
                        record=item.entry.envelope.key,
                        status=outcome.status,
                    )
                    self._dead_letter(tally, item, outcome.status, outcome.answer)

        await asyncio.gather(*(chain(v) for v in chains.values()))

    async def _supervised(self, work: Coroutine[Any, Any, None], stop: asyncio.Event) -> None:
        """Run ``work`` while renewing the lease; cancel it if the lease is lost or we stop."""
        task = asyncio.ensure_future(work)
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=self.lease.ttl_ms / 3000)
                if task in done:
                    task.result()
                    return
                if stop.is_set() or not await self._renew():
                    raise LeaseLost
                await self._heartbeat()
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, LeaseLost):
                    await task

    def _report(self, pipe: Any, delivered: int = 0) -> None:
        """Queue the sink's counters and breaker state on ``pipe`` (for ``records status``)."""
        now = self.clock()
        pipe.hincrby(self.stats, "attempts_failed", self._failed_attempts)
        fields: dict[Any, Any] = {
            "breaker": self.breaker.state(now),
            "holder": self.consumer,
            "updated_at": now,
        }
        if delivered:
            fields["last_delivered_at"] = now
        if self._last_error:
            fields["last_error"] = self._last_error
            fields["last_error_at"] = now
        pipe.hset(self.stats, mapping=fields)
        self._failed_attempts, self._last_error = 0, ""

    async def _heartbeat(self) -> None:
        """While a batch is held up (a CRM down), still tell ``records status`` how it is going."""
        with contextlib.suppress(RedisError, OSError):
            async with self.redis.pipeline(transaction=True) as pipe:
                self._report(pipe)
                await pipe.execute()

    async def _settle(self, tally: Tally) -> None:
        """Make the batch durable at the sink, then acknowledge it with its dead letters, atomically."""
        if not (tally.acks or tally.redo_done or tally.dead):
            return
        await self.sink.flush()
        async with self.redis.pipeline(transaction=True) as pipe:
            if tally.acks:
                pipe.xack(self.stream, self.group, *tally.acks)
            if tally.redo_done:
                pipe.xdel(self.redo, *tally.redo_done)
            if tally.dead:
                pipe.hset(self.dead, mapping=cast(Mapping[Any, Any], tally.dead))
            pipe.hincrby(self.stats, "delivered", tally.delivered)
            pipe.hincrby(self.stats, "dead_lettered", len(tally.dead))
            failed, error = self._failed_attempts, self._last_error
            self._report(pipe, tally.delivered)
            try:
                await pipe.execute()
            except BaseException:
                self._failed_attempts, self._last_error = self._failed_attempts + failed, error
                raise
        self.metrics.delivered.inc(tally.delivered)  # counted once settled: a batch sent again is not
        self.metrics.dead_letters.inc(len(tally.dead))

    async def step(self, stop: asyncio.Event) -> bool:
        """One turn: hold the lease, take a batch, deliver and settle it. False when not holding."""
        fresh = self.clock() - self._last_renewed < self.lease.ttl_ms / 3000  # renewed moments ago
        if not fresh and not await self._renew():
            return False
        await self._ensure_group()
        items = await self._next_batch()
        if not items:
            return True
        tally = Tally()
        try:
            await self._supervised(self._deliver(items, tally), stop)
        finally:  # what was delivered is acknowledged even if the rest was cut short
            self.breaker.release_probe()
            await self._settle(tally)
        return True

    async def run(self, stop: asyncio.Event) -> None:
        errors = 0
        try:
            while not stop.is_set():
                try:
                    holding = await self.step(stop)
                    errors = 0
                    if not holding:
                        await _pause(stop, self.policy.lease_s / 3)
                except LeaseLost:
                    log.warning("records_lease_lost", sink=self.sink.name)
                except (RedisError, OSError) as exc:
                    self._group_ready = False
                    log.warning("records_redis_error", sink=self.sink.name, error=type(exc).__name__)
                    await _pause(stop, backoff_s(errors, 0.1, 5.0, self.rand))
                    errors += 1
        finally:
            with contextlib.suppress(RedisError, OSError):
                await self.lease.release()


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


CONSUMER_FORGOTTEN_MS = 3600 * 1000

# --- trimming -------------------------------------------------------------------------------------


async def trim_floor(redis: Redis, stream: str, groups: list[str], now: float, retention_s: int) -> str:
    """The stream id below which entries may go: older than the retention age *and* delivered
    to every sink (acknowledged by its group). ``0-0`` when a sink has no group yet."""
    floor = (int((now - retention_s) * 1000), 0)
    info = {_text(g["name"]): g for g in await redis.xinfo_groups(stream)}
    for group in groups:
        if group not in info:
            return "0-0"
        candidates = [stream_id_key(_text(info[group]["last-delivered-id"]))]
        if int(info[group]["pending"]):
            summary = await redis.xpending(stream, group)
            if summary["min"] is not None:  # acknowledged since XINFO: nothing pending now
                candidates.append(stream_id_key(_text(summary["min"])))
        floor = min(floor, *candidates)
    return f"{floor[0]}-{floor[1]}"


# --- the whole worker ------------------------------------------------------------------------------


def sink_tenant(sink_name: str) -> str:
    """The envelopes' tenant a sink ``<tenant>/<name>`` takes: ``_no-tenant`` stands for the
    records of calls to a number no council owns (their envelopes' tenant is empty)."""
    tenant = sink_name.split("/", 1)[0]
    return "" if tenant == NO_TENANT else tenant


class DeliveryWorker:
    """Every sink of every tenant of one centre, each in its own task, plus trimming."""

    def __init__(
        self,
        redis: Redis,
        centre: str,
        sinks: dict[str, Sink],
        *,
        consumer: str | None = None,
        policy: Policy = Policy(),
        keys: RedisKeys = KEYS,
    ) -> None:
        self.redis, self.centre, self.policy, self.keys = redis, centre, policy, keys
        self.consumer = consumer or f"deliver-{uuid.uuid4().hex[:12]}"
        self.sinks = sinks
        self.workers = [
            SinkWorker(
                redis, centre, sink_tenant(name), sink, consumer=self.consumer, policy=policy, keys=keys
            )
            for name, sink in sinks.items()
        ]

    async def _trim(self, stop: asyncio.Event) -> None:
        stream = self.keys.records_stream(self.centre)
        while not stop.is_set():
            await _pause(stop, self.policy.trim_every_s)
            try:
                if not await self.redis.exists(stream):
                    continue
                floor = await trim_floor(
                    self.redis, stream, list(self.sinks), time.time(), self.policy.retention_s
                )
                if floor != "0-0":
                    await self.redis.xtrim(stream, minid=floor, approximate=True)
                await self._forget_gone_consumers(stream)
            except (RedisError, OSError) as exc:
                log.warning("records_trim_failed", error=type(exc).__name__)

    async def _forget_gone_consumers(self, stream: str) -> None:
        """Drop consumers of workers long gone (each worker run has its own name) once they
        hold nothing: their entries were claimed by the next lease holder."""
        for group in self.sinks:
            with contextlib.suppress(ResponseError):
                for consumer in await self.redis.xinfo_consumers(stream, group):
                    gone = int(consumer["idle"]) > CONSUMER_FORGOTTEN_MS and not int(consumer["pending"])
                    if gone and _text(consumer["name"]) != self.consumer:
                        await self.redis.xgroup_delconsumer(stream, group, consumer["name"])

    async def run(self, stop: asyncio.Event) -> None:
        log.info(
            "records_delivery_started", centre=self.centre, sinks=sorted(self.sinks), consumer=self.consumer
        )
        try:
            await asyncio.gather(*(w.run(stop) for w in self.workers), self._trim(stop))
        finally:
            for sink in self.sinks.values():
                with contextlib.suppress(OSError):
                    await sink.close()
            log.info("records_delivery_stopped", centre=self.centre)
