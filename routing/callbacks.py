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
import re
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from routing.core.callback import CallbackRequest, CallbackState
from routing.core.plan import CallbackPolicy
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
