"""``serve``'s records into the centre's records stream, and which controller emits each one.

:class:`StreamSink` is the :class:`~records.outbox.RecordSink` of a controller with Redis: each
record version becomes an :class:`~records.stream.Envelope` (record id = the Linkedid, version,
tenant, centre, ``occurred_at`` = arrival, ``updated_at``, payload = the record as JSON) and is
appended with :class:`~records.stream.RecordStream` (once per record id and version, however
often it is tried). :class:`TeeSink` adds the optional JSON Lines outbox after the stream.

:class:`Ownership` decides which of several controllers behind one Asterisk emits a call's
record. Every controller's AMI consumer receives every event, so every controller builds a
record of every queue call, but only the one that served the call's FastAGI requests has its IVR
part. The rule (see ``docs/contact-records.md``):

* the controller that served a call's first FastAGI request **claims** its Linkedid
  (``SET records:{centre}:owner:<id> <instance> NX EX 12h``), from the record pump's background
  task, never on the call path; only the owner emits the record (and its later versions);
* a call no controller served (the fail-static dialplan, a call arriving while every controller
  was down) is claimed, when its record is due, by the AMI writer lease holder, with the same
  ``SET NX``: it emits only if no controller claimed the call first;
* a controller that is not the lease holder skips a record another controller has claimed
  (one ``MGET``), and keeps a record nobody has claimed yet *parked* for a while (a lease
  take-over): if it has not become the holder by then, the holder has emitted it;
* every controller keeps an *alive* key (``EX 5 s``, refreshed about once a second). The lease
  holder parks a record another controller claimed for :data:`ORPHAN_WAIT_S`; if by then that
  controller's alive key is gone (it was killed, or stopped before it could hand over), the
  holder emits the record itself, with what AMI showed and a problem saying the IVR part is
  missing. Had the owner emitted it, the same (id, version) is already in the stream and the
  holder's copy is not appended again.

* a later FastAGI request of a call (a second menu step, the survey) may reach another
  controller than the owner: that controller's facts of the call are *forwarded*: pushed to
  the owner's list (``records:{centre}:facts_for:<owner>``), which the owner's pump empties
  every round into its builder (a fact that comes after the record went out makes its next
  version). Facts waiting for a claim to be decided are held for that round only.

A claim that cannot be made (Redis down) keeps the record in the pump's backlog: it is decided,
and appended, once Redis answers again.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

from redis.asyncio import Redis

from records.facts import IvrFact
from records.journal import fact_line, fact_of
from records.model import ContactRecord
from records.outbox import JsonlSink
from records.stream import Envelope, EnvelopeError, RecordStream
from routing.redis_keys import KEYS, RedisKeys

log = logging.getLogger("records.appender")

CLAIM_TTL_S = 12 * 3600
"""How long a claim lives: longer than the builder keeps a call (6 h open + 1 h for late versions)."""

ALIVE_TTL_S = 5
"""How long a controller's alive key lives unless refreshed (about once a second)."""

ORPHAN_WAIT_S = ALIVE_TTL_S + 2.0
"""How long the lease holder waits before it asks whether the owner of a due record is alive:
an owner alive all that time has had many pump rounds to emit it."""

FORWARD_TTL_S = 24 * 3600
"""How long a controller's list of forwarded facts lives without a push (its owner stopped)."""

FORWARD_BATCH = 1000
"""Forwarded facts an owner takes in one round (one ``LPOP``)."""

ORPHANED = (
    "the controller that served this call stopped before handing its record over: the IVR part is missing"
)

PARK_S = 15.0
"""How long a controller that is not the AMI lease holder keeps a record of a call nobody served:
two and a half lease times (6 s), enough for a take-over."""


def envelope_of(record: ContactRecord, centre: str) -> Envelope:
    """The envelope delivery carries for one record version of ``centre``'s stream."""
    return Envelope(
        record_id=record.id,
        version=record.version,
        tenant=record.tenant or "",
        centre=centre,
        occurred_at=record.arrived_at,
        updated_at=record.updated_at,
        payload=record.model_dump(mode="json"),
    )


