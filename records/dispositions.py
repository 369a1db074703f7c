"""Dispositions asked for over HTTP, applied by the controller that emits the call's record.

An adviser's disposition reaches the records in two ways: the ``CallDisposition`` AMI UserEvent,
which every controller's record builder reads, and the web service's ``POST
.../records/{id}/disposition``. The second must take the same path as the first, or a version is
lost: the builder numbers the versions of a call it holds (for ``keep_s``, an hour after the
call), and a version made elsewhere takes a number the builder will use too (the stream then
refuses the builder's, and its change is lost).

So the web service does not make the version. It checks the request (kind, reason from the
tenant's list, team, the authenticated ``by``), gives it a request id (from the caller's
idempotency key, when given) and writes it to the centre's dispositions stream
(:func:`submit`; ``routing.redis_keys`` ``record_dispositions``), with its status ``pending``
(``record_disposition``, ``SET NX``: the same request id twice is one request). One consumer
group (:data:`GROUP`) reads the stream; whoever reads an entry decides with :func:`route`:

* a controller that emits the call's record (it owns the call: ``records.appender``
  ``Ownership``; or nobody owns it yet and this controller is the AMI lease holder, which will
  claim it) and holds the call in its builder **applies** it: the request becomes a
  :class:`~records.facts.DispositionGiven` fact, fed like any other (journal, builder), and the
  next version goes out through the usual path (stream append, delivery). Its status says
  ``applied`` and the version that carries it;
* a controller that does not own the call **hands** it to the owner (``XCLAIM`` to the owner's
  consumer name, its instance) if that owner is alive;
* a call nobody holds (finished more than ``keep_s`` ago, its owner stopped, or no controller
  running) goes to the **archive** consumer, the web service (:class:`ArchiveApplier`): the next
  version is made from the latest archived one (``records.disposition``), appended with the
  stream's idempotency by record id and version. It waits while a newer version is still on its
  way to the archive (never a 409), and refuses a request whose record never shows up.

Every reader reads its own pending entries again each round, so an entry handed to it is seen;
entries left pending by a controller that stopped are claimed (``XAUTOCLAIM``) after
:data:`STUCK_S` by another. A request applied twice (a reader stopped between applying and
acknowledging) changes nothing the second time: its status is final, and the same disposition
given again makes no version in the builder nor in :func:`~records.disposition.disposed`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from records.appender import envelope_of
from records.builder import Held
from records.callback import callback_json, with_callback
from records.disposition import DispositionError, disposed
from records.facts import CallbackReported, DispositionGiven
from records.model import ContactRecord, DispositionKind
from records.stream import RecordStream
from routing.callbacks import StoredCallback, attempts_of
from routing.core.linkedid import is_linkedid
from routing.redis_keys import KEYS, RedisKeys

if TYPE_CHECKING:
    from records.appender import Ownership
    from records.outbox import RecordPump

log = logging.getLogger("records.dispositions")

GROUP = "apply"
ARCHIVE = "archive"
"""The consumer name of the web service's archive-based fallback."""
STREAM_MAXLEN = 100_000
STATUS_TTL_S = 7 * 86_400
STUCK_S = 15.0
"""An entry pending this long with a reader that no longer reads (it stopped) is claimed by
another (a live reader reads its own pending entries every round, which keeps them fresh)."""
UNKNOWN_AFTER_S = 600.0
"""The archive consumer refuses a request whose record is nowhere (not archived, no version
appended, no owner) this long after it was asked for."""
ARCHIVE_WAIT_S = 86_400.0
"""... and one whose record has a version on its way to the archive but not of this tenant, or
stuck there (the delivery worker stopped), after a day."""
BATCH = 100

Route = Literal["apply", "hand", "wait", "archive"]
State = Literal["pending", "applied", "refused"]


