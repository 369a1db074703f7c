"""Queued callbacks in Redis: the store the IVR writes and the dialler reads (thin adapter).

A callback lives in two keys (``routing.redis_keys``):

* ``callback(id)`` HASH: the request (tenant, queue, asterisk_queue, number, joined_at,
  requested_at, call_id, language) and its progress (state, attempts, next_at, outcome,
  updated_at);
* ``callbacks_pending(asterisk_queue)`` ZSET id -> the original call's join time: the
  callback keeps its caller's place in the queue's one order (live callers in the queue's
  ``waiting`` ZSET are scored by join time the same way). A callback stays in it while it is
  pending or being dialled, and leaves it when it ends (done, failed, cancelled).

The id is derived from the original call's record id, so a request is idempotent per call:
asking again (a retried FastAGI command, a second key press) returns the same id and changes
nothing. Both keys are written by one script, so a reader never sees one without the other.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from redis.asyncio import Redis

from routing.core.callback import CallbackRequest, CallbackState
from routing.core.callback_order import Next
from routing.core.plan import CallbackPolicy
from routing.core.wait import HeldPlace
from routing.live.store import handle_times_from
from routing.masking import mask_number
from routing.redis_keys import RedisKeys
from routing.replicas import NO_WAIT, ReplicaWait, eval_and_wait

_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
_NAME = re.compile(r"^[A-Za-z0-9_.:@-]{1,80}$")  # tenant, queue, language: plan names
MAX_CALL_ID = 200
STATES: tuple[CallbackState, ...] = ("pending", "dialling", "done", "failed", "cancelled")
OPEN_STATES: frozenset[str] = frozenset({"pending", "dialling"})


class CallbackRefused(ValueError):
    """A callback request that cannot be stored, with the reason in plain words."""


# KEYS: callback hash, pending zset. ARGV: id, joined_at, then field/value pairs.
# Returns 1 when stored, 0 when the call already had its callback (nothing changed).
_REQUEST = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('ZADD', KEYS[2], 'NX', ARGV[2], ARGV[1])
return 1
"""


def callback_id(call_id: str) -> str:
    """The callback id of the call ``call_id``: the same call always gives the same id."""
    return "cb-" + hashlib.sha256(call_id.encode()).hexdigest()[:20]


def _num(value: float) -> str:
    return repr(float(value))


def check_request(req: CallbackRequest) -> None:
    """:class:`CallbackRefused` unless ``req`` can be stored as it is."""
    if not _E164.match(req.number):
        raise CallbackRefused("the callback number must be in E.164 form (+441632960001)")
    for label, value in (("tenant", req.tenant), ("queue", req.queue), ("language", req.language)):
        if not _NAME.match(value):
            raise CallbackRefused(f"the callback's {label} is not a plan name")
    if not req.call_id or len(req.call_id) > MAX_CALL_ID or not req.call_id.isprintable():
        raise CallbackRefused("the callback needs the original call's record id")
    if not (req.joined_at > 0 and req.requested_at > 0):
        raise CallbackRefused("the callback needs the call's join and request times")
    if req.requested_at < req.joined_at:
        raise CallbackRefused("a callback cannot be requested before its call joined the queue")