class StreamSink:
    """Appends record versions to the centre's records stream (pipelined, one round trip a batch).

    ``tenant_of`` (the plan in force: dialled number to council) names the council of a record
    the builder could not: a call no controller served (the fail-static path) is known from AMI
    alone, which gives the number dialled but not the council, and delivery goes by council."""

    def __init__(self, stream: RecordStream, tenant_of: Callable[[str], str | None] | None = None) -> None:
        self.stream, self.tenant_of = stream, tenant_of
        self.appended = 0
        self.already_in = 0
        self.unsendable = 0

    async def append(self, record: ContactRecord) -> None:
        await self.append_many([record])

    async def append_many(self, records: Sequence[ContactRecord]) -> None:
        """Append each version once; raises the Redis error if Redis does not answer (the pump
        keeps the records and tries again: the append is idempotent)."""
        envelopes = []
        for given in records:
            record = self._with_tenant(given)
            try:
                envelopes.append(envelope_of(record, self.stream.centre))
            except EnvelopeError as exc:  # cannot be delivered, ever: said once, never retried
                self.unsendable += 1
                log.error("records.unsendable id=%.40s version=%d %s", record.id, record.version, exc)
        if not envelopes:
            return
        results = await self.stream.append_many(envelopes)
        added = sum(1 for r in results if r is not None)
        self.appended += added
        self.already_in += len(results) - added

    def _with_tenant(self, record: ContactRecord) -> ContactRecord:
        if record.tenant is not None or not record.dialled or self.tenant_of is None:
            return record
        try:
            tenant = self.tenant_of(record.dialled)
        except Exception as exc:  # a number the plan cannot read: the record goes without
            log.warning("records.tenant_unknown %s", type(exc).__name__)
            return record
        return record if tenant is None else record.model_copy(update={"tenant": tenant})


class TeeSink:
    """The records stream, then the JSON Lines outbox (an extra copy, e.g. for the demonstration).

    A batch the stream took is written to the file; if the file fails, the batch is tried again
    on both (the stream refuses what it has): the file may then hold a line twice, never lose one."""

    def __init__(self, stream: StreamSink, outbox: JsonlSink) -> None:
        self.stream, self.outbox = stream, outbox

    async def append(self, record: ContactRecord) -> None:
        await self.append_many([record])

    async def append_many(self, records: Sequence[ContactRecord]) -> None:
        await self.stream.append_many(records)
        await self.outbox.append_many(records)


@dataclass
class Decision:
    """What :meth:`Ownership.select` made of a batch of due records."""

    emit: list[ContactRecord] = field(default_factory=list)
    park: list[ContactRecord] = field(default_factory=list)
    skip: list[ContactRecord] = field(default_factory=list)


