"""What ``callrouter records status|dead-letters|retry|replay`` read and do in Redis.

A sink is ``<tenant>/<name>`` as in the plan. Status counts a sink's backlog as its consumer
group's unacknowledged entries, plus the entries of its tenant the group has not read yet, plus
its redo stream; the oldest undelivered age is that of the oldest of these. Retry moves dead
letters to the sink's redo stream (atomically: a letter is either dead or queued, never both or
neither); replay copies a tenant's records in a range of append times from the centre's stream
to the redo streams of the tenant's sinks (the CRM de-duplicates what it already has by the
idempotency key; a file sink skips lines its file already holds).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from records.stream import Envelope, EnvelopeError, entry_fields, stream_id_at
from routing.redis_keys import KEYS, RedisKeys

SCAN_CHUNK = 5000
SCAN_LIMIT = 2_000_000
"""Status counts unread entries by reading them; past this many it says "at least"."""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _id_time(stream_id: str) -> float:
    return int(stream_id.split("-", 1)[0]) / 1000


def _after(stream_id: str) -> str:
    ms, _, seq = stream_id.partition("-")
    return f"{ms}-{int(seq or 0) + 1}"


@dataclass(frozen=True, slots=True)
class SinkStatus:
    sink: str
    backlog: int
    backlog_exact: bool
    oldest_undelivered_at: float | None
    dead_letters: int
    delivered: int
    holder: str | None
    breaker: str
    last_error: str

    def as_dict(self, now: float) -> dict[str, Any]:
        age = None if self.oldest_undelivered_at is None else round(now - self.oldest_undelivered_at, 3)
        return {
            "sink": self.sink,
            "backlog": self.backlog,
            "backlog_exact": self.backlog_exact,
            "oldest_undelivered_age_s": age,
            "dead_letters": self.dead_letters,
            "delivered": self.delivered,
            "holder": self.holder,
            "breaker": self.breaker,
            "last_error": self.last_error,
        }


async def _unread(redis: Redis, stream: str, after: str, tenant: str) -> tuple[int, float | None, bool]:
    """Entries of ``tenant`` after ``after``: (count, oldest append time, exact)."""
    count, oldest, start, seen = 0, None, _after(after) if after != "0-0" else "-", 0
    while seen < SCAN_LIMIT:
        chunk: Any = await redis.xrange(stream, min=start, count=SCAN_CHUNK)
        if not chunk:
            return count, oldest, True
        for sid, fields in chunk:
            if _text(fields.get(b"t", b"")) == tenant:
                count += 1
                oldest = oldest if oldest is not None else _id_time(_text(sid))
        seen += len(chunk)
        start = _after(_text(chunk[-1][0]))
    return count, oldest, False


async def sink_status(redis: Redis, centre: str, sink: str, keys: RedisKeys = KEYS) -> SinkStatus:
    stream, tenant = keys.records_stream(centre), sink.split("/", 1)[0]
    groups: list[Any] = []
    try:
        groups = await redis.xinfo_groups(stream)
    except ResponseError:  # no stream yet
        groups = []
    group = next((g for g in groups if _text(g["name"]) == sink), None)
    pending, oldest_pending = 0, None
    last = "0-0"
    if group is not None:
        pending, last = int(group["pending"]), _text(group["last-delivered-id"])
        if pending:  # XPENDING's own count: the worker may have acknowledged them meanwhile
            summary = await redis.xpending(stream, sink)
            pending = int(summary["pending"])
            oldest_pending = _id_time(_text(summary["min"])) if pending else None
    unread, oldest_unread, exact = await _unread(redis, stream, last, tenant)
    redo = await redis.xrange(keys.sink_redo(centre, sink), count=1)
    redo_len = int(await redis.xlen(keys.sink_redo(centre, sink)))
    oldest = [t for t in (oldest_pending, oldest_unread, _id_time(_text(redo[0][0])) if redo else None) if t]
    stats = {_text(k): _text(v) for k, v in (await redis.hgetall(keys.sink_stats(centre, sink))).items()}
    holder = await redis.get(keys.sink_lease(centre, sink))
    return SinkStatus(
        sink=sink,
        backlog=pending + unread + redo_len,
        backlog_exact=exact,
        oldest_undelivered_at=min(oldest) if oldest else None,
        dead_letters=int(await redis.hlen(keys.sink_dead(centre, sink))),
        delivered=int(stats.get("delivered", "0")),
        holder=_text(holder) if holder is not None else None,
        breaker=stats.get("breaker", "unknown") if holder is not None else "no worker",
        last_error=stats.get("last_error", ""),
    )


async def dead_letters(redis: Redis, centre: str, sink: str, keys: RedisKeys = KEYS) -> list[dict[str, Any]]:
    """The sink's dead letters, oldest first: ``id``, status, the CRM's answer, when."""
    raw = await redis.hgetall(keys.sink_dead(centre, sink))
    letters = []
    for key, value in raw.items():
        letter = json.loads(value)
        envelope = json.loads(letter["envelope"]) if letter.get("envelope") else {}
        letters.append({
            "id": _text(key), "sink": sink, "record_id": envelope.get("record_id"),
            "version": envelope.get("version"), "status": letter.get("status"),
            "answer": letter.get("answer", ""), "at": letter.get("at"),
        })  # fmt: skip
    return sorted(letters, key=lambda item: (item["at"] or 0, item["id"]))


_RETRY = """
-- KEYS[1] dead-letter hash, KEYS[2] redo stream; ARGV ids. Moves each to the redo stream.
local moved = 0
for _, id in ipairs(ARGV) do
  local raw = redis.call('HGET', KEYS[1], id)
  if raw then
    local letter = cjson.decode(raw)
    if type(letter['envelope']) == 'string' then
      local tenant = cjson.decode(letter['envelope'])['tenant']
      redis.call('XADD', KEYS[2], '*', 't', tenant, 'e', letter['envelope'])
      moved = moved + 1
    end
    redis.call('HDEL', KEYS[1], id)
  end