async def request_callback(
    redis: Redis,
    keys: RedisKeys,
    req: CallbackRequest,
    policy: CallbackPolicy,
    now: float,
    *,
    asterisk_queue: str | None = None,
    wait: ReplicaWait = NO_WAIT,
) -> str:
    """Store ``req`` as a pending callback and return its id; idempotent per ``req.call_id``.

    The callback is first due ``policy.initial_delay_s`` after ``now``; its place in the order
    is ``req.joined_at``. ``asterisk_queue`` is the Asterisk queue whose order it keeps (the
    plan's queue name when not given). With ``wait`` on, answers once the replicas hold it."""
    check_request(req)
    queue = asterisk_queue or req.queue
    if not _NAME.match(queue):
        raise CallbackRefused("the callback's Asterisk queue is not a plan name")
    ident = callback_id(req.call_id)
    fields = {
        "tenant": req.tenant,
        "queue": req.queue,
        "asterisk_queue": queue,
        "number": req.number,
        "joined_at": _num(req.joined_at),
        "requested_at": _num(req.requested_at),
        "call_id": req.call_id,
        "language": req.language,
        "state": "pending",
        "attempts": "0",
        "next_at": _num(now + policy.initial_delay_s),
        "outcome": "",
        "updated_at": _num(now),
    }
    flat = [item for pair in fields.items() for item in pair]
    await eval_and_wait(
        redis,
        wait,
        _REQUEST,
        [keys.callback(ident), keys.callbacks_pending(queue)],
        [ident, _num(req.joined_at), *flat],
    )
    return ident


@dataclass(frozen=True, slots=True)
class PendingCallback:
    """A callback still holding its place in a queue's order (pending or being dialled)."""

    callback_id: str
    joined_at: float


async def pending_callbacks(redis: Redis, keys: RedisKeys, asterisk_queue: str) -> list[PendingCallback]:
    """The callbacks holding a place in ``asterisk_queue``'s order, earliest join time first
    (they count as callers waiting ahead of anyone who joined later)."""
    rows: list[Any] = await redis.zrange(keys.callbacks_pending(asterisk_queue), 0, -1, withscores=True)
    return [PendingCallback(_text(member), float(score)) for member, score in rows]


# KEYS: a queue's handle times (zset), its pending callbacks (zset). ARGV: the text before and
# after the id in a callback hash's key. -> {the handle-time members, {join time, state} of each
# pending callback in join order}: the expected wait's inputs in one round trip. The hashes
# are built here (which callbacks are pending is only known here); they carry the declared keys'
# hash tag, so they lie in the same slot, on the node that runs the script (as the live-state
# scripts: routing/live/scripts.py). A hash gone (expired) gives state ''.
_WAIT_INPUTS = """
local held = {}
local pending = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
for i = 1, #pending, 2 do
  held[#held + 1] = pending[i + 1]
  held[#held + 1] = redis.call('HGET', ARGV[1] .. pending[i] .. ARGV[2], 'state') or ''
end
return {redis.call('ZRANGE', KEYS[1], 0, -1), held}
"""


@dataclass(frozen=True, slots=True)
class WaitInputs:
    """What the expected wait of a queue needs from Redis: its recent handle times (seconds,
    oldest first) and the places held in its order by callbacks (as :func:`pending_callbacks`,
    each with whether it is being dialled, for :func:`routing.core.wait.callbacks_ahead`)."""

    handle_times: list[float]
    held: list[HeldPlace]


class WaitInputsReader:
    """Reads a queue's :class:`WaitInputs` in one round trip (one script, sent by its SHA).

    Before, they took three round trips in sequence on every estimate (the handle times, the
    pending callbacks, then the state of each): ``benchmarks/wait_inputs_bench.py``."""

    def __init__(self, redis: Redis, keys: RedisKeys) -> None:
        self.keys = keys
        self._script = redis.register_script(_WAIT_INPUTS)
        self._around = keys.callback("\x00").split("\x00")

    async def read(self, asterisk_queue: str) -> WaitInputs:
        keys = [self.keys.queue_handle_times(asterisk_queue), self.keys.callbacks_pending(asterisk_queue)]
        handle, held = await self._script(keys=keys, args=self._around)
        return WaitInputs(handle_times_from(handle), held_from(held))


def held_from(rows: list[Any]) -> list[HeldPlace]:
    """The held places in the script's flat answer (join time, state per callback)."""
    return [HeldPlace(float(rows[i]), _text(rows[i + 1]) == "dialling") for i in range(0, len(rows), 2)]