class Ownership:
    """Which records this controller emits (the rule is in the module doc)."""

    def __init__(
        self,
        redis: Redis,
        centre: str,
        instance: str,
        *,
        lease_holder: Callable[[], bool],
        keys: RedisKeys = KEYS,
        clock: Callable[[], float] = time.time,
        ttl_s: int = CLAIM_TTL_S,
        park_s: float = PARK_S,
    ) -> None:
        self.redis, self.centre, self.instance, self.keys = redis, centre, instance, keys
        self.lease_holder, self.clock, self.ttl_s, self.park_s = lease_holder, clock, ttl_s, park_s
        self._served: dict[str, float] = {}  # served here, claim not yet made
        self._mine: dict[str, float] = {}  # claimed by this controller
        self._theirs: dict[str, float] = {}  # claimed by another controller
        self._owner_of: dict[str, str] = {}  # the other controller, where known
        self._alive_at = float("-inf")  # when this controller last refreshed its alive key
        self._parked: dict[str, float] = {}  # nobody served; this controller not the lease holder
        self._waiting: dict[str, list[IvrFact]] = {}  # facts of calls whose claim is not decided
        self._forward: list[tuple[str, IvrFact]] = []  # (owner, fact) to push
        self.forwarded = 0
        self.received = 0
        self.claims = 0
        self._pruned_at = 0.0

    # --- in: synchronous, from the call path -----------------------------------------------------

    def served(self, call_id: str, fact: IvrFact | None = None) -> None:
        """This controller served a FastAGI request of ``call_id`` (a dict insert, no I/O);
        ``fact``: what it learnt, forwarded to the owner if that is another controller."""
        if call_id in self._mine:
            return
        owner = self._owner_of.get(call_id)
        if call_id in self._theirs and owner is not None:
            if fact is not None:
                self._forward.append((owner, fact))
            return
        self._served.setdefault(call_id, self.clock())
        if fact is not None:
            self._waiting.setdefault(call_id, []).append(fact)

    # --- out: the pump's background task ---------------------------------------------------------

    async def claim(self) -> int:
        """Claim every call served since the last round (one pipelined round trip); returns how
        many became this controller's. Raises a Redis error (the claims are tried next round)."""
        self._prune()
        await self._still_alive()
        if not self._served:
            return 0
        ids = list(self._served)
        won = [bool(ours) for ours in await self._take(ids)]
        now = self.clock()
        for call_id, ours in zip(ids, won, strict=True):
            self._served.pop(call_id, None)
            (self._mine if ours else self._theirs)[call_id] = now
            waiting = self._waiting.pop(call_id, [])
            owner = self._owner_of.get(call_id)
            if not ours and owner is not None:
                self._forward.extend((owner, fact) for fact in waiting)
        self.claims += sum(won)
        await self._push_forwarded()
        return sum(won)

    async def _push_forwarded(self) -> None:
        """Push the facts of calls another controller owns to that controller's list."""
        if not self._forward:
            return
        batch, self._forward = self._forward, []
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for owner in {o for o, _ in batch}:
                    key = self.keys.record_facts_for(self.centre, owner)
                    pipe.rpush(key, *(json.dumps(fact_line(f)) for o, f in batch if o == owner))
                    pipe.expire(key, FORWARD_TTL_S)
                await pipe.execute()
        except Exception:
            self._forward = batch + self._forward  # pushed next round
            raise
        self.forwarded += len(batch)

    async def take_forwarded(self) -> list[IvrFact]:
        """The facts other controllers forwarded to this one (one ``LPOP``, at most
        :data:`FORWARD_BATCH`); a fact that cannot be read is logged and dropped."""
        key = self.keys.record_facts_for(self.centre, self.instance)
        raw = await self.redis.lpop(key, FORWARD_BATCH)
        out: list[IvrFact] = []
        for item in raw if isinstance(raw, list) else []:
            try:
                out.append(fact_of(json.loads(item)))
            except ValueError as exc:
                log.warning("records.forwarded_fact_refused %s", str(exc)[:200])
        self.received += len(out)
        return out

    async def select(self, records: Sequence[ContactRecord]) -> Decision:
        """Sort due records into those this controller emits, parks (may emit later) or skips.

        Raises a Redis error: the caller keeps the records and asks again next round."""
        await self.claim()
        now = self.clock()
        unknown = sorted({r.id for r in records if r.id not in self._mine and r.id not in self._theirs})
        if unknown:
            holding = self.lease_holder()
            owners = await (self._take(unknown) if holding else self._owners(unknown))
            for call_id, ours in zip(unknown, owners, strict=True):
                if ours is None:
                    continue  # nobody has claimed it, and this controller may not: parked below
                (self._mine if ours else self._theirs)[call_id] = now
                self._parked.pop(call_id, None)
        orphans = await self._orphans(records, now)
        decision = Decision()
        for record in records:
            if record.id in orphans:
                decision.emit.append(_orphaned(record))
            elif record.id in self._mine:
                decision.emit.append(record)
            elif record.id in self._theirs:
                waiting = self.lease_holder() and now - self._theirs[record.id] < ORPHAN_WAIT_S
                (decision.park if waiting else decision.skip).append(record)
            elif now - self._parked.setdefault(record.id, now) < self.park_s:
                decision.park.append(record)
            else:  # the lease holder all along was another controller: it emitted the record
                self._parked.pop(record.id, None)
                decision.skip.append(record)
        return decision

    async def adopt(self, call_ids: Sequence[str], previous: Collection[str]) -> int:
        """After a restart: the calls of ``call_ids`` claimed by one of this controller's
        ``previous`` instances (named in its fact journal) become this instance's; the rest are
        decided as usual. One pipelined round trip to read, one to write. Returns how many."""
        ids = sorted(set(call_ids))
        if not ids or not previous:
            return 0
        owners = await self.redis.mget([self.keys.record_owner(self.centre, c) for c in ids])
        named = {p.encode() for p in previous} | set(previous)
        ours = [c for c, o in zip(ids, owners, strict=True) if o is not None and o in named]
        if ours:
            async with self.redis.pipeline(transaction=False) as pipe:
                for call_id in ours:
                    pipe.set(self.keys.record_owner(self.centre, call_id), self.instance, ex=self.ttl_s)
                await pipe.execute()
        now = self.clock()
        for call_id in ours:
            self._served.pop(call_id, None)
            self._mine[call_id] = now
        return len(ours)

    async def _still_alive(self) -> None:
        """Refresh this controller's alive key, about once a second."""
        now = time.monotonic()
        if now - self._alive_at >= 1.0:
            await self.redis.set(
                self.keys.record_owner_alive(self.centre, self.instance), "1", ex=ALIVE_TTL_S
            )
            self._alive_at = now

    async def _orphans(self, records: Sequence[ContactRecord], now: float) -> set[str]:
        """The lease holder's due records whose owner has waited :data:`ORPHAN_WAIT_S` and has
        no alive key: this controller takes them over (its claim replaces the dead one's)."""
        if not self.lease_holder():
            return set()
        waited = sorted({r.id for r in records if now - self._theirs.get(r.id, now) >= ORPHAN_WAIT_S})
        if not waited:
            return set()
        owners = await self.redis.mget([self.keys.record_owner(self.centre, c) for c in waited])
        named = {c: _text(o) for c, o in zip(waited, owners, strict=True) if o is not None}
        alive = await self.redis.mget([self.keys.record_owner_alive(self.centre, o) for o in named.values()])
        dead = [c for c, up in zip(named, alive, strict=True) if up is None]
        for call_id in dead:
            key = self.keys.record_owner(self.centre, call_id)
            await self.redis.set(key, self.instance, ex=self.ttl_s)
            self._theirs.pop(call_id, None)
            self._mine[call_id] = now
            log.warning("records.orphan_taken_over", extra={"call": call_id, "owner": named[call_id]})
        return set(dead)

    async def _owners(self, ids: list[str]) -> list[bool | None]:
        """Whether each id is claimed by this controller, by another, or (None) by nobody yet."""
        values = await self.redis.mget([self.keys.record_owner(self.centre, c) for c in ids])
        mine = (self.instance.encode(), self.instance)
        return [None if v is None else v in mine for v in values]

    async def _take(self, ids: list[str]) -> list[bool | None]:
        """``SET NX EX`` each id's owner key, then read it: ours if set now or set by us before."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for call_id in ids:
                key = self.keys.record_owner(self.centre, call_id)
                pipe.set(key, self.instance, nx=True, ex=self.ttl_s)
                pipe.get(key)
            replies = await pipe.execute()
        mine = (self.instance.encode(), self.instance)
        for i, call_id in enumerate(ids):
            holder = replies[2 * i + 1]
            if holder is not None and holder not in mine:
                self._owner_of[call_id] = _text(holder)
        return [bool(replies[2 * i]) or replies[2 * i + 1] in mine for i in range(len(ids))]

    def _prune(self) -> None:
        """Forget decisions older than a claim (bounded memory); at most once a minute."""
        now = self.clock()
        if now - self._pruned_at < 60:
            return
        self._pruned_at = now
        for book, age in ((self._mine, self.ttl_s), (self._theirs, self.ttl_s), (self._parked, self.ttl_s)):
            for call_id in [c for c, at in book.items() if now - at > age]:
                del book[call_id]
                self._owner_of.pop(call_id, None)


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _orphaned(record: ContactRecord) -> ContactRecord:
    """The record with a problem saying its IVR part was lost with the controller that served it."""
    if ORPHANED in record.problems:
        return record
    return record.model_copy(update={"problems": [*record.problems, ORPHANED]})