@dataclass(frozen=True, slots=True)
class Request:
    """One disposition asked for (checked by the web service before it is written)."""

    request_id: str
    tenant: str
    record_id: str
    kind: DispositionKind | None  # None: a callback's news instead (``callback``)
    team: str | None
    reason: str | None
    by: str
    at: float  # when it was given (Unix seconds)
    # A queued callback's sub-object for the record (JSON: ``records.callback``), sent by the
    # dialler: the same path as a disposition, so the call's owner makes the next version.
    callback: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> Request:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("not a disposition request")
        return cls(**data)

    def fact(self, at: float) -> DispositionGiven | CallbackReported:
        if self.callback is not None:
            return CallbackReported(self.record_id, at, self.callback)
        if self.kind is None:
            raise ValueError("a disposition request without a kind")
        return DispositionGiven(self.record_id, at, self.kind, self.team, self.reason, self.by)

    def same(self, other: Request) -> bool:
        """The same request (an idempotency key used again): all but the time and the request id."""
        return (self.tenant, self.record_id, self.kind, self.team, self.reason, self.callback) == (
            other.tenant,
            other.record_id,
            other.kind,
            other.team,
            other.reason,
            other.callback,
        )


@dataclass(frozen=True, slots=True)
class Status:
    """Where a request stands: ``pending``; ``applied`` (``version``: the record version that
    carries it; ``changed`` false when the record held that disposition already); ``refused``
    (``detail`` says why)."""

    request: Request
    state: State
    version: int | None = None
    changed: bool | None = None
    detail: str | None = None
    applied_by: str | None = None  # the controller instance, or "archive"
    updated_at: float = 0.0

    def to_json(self) -> str:
        data = asdict(self)
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> Status:
        data = json.loads(text)
        return cls(**{**data, "request": Request(**data["request"])})

    @property
    def final(self) -> bool:
        return self.state != "pending"

    def shown(self) -> dict[str, Any]:
        """As the API shows it."""
        r = self.request
        return {
            "request": r.request_id,
            "tenant": r.tenant,
            "record": r.record_id,
            "status": self.state,
            "version": self.version,
            "changed": self.changed,
            "detail": self.detail,
            "kind": r.kind,
            "team": r.team,
            "reason": r.reason,
            "by": r.by,
            "at": datetime.fromtimestamp(r.at, UTC).isoformat(),
        }


def route(
    me: str, owner: str | None, owner_alive: bool, holds: bool, lease_holder: bool
) -> tuple[Route, str | None]:
    """What a controller does with a request it read (pure; the rule is in the module doc).

    ``owner``: the instance named in the call's owner key (None: nobody claimed it);
    ``holds``: this controller's builder holds the call. Returns the route and, for ``hand``,
    the controller to hand it to."""
    if owner == me:
        return ("apply", None) if holds else ("archive", None)
    if owner is not None:
        return ("hand", owner) if owner_alive else ("archive", None)
    if not holds:
        return "archive", None
    return ("apply", None) if lease_holder else ("wait", None)


def status_of(raw: str | bytes | None) -> Status | None:
    if raw is None:
        return None
    try:
        return Status.from_json(raw)
    except (ValueError, TypeError, KeyError):
        return None


async def read_status(redis: Redis, centre: str, request_id: str, keys: RedisKeys = KEYS) -> Status | None:
    return status_of(await redis.get(keys.record_disposition(centre, request_id)))


async def submit(
    redis: Redis, centre: str, request: Request, now: float, keys: RedisKeys = KEYS
) -> tuple[Status, bool]:
    """Write ``request`` (status ``pending``) and put it on the dispositions stream; returns its
    status and whether it is new. A request id already known is not written again: its status
    is returned as it stands (the caller compares it with :meth:`Request.same`)."""
    key = keys.record_disposition(centre, request.request_id)
    pending = Status(request, "pending", updated_at=now)
    if not await redis.set(key, pending.to_json(), nx=True, ex=STATUS_TTL_S):
        found = status_of(await redis.get(key))
        return (found or pending), False
    try:
        await redis.xadd(
            keys.record_dispositions(centre),
            {"r": request.request_id, "q": request.to_json()},
            maxlen=STREAM_MAXLEN,
            approximate=True,
        )
    except Exception:
        await redis.delete(key)  # not on the stream: the same request may be sent again
        raise
    return pending, True