@dataclass(frozen=True, slots=True)
class StoredCallback:
    """One callback as stored (``callback(id)`` HASH)."""

    callback_id: str
    tenant: str
    queue: str
    asterisk_queue: str
    number: str
    joined_at: float
    requested_at: float
    call_id: str
    language: str
    state: CallbackState
    attempts: int
    next_at: float
    outcome: str
    updated_at: float
    fields: dict[str, str]  # every field, including the dialler's own (claim, attempt log)

    @property
    def request(self) -> CallbackRequest:
        return CallbackRequest(
            tenant=self.tenant,
            queue=self.queue,
            number=self.number,
            joined_at=self.joined_at,
            requested_at=self.requested_at,
            call_id=self.call_id,
            language=self.language,
        )


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def parse_callback(ident: str, raw: dict[bytes | str, bytes | str]) -> StoredCallback | None:
    """The callback in ``raw`` (a ``HGETALL`` answer), or ``None`` when it is empty or not a
    callback this module wrote."""
    fields = {_text(k): _text(v) for k, v in raw.items()}
    state = fields.get("state", "")
    if state not in STATES:
        return None
    try:
        return StoredCallback(
            callback_id=ident,
            tenant=fields["tenant"],
            queue=fields["queue"],
            asterisk_queue=fields.get("asterisk_queue", fields["queue"]),
            number=fields["number"],
            joined_at=float(fields["joined_at"]),
            requested_at=float(fields["requested_at"]),
            call_id=fields["call_id"],
            language=fields["language"],
            state=state,
            attempts=int(fields.get("attempts", "0")),
            next_at=float(fields.get("next_at", "0")),
            outcome=fields.get("outcome", ""),
            updated_at=float(fields.get("updated_at", "0")),
            fields=fields,
        )
    except (KeyError, ValueError):
        return None


async def load_callback(redis: Redis, keys: RedisKeys, ident: str) -> StoredCallback | None:
    """The callback ``ident``, or ``None`` when there is none (never stored, or expired)."""
    return parse_callback(ident, await redis.hgetall(keys.callback(ident)))


# --- the dialler's transitions -------------------------------------------------------------
# A dial is fenced twice. Claiming one (pending -> dialling) checks the AMI writer lease in the
# same step (``routing/live/lease.py``): only the lease holder dials, so two controllers never
# dial one callback, also after a Redis fail-over. Each dial has a number (``dials``, one more
# per claim) carried in its AMI ActionID and channel ids; what Asterisk reports about a dial is
# applied only while the callback is still in that dial, so a report seen by two controllers, or
# late, changes nothing the second time. ``attempts`` counts the times the caller was dialled.

ENDED_TTL_MS = 7 * 24 * 3600 * 1000  # a week after it ends
CANCEL_REASON_MAX = 500
MAX_BY = 80
AUDIT_MAXLEN = 100_000  # as routing.supervisor's audit trail

# KEYS: hash, lease. ARGV: holder, now. -> the dial number, 0 (not pending or not due), -1 (lease)
_CLAIM = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return -1 end
local f = redis.call('HMGET', KEYS[1], 'state', 'next_at')
if f[1] ~= 'pending' or tonumber(f[2]) > tonumber(ARGV[2]) then return 0 end
local dial = redis.call('HINCRBY', KEYS[1], 'dials', 1)
redis.call('HSET', KEYS[1], 'state', 'dialling', 'claim', ARGV[1], 'dial_started', ARGV[2],
  'adviser', '', 'adviser_at', '', 'updated_at', ARGV[2])
