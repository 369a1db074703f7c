"""Where record versions go: a CRM's webhook, or daily JSON Lines files.

A sink makes one attempt at a time and says how it went (:class:`Outcome`); retrying,
backoff, the circuit breaker and ordering are the delivery worker's (:mod:`records.delivery`).

Webhook: one HTTPS POST per record version, a CloudEvents 1.0 event in structured mode
(``Content-Type: application/cloudevents+json``) whose ``id`` is ``<record id>:<version>``,
``subject`` the record id, ``time`` when the version was made and ``data`` the record. Headers:
``Idempotency-Key: <record id>:<version>`` and ``X-Callrouter-Signature-256: sha256=<hex>``, the
HMAC-SHA256 of the raw body with the sink's secret (the CRM recomputes it over the bytes it
received and compares in constant time). The secret comes from the environment or a file named
in the plan and is never logged or shown.

File: ``<directory>/<tenant>/<tenant>-<YYYY-MM-DD>.jsonl``, the day of ``updated_at`` in the
tenant's time zone (so a version always lands in the same file, whenever it is re-delivered),
one envelope per line; the worker calls :meth:`FileSink.flush` (fsync) before acknowledging.
A version already in the file is not written twice: the file itself is the index (read once
when the file is opened; a torn last line left by a crash is cut off).

Archive: the council's own archive (:mod:`records.archive`), an internal sink every tenant has
whatever its CRM sinks (``<tenant>/_owner-archive``; ``_no-tenant/_owner-archive`` for calls to a
number no council owns, whose envelopes' tenant is empty): the worker's batch is appended with
:meth:`Archive.append_many` in :meth:`ArchiveSink.flush` (fsync'd), before it is acknowledged.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import hmac
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal, Protocol
from zoneinfo import ZoneInfo

import aiohttp
from pydantic import ValidationError

from records.archive import Archive, tenant_folder
from records.model import ContactRecord
from records.stream import Envelope
from routing.core.plan import FileSink as FileSinkConfig
from routing.core.plan import Plan
from routing.core.plan import WebhookSink as WebhookSinkConfig

EVENT_TYPE = "uk.gov.council.callrouter.contact.v1"
SIGNATURE_HEADER = "X-Callrouter-Signature-256"
IDEMPOTENCY_HEADER = "Idempotency-Key"
CONTENT_TYPE = "application/cloudevents+json"
BATCH_CONTENT_TYPE = "application/cloudevents-batch+json"
BATCH_LINGER_S = 0.002
"""A partial batch waits this long for company before it goes (batched mode only)."""
ANSWER_LIMIT = 512
"""At most this many characters of a CRM's answer are kept with a dead letter."""
RETRY_AFTER_CAP_S = 3600.0


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one attempt went: ``delivered``, ``refused`` (dead-letter now) or ``retry``."""

    kind: Literal["delivered", "refused", "retry"]
    status: int = 0
    answer: str = ""
    retry_after_s: float | None = None


DELIVERED = Outcome("delivered")


class Sink(Protocol):
    name: str
    """``<tenant>/<sink name>``"""
    concurrency: int
    """How many sends the worker may have waiting on this sink at once."""

    async def send(self, envelope: Envelope) -> Outcome: ...

    async def flush(self) -> None: ...

    async def close(self) -> None: ...


class SecretError(Exception):
    """A sink's secret could not be read (the message names where, never the value)."""


def read_secret(config: WebhookSinkConfig, env: dict[str, str] | None = None) -> bytes:
    environ = os.environ if env is None else env
    if config.secret_env is not None:
        value = environ.get(config.secret_env, "")
        if not value:
            raise SecretError(f"the environment variable {config.secret_env} is not set or empty")
        return value.encode()
    assert config.secret_file is not None
    try:
        value = Path(config.secret_file).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise SecretError(f"secret file {config.secret_file!r}: {exc.strerror}") from None
    if not value:
        raise SecretError(f"secret file {config.secret_file!r} is empty")
    return value.encode()


def sign(secret: bytes, body: bytes) -> str:
    """The signature header's value for ``body``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify(secret: bytes, body: bytes, header: str) -> bool:
    """What a CRM does with the header: recompute over the raw body, compare in constant time."""
    return hmac.compare_digest(sign(secret, body), header)


def cloud_event(envelope: Envelope) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": envelope.key,
        "source": f"/callrouter/{envelope.centre}",
        "type": EVENT_TYPE,
        "subject": envelope.record_id,
        "time": envelope.updated_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "datacontenttype": "application/json",
        "recordversion": envelope.version,
        "tenant": envelope.tenant,
        "data": envelope.payload,
    }


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """``Retry-After`` as seconds from ``now`` (delta-seconds or an HTTP date), capped; None if absent."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return min(float(text), RETRY_AFTER_CAP_S)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return min(max((when - now).total_seconds(), 0.0), RETRY_AFTER_CAP_S)