def callback_request(stored: StoredCallback, outcome: str | None, *, by: str, at: float) -> Request | None:
    """The request that puts a queued callback's end into its original call's record: the
    record's ``callback`` (each attempt logged so far, ``outcome``), request id
    ``callback-<id>`` (one per callback). None when the callback names no contact record."""
    if not is_linkedid(stored.call_id):  # a contact record's id is the call's Linkedid
        return None
    attempts = [(a.started_at, a.ended_at, a.outcome, a.adviser) for a in attempts_of(stored)]
    body = callback_json(attempts, outcome)
    return Request(f"callback-{stored.callback_id}", stored.tenant, stored.call_id, None, None, None, by, at,
                   callback=body)  # fmt: skip


async def submit_callback(
    redis: Redis,
    centre: str,
    stored: StoredCallback,
    outcome: str | None,
    *,
    by: str,
    at: float,
    keys: RedisKeys = KEYS,
) -> bool:
    """A queued callback's end (the dialler's: done, failed, cancelled at closing; a supervisor's
    cancel, through the web service or ``callrouter callbacks cancel --direct``) into its call's
    contact record, on the centre's dispositions stream as a late disposition goes, so the call's
    owner (or the archive) makes the next version. Once per callback: False when it names no
    record or its request was made already."""
    request = callback_request(stored, outcome, by=by, at=at)
    if request is None:
        return False
    _status, new = await submit(redis, centre, request, at, keys=keys)
    return new


async def _set_status(redis: Redis, centre: str, status: Status, keys: RedisKeys) -> None:
    await redis.set(
        keys.record_disposition(centre, status.request.request_id), status.to_json(), ex=STATUS_TTL_S
    )


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


Entry = tuple[str, Request | None]


class _Reader:
    """One consumer of the dispositions stream's group (a controller, or the archive fallback)."""

    def __init__(
        self,
        redis: Redis,
        centre: str,
        consumer: str,
        keys: RedisKeys,
        clock: Callable[[], float],
        *,
        stuck_s: float = STUCK_S,
    ) -> None:
        self.redis, self.centre, self.consumer, self.keys, self.clock = redis, centre, consumer, keys, clock
        self.stuck_s = stuck_s
        self.stream = keys.record_dispositions(centre)
        self._group_made = False
        self._autoclaimed_at = float("-inf")

    async def _group(self) -> None:
        if self._group_made:
            return
        try:
            await self.redis.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_made = True

    def _entries(self, reply: Any) -> list[Entry]:
        out: list[Entry] = []
        for entry_id, fields in reply or []:
            request: Request | None = None
            if fields:  # None or empty: the entry was trimmed from the stream
                raw = fields.get(b"q", fields.get("q"))
                try:
                    request = Request.from_json(raw) if raw is not None else None
                except (ValueError, TypeError) as exc:
                    log.warning("records.disposition_unreadable %s", str(exc)[:200])
            out.append((_text(entry_id), request))
        return out

    async def _read(self, stream_id: str) -> list[Entry]:
        reply: Any = await self.redis.xreadgroup(GROUP, self.consumer, {self.stream: stream_id}, count=BATCH)
        return self._entries(reply[0][1] if reply else [])

    async def own(self) -> list[Entry]:
        """The entries this reader holds (read before, or handed to it), again."""
        await self._group()
        return await self._read("0")

    async def new(self) -> list[Entry]:
        await self._group()
        return await self._read(">")

    async def stuck(self) -> list[Entry]:
        """Entries a stopped reader left pending (at most every few seconds)."""
        now = time.monotonic()
        if now - self._autoclaimed_at < self.stuck_s / 3:
            return []
        self._autoclaimed_at = now
        await self._group()
        reply = await self.redis.xautoclaim(
            self.stream, GROUP, self.consumer, min_idle_time=int(self.stuck_s * 1000), count=BATCH
        )
        return self._entries(reply[1])

    async def ack(self, entry_id: str) -> None:
        await self.redis.xack(self.stream, GROUP, entry_id)

    async def hand(self, entry_id: str, to: str) -> None:
        await self.redis.xclaim(self.stream, GROUP, to, 0, [entry_id], justid=True)

    async def status(self, request: Request) -> Status | None:
        return await read_status(self.redis, self.centre, request.request_id, self.keys)

    async def settle(self, entry_id: str, status: Status) -> None:
        await _set_status(self.redis, self.centre, status, self.keys)
        await self.ack(entry_id)