return dial
"""

# KEYS: hash. ARGV: dial, then field/value pairs. Sets them while the callback is in that dial.
_NOTE = """
local f = redis.call('HMGET', KEYS[1], 'state', 'dials')
if f[1] ~= 'dialling' or f[2] ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
return 1
"""

# KEYS: hash, pending zset. ARGV: id, dial, attempt JSON, state, next_at, outcome, attempts, now, ttl.
# Ends dial ARGV[2]: its attempt joins the log and the callback takes its next state (1). 0 when
# the callback is in another dial; 2 when it had ended otherwise (cancelled: the log still gets
# the attempt); 3 when this dial's end is in already (a retry after an answer the replicas did not
# confirm, or a report heard twice): the field written again is a write of this connection, so
# the WAIT that follows confirms that the replicas hold everything before it, that end included.
_FINISH = """
local f = redis.call('HMGET', KEYS[1], 'state', 'dials', 'attempt_log', 'last_logged')
if f[2] ~= ARGV[2] then return 0 end
if f[4] == ARGV[2] then
  redis.call('HSET', KEYS[1], 'last_logged', ARGV[2])
  return 3
end
local log = cjson.decode(f[3] or '[]')
table.insert(log, cjson.decode(ARGV[3]))
redis.call('HSET', KEYS[1], 'attempt_log', cjson.encode(log), 'last_logged', ARGV[2], 'updated_at', ARGV[8])
if f[1] ~= 'dialling' then return 2 end
redis.call('HSET', KEYS[1], 'state', ARGV[4], 'next_at', ARGV[5], 'outcome', ARGV[6], 'attempts', ARGV[7])
if ARGV[4] ~= 'pending' then
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ARGV[9])
end
return 1
"""

# KEYS: hash, lease. ARGV: holder, next_at, now. Moves a pending callback's next attempt.
_RESCHEDULE = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return -1 end
if redis.call('HGET', KEYS[1], 'state') ~= 'pending' then return 0 end
redis.call('HSET', KEYS[1], 'next_at', ARGV[2], 'updated_at', ARGV[3])
return 1
"""

# KEYS: hash, pending zset[, audit stream]. ARGV: id, outcome, by, reason, now, ttl, only_pending
# [, audit entry, audit maxlen]. -> the state it had ('' when there is no such callback; nothing
# changes unless pending/dialling). With the audit stream, the entry is added in the same step.
_CANCEL = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return '' end
if state ~= 'pending' and (state ~= 'dialling' or ARGV[7] == '1') then return state end
redis.call('HSET', KEYS[1], 'state', 'cancelled', 'outcome', ARGV[2], 'cancelled_by', ARGV[3],
  'cancel_reason', ARGV[4], 'updated_at', ARGV[5])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[6])
