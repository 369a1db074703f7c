"""The per-centre stream of record versions, and appending to it exactly once.

A record version to deliver is an :class:`Envelope`: the record id (the call's Linkedid), its
version, tenant, centre, when the contact began and when this version was made, and the record
itself as a JSON object. Delivery does not look inside the record.

:func:`append` is one round trip (a Lua script): it compares the version with the highest
version of that record already appended (a marker key beside the stream) and, only if newer,
sets the marker and XADDs, atomically. Two controllers appending the same version make one
entry; an older version arriving after a newer one is refused as stale (a record version is a
whole record, so the newer one already holds everything). The marker and the stream share the
centre's hash tag, so the script runs in one slot of a Redis Cluster too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis

from routing.redis_keys import KEYS, RedisKeys
from routing.replicas import NO_WAIT, ReplicaWait, add_wait, check_waited

DEFAULT_RETENTION_S = 35 * 24 * 3600
"""How long the stream keeps delivered entries (and the append markers live): 35 days, so a
month's records can be replayed to a CRM restored from a backup. Undelivered entries are never
trimmed, however old."""


class EnvelopeError(ValueError):
    """A stream entry or envelope that cannot be read (reported, never delivered half-read)."""


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise EnvelopeError("times in an envelope must carry their zone")
    return moment


@dataclass(frozen=True, slots=True)
class Envelope:
    """One version of one contact record, as delivery sees it."""

    record_id: str
    version: int
    tenant: str
    centre: str
    occurred_at: datetime
    updated_at: datetime
    payload: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.record_id or len(self.record_id) > 128 or any(c.isspace() for c in self.record_id):
            raise EnvelopeError("a record id is 1-128 characters without spaces")
        if self.version < 1:
            raise EnvelopeError("versions start at 1")
        _aware(self.occurred_at)
        _aware(self.updated_at)

    @property
    def key(self) -> str:
        """``<record id>:<version>``: the idempotency key, CloudEvent id and dead-letter id."""
        return f"{self.record_id}:{self.version}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "record_id": self.record_id,
            "version": self.version,
            "tenant": self.tenant,
            "centre": self.centre,
            "occurred_at": self.occurred_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "payload": self.payload,
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Envelope:
        try:
            return cls(
                record_id=str(data["record_id"]),
                version=int(data["version"]),
                tenant=str(data["tenant"]),
                centre=str(data["centre"]),
                occurred_at=datetime.fromisoformat(str(data["occurred_at"])),
                updated_at=datetime.fromisoformat(str(data["updated_at"])),
                payload=dict(data.get("payload") or {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise EnvelopeError(f"not an envelope: {exc}") from None

    @classmethod
    def from_json(cls, text: str | bytes) -> Envelope:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise EnvelopeError(f"not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise EnvelopeError("not a JSON object")
        return cls.from_dict(data)


@dataclass(frozen=True, slots=True)
class Entry:
    """An entry read from a stream: its id and the envelope it carries."""

    stream_id: str
    envelope: Envelope

    @property
    def appended_at(self) -> float:
        """Epoch seconds of the append (the stream id's millisecond part)."""
        return int(self.stream_id.split("-", 1)[0]) / 1000


def entry_fields(envelope: Envelope) -> dict[str, str]:
    return {
        "t": envelope.tenant,
        "e": envelope.to_json(),
    }


def parse_entry(stream_id: bytes | str, fields: dict[bytes, bytes] | dict[str, str]) -> Entry:
    sid = stream_id.decode() if isinstance(stream_id, bytes) else stream_id
    raw = fields.get(b"e") if b"e" in fields else fields.get("e")  # type: ignore[call-overload]
    if raw is None:
        raise EnvelopeError(f"stream entry {sid} has no envelope")
    return Entry(sid, Envelope.from_json(raw))


def stream_id_at(moment: datetime, end: bool = False) -> str:
    """The first (or, with ``end``, last) stream id at ``moment``, for XRANGE by time."""
    ms = int(moment.astimezone(UTC).timestamp() * 1000)
    return f"{ms}-{'18446744073709551615' if end else '0'}"


_APPEND = """
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) <= last then
  -- already in: still a write (the marker's retention renewed), so that a WAIT after a retried
  -- append covers the replication offset of now, not an older one of this connection
  redis.call('EXPIRE', KEYS[1], ARGV[2])
  return false
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return redis.call('XADD', KEYS[2], '*', 't', ARGV[4], 'e', ARGV[5])
"""


class RecordStream:
    """Appends record versions to one centre's stream, each (record id, version) once."""

    def __init__(
        self,
        redis: Redis,
        centre: str,
        *,
        keys: RedisKeys = KEYS,
        retention_s: int = DEFAULT_RETENTION_S,
        wait: ReplicaWait = NO_WAIT,
    ) -> None:
        self.redis, self.centre, self.keys, self.retention_s = redis, centre, keys, retention_s
        self.wait = wait  # replicas each append waits for (routing/replicas.py); off by default
        self.stream = keys.records_stream(centre)
        self._script = redis.register_script(_APPEND)

    async def append(self, envelope: Envelope) -> str | None:
        """Append ``envelope``; its stream id, or None if that version (or a newer) is already in.

        One round trip. Raises the Redis error if Redis does not answer (or, with ``wait`` on, if the
        replicas do not confirm it: :class:`NotReplicated`): the caller (the record builder, off the
        call path) keeps the version and tries again."""
        if envelope.centre != self.centre:
            raise EnvelopeError(f"record of centre {envelope.centre!r} appended to {self.centre!r}")
        if self.wait.on:
            return (await self.append_many([envelope]))[0]
        result = await self._script(
            keys=[self.keys.record_appended(self.centre, envelope.record_id), self.stream],
            args=[
                envelope.version,
                self.retention_s,
                envelope.record_id,
                envelope.tenant,
                envelope.to_json(),
            ],
        )
        if result is None:
            return None
        return result.decode() if isinstance(result, bytes) else str(result)

    async def append_many(self, envelopes: list[Envelope]) -> list[str | None]:
        """Append several in one pipelined round trip (each still checked on its own).

        The pipeline sends the script itself (EVAL; Redis keeps it compiled) rather than its
        digest: redis-py's Redis Cluster pipeline refuses EVALSHA, and a pipelined EVALSHA costs
        redis-py a SCRIPT EXISTS round trip first anyway."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for envelope in envelopes:
                if envelope.centre != self.centre:
                    raise EnvelopeError(f"record of centre {envelope.centre!r} appended to {self.centre!r}")
                keys = [self.keys.record_appended(self.centre, envelope.record_id), self.stream]
                args = (envelope.version, self.retention_s, envelope.record_id, envelope.tenant)
                pipe.eval(_APPEND, len(keys), *keys, *args, envelope.to_json())
            node = add_wait(pipe, self.redis, self.wait, self.stream) if self.wait.on else None
            results = await pipe.execute()
        if self.wait.on:
            check_waited(self.wait, int(results.pop()), self.redis, self.stream, node)
        return [r.decode() if isinstance(r, bytes) else (None if r is None else str(r)) for r in results]