def outcome_for(status: int, answer: str, retry_after: str | None, now: datetime) -> Outcome:
    """The decision for an HTTP answer: 2xx delivered; 408, 429 and 5xx retried; any other refused."""
    bounded = answer[:ANSWER_LIMIT]
    if 200 <= status < 300:
        return DELIVERED
    if status in (408, 429) or status >= 500:
        return Outcome("retry", status, bounded, parse_retry_after(retry_after, now))
    return Outcome("refused", status, bounded)


class WebhookSink:
    """POSTs signed CloudEvents to one CRM URL (aiohttp client, keep-alive connections).

    With ``batch_size`` > 1 (CloudEvents batched mode), concurrent sends are gathered into one
    request of up to ``batch_size`` events (the worker never has two versions of one contact in
    flight, so a batch never reorders a contact). The answer applies to every event in it; a
    refused batch is sent again one event at a time, so only the event the CRM refuses is
    dead-lettered."""

    def __init__(self, name: str, config: WebhookSinkConfig, secret: bytes) -> None:
        self.name, self.url, self._secret = name, config.url, secret
        self.max_in_flight, self.batch_size = config.max_in_flight, config.batch_size
        self.concurrency = config.max_in_flight * config.batch_size
        self._timeout = aiohttp.ClientTimeout(total=config.timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._waiting: list[tuple[Envelope, asyncio.Future[Outcome]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._batches: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:  # the secret never shows, even in a traceback's locals
        return f"WebhookSink({self.name!r}, {self.url!r})"

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self.max_in_flight, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=self._timeout, headers={"User-Agent": "callrouter"}
            )
        return self._session

    def request(self, envelope: Envelope) -> tuple[bytes, dict[str, str]]:
        body = json.dumps(cloud_event(envelope), separators=(",", ":"), ensure_ascii=False).encode()
        headers = {
            "Content-Type": CONTENT_TYPE,
            IDEMPOTENCY_HEADER: envelope.key,
            SIGNATURE_HEADER: sign(self._secret, body),
        }
        return body, headers

    def batch_request(self, envelopes: list[Envelope]) -> tuple[bytes, dict[str, str]]:
        events = [cloud_event(e) for e in envelopes]
        body = json.dumps(events, separators=(",", ":"), ensure_ascii=False).encode()
        return body, {"Content-Type": BATCH_CONTENT_TYPE, SIGNATURE_HEADER: sign(self._secret, body)}

    async def _post(self, body: bytes, headers: dict[str, str]) -> Outcome:
        try:
            async with self._client().post(
                self.url, data=body, headers=headers, allow_redirects=False
            ) as response:
                raw = await response.content.read(ANSWER_LIMIT * 4)
                answer = raw.decode("utf-8", "replace")
                return outcome_for(
                    response.status, answer, response.headers.get("Retry-After"), datetime.now(UTC)
                )
        except TimeoutError:
            return Outcome("retry", 0, "timed out")
        except aiohttp.ClientError as exc:
            return Outcome("retry", 0, type(exc).__name__)

    async def send(self, envelope: Envelope) -> Outcome:
        if self.batch_size == 1:
            return await self._post(*self.request(envelope))
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._waiting.append((envelope, future))
        if len(self._waiting) >= self.batch_size:
            self._go()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(BATCH_LINGER_S, self._go)
        return await future

    def _go(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        items, self._waiting = self._waiting, []
        if items:
            task = asyncio.create_task(self._post_batch(items))
            self._batches.add(task)
            task.add_done_callback(self._batches.discard)

    async def _post_batch(self, items: list[tuple[Envelope, asyncio.Future[Outcome]]]) -> None:
        live = [(e, f) for e, f in items if not f.done()]  # a cancelled send is not sent
        if not live:
            return
        outcome = await self._post(*self.batch_request([e for e, _ in live]))
        if outcome.kind == "refused" and len(live) > 1:  # which one? ask one at a time
            answers = await asyncio.gather(*(self._post(*self.request(e)) for e, _ in live))
        else:
            answers = [outcome] * len(live)
        for (_, future), answer in zip(live, answers, strict=True):
            if not future.done():
                future.set_result(answer)

    async def flush(self) -> None:
        return None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def day_file(directory: Path, tenant: str, envelope: Envelope, zone: ZoneInfo) -> Path:
    day = envelope.updated_at.astimezone(zone).date()
    return directory / tenant / f"{tenant}-{day.isoformat()}.jsonl"


def _read_keys(path: Path) -> set[str]:
    """The ``<record id>:<version>`` of every whole line of ``path``; a torn last line is cut off."""
    keys: set[str] = set()
    if not path.exists():
        return keys
    data = path.read_bytes()
    whole = data[: data.rfind(b"\n") + 1]
    if len(whole) != len(data):
        with path.open("r+b") as handle:
            handle.truncate(len(whole))
            os.fsync(handle.fileno())
    for line in whole.splitlines():
        try:
            item = json.loads(line)
            keys.add(f"{item['record_id']}:{item['version']}")
        except (ValueError, KeyError, TypeError):
            continue  # a line someone else wrote: kept, never counted as ours
    return keys


class FileSink:
    """Daily JSON Lines files per tenant, fsync'd before the worker acknowledges."""

    OPEN_FILES = 4

    def __init__(self, name: str, config: FileSinkConfig, tenant: str, zone: ZoneInfo) -> None:
        self.name, self.tenant, self.zone = name, tenant, zone
        self.directory = Path(config.directory)
        self.concurrency = 64  # writes are synchronous: one contact's versions stay in order
        self._files: dict[Path, tuple[IO[bytes], set[str]]] = {}
        self._dirty: set[Path] = set()

    def __repr__(self) -> str:
        return f"FileSink({self.name!r}, {str(self.directory)!r})"

    def _open(self, path: Path) -> tuple[IO[bytes], set[str]]:
        found = self._files.get(path)
        if found is not None:
            return found
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        keys = _read_keys(path)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        handle = os.fdopen(fd, "ab")
        while len(self._files) >= self.OPEN_FILES:  # the oldest day's file is done with
            oldest = min(self._files)
            self._close_one(oldest)
        self._files[path] = (handle, keys)
        return handle, keys

    def _close_one(self, path: Path) -> None:
        handle, _ = self._files.pop(path)
        handle.flush()
        os.fsync(handle.fileno())
        handle.close()
        self._dirty.discard(path)

    async def send(self, envelope: Envelope) -> Outcome:
        path = day_file(self.directory, self.tenant, envelope, self.zone)
        try:
            handle, keys = self._open(path)
            if envelope.key in keys:
                return DELIVERED
            handle.write(envelope.to_json().encode() + b"\n")
        except OSError as exc:
            return Outcome("retry", 0, f"{path.name}: {exc.strerror}")
        keys.add(envelope.key)
        self._dirty.add(path)
        return DELIVERED

    def _sync(self) -> None:
        for path in sorted(self._dirty):
            handle, _ = self._files[path]
            handle.flush()
            os.fsync(handle.fileno())
        self._dirty.clear()

    async def flush(self) -> None:
        """Make every line written so far durable (fsync), before the worker acknowledges."""
        if self._dirty:
            await asyncio.to_thread(self._sync)

    async def close(self) -> None:
        for path in list(self._files):
            self._close_one(path)


ARCHIVE_SINK = "_owner-archive"
"""The archive sink's name under each tenant: a plan name cannot start with ``_``."""


class ArchiveSink:
    """The owner's archive for one tenant: each batch appended at once, fsync'd, before the ack.

    ``send`` only checks the record and holds it; :meth:`flush` (which the worker awaits before
    acknowledging the batch) appends everything held with one ``append_many``. If that fails the
    batch is not acknowledged and comes back; the archive stores a version once however often."""

    def __init__(self, tenant: str | None, archive: Archive) -> None:
        self.tenant, self.archive = tenant, archive
        self.name = f"{tenant_folder(tenant)}/{ARCHIVE_SINK}"
        self.concurrency = 1024  # send does no I/O
        self._held: list[ContactRecord] = []

    def __repr__(self) -> str:
        return f"ArchiveSink({self.name!r}, {str(self.archive.root)!r})"

    async def send(self, envelope: Envelope) -> Outcome:
        try:
            # as JSON, like the archive reads it back (times are ISO text in a payload)
            record = ContactRecord.model_validate_json(json.dumps(envelope.payload))
        except ValidationError as exc:
            return Outcome("refused", 0, f"not a contact record: {exc.error_count()} problem(s)")
        if (record.id, record.version) != (envelope.record_id, envelope.version):
            return Outcome("refused", 0, "the record's id and version differ from its envelope's")
        if record.tenant != self.tenant:  # a tenant's folder never holds another's records
            return Outcome("refused", 0, "the record's tenant differs from its envelope's")
        self._held.append(record)
        return DELIVERED

    async def flush(self) -> None:
        """Append what the batch held (one fsync per day file); raises OSError if it cannot."""
        held, self._held = self._held, []
        if held:
            await asyncio.to_thread(self.archive.append_many, held)

    async def close(self) -> None:
        self._held.clear()


def archive_sinks(plan: Plan, archive: Archive) -> dict[str, Sink]:
    """The owner's archive sink of every tenant of the plan, by ``<tenant>/_owner-archive``, and
    ``_no-tenant/_owner-archive`` for calls to a number no council owns."""
    made = [ArchiveSink(tid, archive) for tid in plan.tenants] + [ArchiveSink(None, archive)]
    return {sink.name: sink for sink in made}


def sinks_from_plan(plan: Plan, env: dict[str, str] | None = None) -> dict[str, Sink]:
    """Every tenant's CRM sinks, by ``<tenant>/<name>``; a secret that cannot be read raises."""
    made: dict[str, Sink] = {}
    for tid, tenant in plan.tenants.items():
        for name, config in (tenant.crm.sinks if tenant.crm else {}).items():
            sink_id = f"{tid}/{name}"
            if isinstance(config, WebhookSinkConfig):
                try:
                    secret = read_secret(config, env)
                except SecretError as exc:
                    raise SecretError(f"sink {sink_id}: {exc}") from None
                made[sink_id] = WebhookSink(sink_id, config, secret)
            else:
                made[sink_id] = FileSink(sink_id, config, tid, tenant.zone())
    return made