if KEYS[3] then
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[9], '*', 'entry', ARGV[8], 'previous', state)
end
return state
"""


Finished = Literal["ended", "other_dial", "logged_only", "already"]
"""What :func:`finish` found: ``ended`` (the callback took its next state), ``other_dial`` (it is
in another dial, or gone: nothing written), ``logged_only`` (it had ended otherwise, cancelled: the
attempt is logged), ``already`` (this dial's end was in already)."""
_FINISHED: dict[int, Finished] = {0: "other_dial", 1: "ended", 2: "logged_only", 3: "already"}


@dataclass(frozen=True, slots=True)
class Attempt:
    """One dial as the contact record shows it (times in epoch seconds)."""

    dial: int
    started_at: float
    ended_at: float
    outcome: str  # routing.core.callback_order.AttemptOutcome
    adviser: str = ""  # the adviser's name (MemberName) when one answered

    def to_json(self) -> str:
        return json.dumps(
            {
                "dial": self.dial,
                "started_at": self.started_at,
                "ended_at": self.ended_at,
                "outcome": self.outcome,
                "adviser": self.adviser,
            }
        )


def attempts_of(stored: StoredCallback) -> list[Attempt]:
    """The attempt log of a stored callback, oldest first."""
    try:
        rows = json.loads(stored.fields.get("attempt_log", "[]"))
        return [
            Attempt(
                int(r["dial"]),
                float(r["started_at"]),
                float(r["ended_at"]),
                str(r["outcome"]),
                str(r["adviser"]),
            )
            for r in rows
        ]
    except (ValueError, KeyError, TypeError):
        return []


async def claim(
    redis: Redis, keys: RedisKeys, ident: str, holder: str, now: float, *, wait: ReplicaWait = NO_WAIT
) -> int:
    """Take a due pending callback for a dial: its dial number; 0 when it is not pending or not
    due; -1 when ``holder`` does not hold the AMI writer lease (nothing changed). With ``wait``
    on, :class:`~routing.replicas.NotReplicated` when the replicas did not confirm the claim in
    time: the caller must not dial then (a fail-over now could lose the claim, and another
    controller dial the same callback); the dial, never started, ends as lost later."""
    found = await eval_and_wait(
        redis, wait, _CLAIM, [keys.callback(ident), keys.ami_writer_lease()], [holder, _num(now)]
    )
    return int(found)


async def note(redis: Redis, keys: RedisKeys, ident: str, dial: int, **fields: str) -> bool:
    """Record facts about dial ``dial`` (the adviser who answered...) while it lasts."""
    flat = [item for pair in fields.items() for item in pair]
    return bool(await redis.eval(_NOTE, 1, keys.callback(ident), str(dial), *flat))


async def finish(
    redis: Redis,
    keys: RedisKeys,
    stored: StoredCallback,
    dial: int,
    *,
    attempt: Attempt,
    nxt: Next,
    now: float,
    wait: ReplicaWait = NO_WAIT,
) -> Finished:
    """End dial ``dial``: log ``attempt`` and move to ``nxt`` (:data:`Finished` says what it
    found). With ``wait`` on, :class:`~routing.replicas.NotReplicated` when the replicas did not
    confirm in time: the end may stand on this primary only, and is to be sent again (then
    ``already``, confirmed by that WAIT) until confirmed."""
    done = await eval_and_wait(
        redis,
        wait,
        _FINISH,
        [keys.callback(stored.callback_id), keys.callbacks_pending(stored.asterisk_queue)],
        [
            stored.callback_id,
            str(dial),
            attempt.to_json(),
            nxt.state,
            _num(nxt.next_at),
            nxt.outcome,
            str(nxt.attempts),
            _num(now),
            str(ENDED_TTL_MS),
        ],
    )
    return _FINISHED.get(int(done), "other_dial")


async def reschedule(
    redis: Redis, keys: RedisKeys, ident: str, holder: str, *, next_at: float, now: float
) -> int:
    """Move a pending callback's next attempt to ``next_at`` (the lease holder only)."""
    return int(
        await redis.eval(
            _RESCHEDULE, 2, keys.callback(ident), keys.ami_writer_lease(), holder, _num(next_at), _num(now)
        )
    )


async def cancel(
    redis: Redis,
    keys: RedisKeys,
    stored: StoredCallback,
    *,
    outcome: str,
    by: str,
    reason: str,
    now: float,
    only_pending: bool = False,
    audit_entry: str | None = None,
    wait: ReplicaWait = NO_WAIT,
) -> str:
    """End a pending (or, unless ``only_pending``, a dialling) callback as ``cancelled`` with
    ``outcome``; returns the state it had (nothing changes unless pending or dialling). A dial
    under way is not hung up: its attempt is still logged when it ends. ``audit_entry`` (JSON)
    goes to the audit stream in the same step when the callback was cancelled."""
    keys_used = [keys.callback(stored.callback_id), keys.callbacks_pending(stored.asterisk_queue)]
    args = [
        stored.callback_id,
        outcome,
        by,
        reason,
        _num(now),
        str(ENDED_TTL_MS),
        "1" if only_pending else "0",
    ]
    if audit_entry is not None:
        keys_used.append(keys.audit_stream())
        args += [audit_entry, str(AUDIT_MAXLEN)]
    before = await eval_and_wait(redis, wait, _CANCEL, keys_used, args)
    return _text(before)


async def load_many(redis: Redis, keys: RedisKeys, idents: list[str]) -> list[StoredCallback]:
    """The stored callbacks among ``idents`` (one round trip), in the order given."""
    if not idents:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for ident in idents:
            pipe.hgetall(keys.callback(ident))
        rows = await pipe.execute()
    found = (parse_callback(ident, raw) for ident, raw in zip(idents, rows, strict=True))
    return [c for c in found if c is not None]


# --- supervisors -------------------------------------------------------------------------------


async def tenant_callbacks(redis: Redis, keys: RedisKeys, tenant: str) -> list[StoredCallback]:
    """The callbacks of ``tenant`` holding a place in a queue's order (pending or being dialled),
    queue by queue (the Asterisk queues with live state), each queue in join order."""
    queues = sorted(_text(q) for q in await redis.smembers(keys.known_queues()))
    found: list[StoredCallback] = []
    for queue in queues:
        idents = [p.callback_id for p in await pending_callbacks(redis, keys, queue)]
        found += [c for c in await load_many(redis, keys, idents) if c.tenant == tenant]
    return found


def supervisor_view(cb: StoredCallback, position: int | None = None) -> dict[str, object]:
    """What a supervisor sees of a callback: the caller's number masked (the dialler, the CRM and
    the export alone see it whole), times as epoch seconds, the attempts made."""
    return {
        "id": cb.callback_id,
        "tenant": cb.tenant,
        "queue": cb.queue,
        "state": cb.state,
        "position": position,
        "number": mask_number(cb.number),
        "language": cb.language,
        "call_id": cb.call_id,
        "joined_at": cb.joined_at,
        "requested_at": cb.requested_at,
        "next_at": cb.next_at,
        "attempts": cb.attempts,
        "outcome": cb.outcome or None,
        "attempt_log": [
            {
                "dial": a.dial,
                "started_at": a.started_at,
                "ended_at": a.ended_at,
                "outcome": a.outcome,
                "adviser": a.adviser,
            }
            for a in attempts_of(cb)
        ],
    }


async def cancel_for_supervisor(
    redis: Redis,
    keys: RedisKeys,
    *,
    tenant: str,
    ident: str,
    by: str,
    reason: str,
    now: datetime,
    wait: ReplicaWait = NO_WAIT,
) -> tuple[StoredCallback, str]:
    """A supervisor cancels callback ``ident`` of ``tenant``, with a reason; audited in the same
    step (``callback.cancel``). Returns the callback as it was and the state it had.
    :class:`LookupError` for a callback that is not ``tenant``'s (or none);
    :class:`CallbackRefused` for a bad reason or by, or a callback already ended."""
    by = _checked("by", by, MAX_BY)
    reason = _checked("reason", reason, CANCEL_REASON_MAX)
    stored = await load_callback(redis, keys, ident) if _ID.match(ident) else None
    if stored is None or stored.tenant != tenant:
        raise LookupError(f"no callback {ident[:40]!r} for {tenant}")
    details = {"tenant": tenant, "callback": ident, "queue": stored.queue, "reason": reason}
    entry = json.dumps(
        {"at": now.isoformat(), "by": by, "what": "callback.cancel", **details}, separators=(",", ":")
    )
    before = await cancel(
        redis,
        keys,
        stored,
        outcome="cancelled",
        by=by,
        reason=reason,
        now=now.timestamp(),
        audit_entry=entry,
        wait=wait,
    )
    if before not in OPEN_STATES:
        raise CallbackRefused(f"callback {ident} has ended already ({before or 'gone'}): nothing to cancel")
    return stored, before


_ID = re.compile(r"^cb-[0-9a-f]{20}$")


def _checked(label: str, text: str, limit: int) -> str:
    cleaned = text.strip()
    if not cleaned:
        raise CallbackRefused(f"give a {label}")
    if len(cleaned) > limit:
        raise CallbackRefused(f"the {label} is longer than {limit} characters")
    if any(unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp") or ch in _BIDI for ch in cleaned):
        raise CallbackRefused(f"the {label} holds control characters")
    return cleaned


_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