class DispositionInbox:
    """A controller's reader of the dispositions stream, run in its record pump's background round."""

    def __init__(
        self,
        owner: Ownership,
        *,
        clock: Callable[[], float] = time.time,
        every_s: float = 0.5,
    ) -> None:
        self.owner = owner
        self.reader = _Reader(owner.redis, owner.centre, owner.instance, owner.keys, clock)
        self.every_s = every_s
        self._round_at = float("-inf")
        self.applied = 0
        self.handed = 0

    async def round(self, pump: RecordPump) -> int:
        """Read and route the requests (at most every ``every_s``); returns how many it applied.
        Raises a Redis error (the requests stay pending and are read again next round)."""
        now = time.monotonic()
        if now - self._round_at < self.every_s:
            return 0
        self._round_at = now
        entries = await self.reader.own() + await self.reader.new() + await self.reader.stuck()
        done = 0
        for entry_id, request in entries:
            done += await self._one(pump, entry_id, request)
        return done

    async def _one(self, pump: RecordPump, entry_id: str, request: Request | None) -> int:
        reader, ownership = self.reader, self.owner
        if request is None:
            await reader.ack(entry_id)
            return 0
        status = await reader.status(request)
        if status is not None and status.final:
            await reader.ack(entry_id)  # applied before (read again after a stop): nothing to do
            return 0
        key = ownership.keys.record_owner(ownership.centre, request.record_id)
        raw = await ownership.redis.get(key)
        named = _text(raw) if raw is not None else None
        alive = False
        if named is not None and named != ownership.instance:
            alive = (
                await ownership.redis.exists(ownership.keys.record_owner_alive(ownership.centre, named)) > 0
            )
        held = pump.builder.held(request.record_id)
        where, to = route(ownership.instance, named, alive, held is not None, ownership.lease_holder())
        if where == "apply" and held is not None:
            return await self._apply(pump, entry_id, request, held)
        if where == "hand" and to is not None:
            await reader.hand(entry_id, to)
            self.handed += 1
        elif where == "archive":
            await reader.hand(entry_id, ARCHIVE)
            self.handed += 1
        return 0  # "wait": stays pending here, read again next round

    async def _apply(self, pump: RecordPump, entry_id: str, request: Request, held: Held) -> int:
        now = self.reader.clock()
        if held.tenant is not None and held.tenant != request.tenant:
            refused = Status(
                request, "refused", detail="the call is not one of this tenant's", updated_at=now
            )
            await self.reader.settle(entry_id, refused)
            return 0
        given = (request.kind or "", request.team, request.reason)
        if request.callback is not None:
            version = held.version_with_callback(request.callback)
            changed = held.callback != request.callback
        else:
            version = held.version_with(given)
            changed = held.disposition != given
        # the usual path (journal, builder): the next version is due after the grace. At the
        # controller's now at the latest: a web service's clock ahead would hold the version back
        pump.fact(request.fact(min(request.at, pump.clock())))
        applied = Status(
            request,
            "applied",
            version=version,
            changed=changed,
            applied_by=self.owner.instance,
            updated_at=now,
        )
        await self.reader.settle(entry_id, applied)
        self.applied += 1
        log.info("records.disposition_applied id=%.40s version=%d", request.record_id, version)
        return 1


LatestArchived = Callable[[str, str], Awaitable[ContactRecord | None]]
Reasons = Callable[[str], Awaitable[Collection[str]]]