end
return moved
"""


async def retry(redis: Redis, centre: str, sink: str, ids: list[str] | None, keys: RedisKeys = KEYS) -> int:
    """Send dead letters again (``ids``: ``<record id>:<version>`` or a record id for all its
    versions; None for all). Returns how many were queued."""
    dead = keys.sink_dead(centre, sink)
    present = [_text(k) for k in await redis.hkeys(dead)]
    chosen = present if ids is None else [k for k in present if k in ids or k.rsplit(":", 1)[0] in ids]
    if not chosen:
        return 0
    script = redis.register_script(_RETRY)
    return int(await script(keys=[dead, keys.sink_redo(centre, sink)], args=chosen))


async def replay(
    redis: Redis,
    centre: str,
    tenant: str,
    sinks: list[str],
    *,
    start: datetime,
    end: datetime,
    keys: RedisKeys = KEYS,
) -> tuple[int, float | None]:
    """Queue every record version of ``tenant`` appended in [start, end] for ``sinks`` again.

    Returns (versions queued, append time of the oldest entry the stream still keeps)."""
    stream = keys.records_stream(centre)
    first = await redis.xrange(stream, count=1)
    kept_from = _id_time(_text(first[0][0])) if first else None
    queued, low, high = 0, stream_id_at(start), stream_id_at(end, end=True)
    while True:
        chunk: Any = await redis.xrange(stream, min=low, max=high, count=SCAN_CHUNK)
        if not chunk:
            return queued, kept_from
        async with redis.pipeline(transaction=False) as pipe:
            for _sid, fields in chunk:
                if _text(fields.get(b"t", b"")) != tenant:
                    continue
                try:
                    envelope = Envelope.from_json(fields[b"e"])
                except (EnvelopeError, KeyError):
                    continue
                for sink in sinks:
                    pipe.xadd(keys.sink_redo(centre, sink), entry_fields(envelope))  # type: ignore[arg-type]
                queued += 1
            await pipe.execute()
        low = _after(_text(chunk[-1][0]))