class ArchiveApplier:
    """The web service's reader: the archive-based next version for calls no controller holds.

    ``latest(tenant, record_id)``: the latest archived version (None: not archived);
    ``reasons(tenant)``: the tenant's avoidable contact reasons in the plan in force."""

    def __init__(
        self,
        redis: Redis,
        centre: str,
        latest: LatestArchived,
        reasons: Reasons,
        *,
        keys: RedisKeys = KEYS,
        clock: Callable[[], float] = time.time,
        stuck_s: float = STUCK_S,
    ) -> None:
        self.redis, self.centre, self.keys = redis, centre, keys
        self.latest, self.reasons, self.clock = latest, reasons, clock
        self.reader = _Reader(redis, centre, ARCHIVE, keys, clock, stuck_s=stuck_s)
        self.applied = 0

    async def round(self) -> int:
        """One round: the entries handed here (applied from the archive), and entries nobody
        reads (no controller running, or one stopped): handed to the call's owner if it is
        alive, else applied here. Returns how many it applied."""
        done = 0
        for entry_id, request in await self.reader.own():
            done += await self._one(entry_id, request, fresh=False)
        for entry_id, request in await self.reader.stuck() + await self._unread():
            done += await self._one(entry_id, request, fresh=True)
        return done

    async def _unread(self) -> list[Entry]:
        """New entries, only when no controller has read the oldest unread one for
        :data:`STUCK_S` (no controller is running)."""
        groups = (
            await self.redis.xinfo_groups(self.reader.stream)
            if await self.redis.exists(self.reader.stream)
            else []
        )
        last = next((g.get("last-delivered-id") for g in groups if _text(g.get("name", b"")) == GROUP), None)
        if last is None:
            return await self.reader.new()  # no group yet: made by the read
        after: Any = await self.redis.xrange(self.reader.stream, min=f"({_text(last)}", count=1)
        if not after:
            return []
        millis = int(_text(after[0][0]).split("-", 1)[0])
        if time.time() - millis / 1000 < self.reader.stuck_s:  # the stream's ids: Redis's clock
            return []
        return await self.reader.new()

    async def _one(self, entry_id: str, request: Request | None, *, fresh: bool) -> int:
        reader = self.reader
        if request is None:
            await reader.ack(entry_id)
            return 0
        status = await reader.status(request)
        if status is not None and status.final:
            await reader.ack(entry_id)
            return 0
        owner = await self.redis.get(self.keys.record_owner(self.centre, request.record_id))
        if fresh and owner is not None:
            named = _text(owner)
            if await self.redis.exists(self.keys.record_owner_alive(self.centre, named)):
                await reader.hand(entry_id, named)  # a controller holds the call: it applies it
                return 0
        return await self._from_archive(entry_id, request, known=owner is not None)

    async def _from_archive(self, entry_id: str, request: Request, *, known: bool) -> int:
        now = self.clock()
        latest = await self.latest(request.tenant, request.record_id)
        raw = await self.redis.get(self.keys.record_appended(self.centre, request.record_id))
        appended = int(raw) if raw is not None else 0
        if latest is None:
            limit = ARCHIVE_WAIT_S if known or appended else UNKNOWN_AFTER_S
            if now - request.at > limit:
                detail = f"no record {request.record_id} of tenant {request.tenant} in the archive"
                await self.reader.settle(entry_id, Status(request, "refused", detail=detail, updated_at=now))
            return 0  # on its way to the archive: asked again next round
        if appended > latest.version:
            return 0  # a newer version is on its way to the archive: the next one is made from it
        try:
            at = datetime.fromtimestamp(request.at, UTC)
            if request.callback is not None:
                made = with_callback(latest, request.callback, at)
            else:
                made = disposed(
                    latest,
                    request.kind or "",
                    team=request.team,
                    reason=request.reason,
                    by=request.by,
                    at=at,
                    reasons=await self.reasons(request.tenant),
                )
        except (DispositionError, ValueError) as exc:
            await self.reader.settle(entry_id, Status(request, "refused", detail=str(exc), updated_at=now))
            return 0
        if made is None:
            same = Status(request, "applied", latest.version, False, applied_by=ARCHIVE, updated_at=now)
            await self.reader.settle(entry_id, same)
            return 1
        stream = RecordStream(self.redis, self.centre, keys=self.keys)
        if await stream.append(envelope_of(made, self.centre)) is None:
            return 0  # that version was appended meanwhile: asked again once it is archived
        done = Status(request, "applied", made.version, True, applied_by=ARCHIVE, updated_at=now)
        await self.reader.settle(entry_id, done)
        self.applied += 1
        return 1
