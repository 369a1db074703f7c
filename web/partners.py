"""The capacity snapshot exchange with partner centres (``docs/partners.md``).

Receiving: ``POST /api/v1/partners/{centre}/snapshot`` from partner ``centre``, authenticated by
the partnership's HMAC (``routing/partner_link.py``), not by a user token or a cookie (so no
CSRF token either). A good request is stored under ``centre_snapshot(centre)`` in this centre's
Redis, where the controllers read a partner's capacity, with a time to live of the stale age
less the snapshot's age; the sequence check and the write are one script, so a replayed or
reordered request changes nothing. Every refusal is logged with the partner's id, the reason
and the client address, never a header value.

Sending: one ``callrouter web`` instance per centre (the holder of
``partner_sender_lease``, renewed each interval) reads this centre's own published snapshot
(``centre_snapshot(own)``, written by serve's AMI lease holder) every ``interval_s`` and POSTs
it to every partner at once, each bounded by ``timeout_s``: a partner that is down or hangs
delays nothing else, and the call path (serve) is another process altogether. No snapshot of
its own (AMI down, serve stopped): nothing is sent, so the partners' copy ages out and they
stop overflowing here.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import structlog
from aiohttp import web
from redis.asyncio import Redis
from redis.exceptions import RedisError

from routing.live.store import snapshot_json
from routing.partner_link import (
    MAX_BODY_BYTES,
    MAX_SEQUENCE,
    SEQUENCE_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    PartnerConfig,
    Refused,
    check_request,
    next_sequence,
    parse_snapshot,
    request_headers,
)
from routing.redis_keys import KEYS, RedisKeys
from web import openapi
from web.context import CLOCK, CONFIG, REDIS, client_address, keys_of
from web.problems import Problem

log = structlog.get_logger("callrouter.web.partners")

PATH = "/api/v1/partners/{centre}/snapshot"
SEQUENCE_TTL_MS = 86_400_000  # far longer than the timestamp window, after which a replay fails anyway
_CENTRE = re.compile(r"[A-Za-z0-9_-]{1,64}")

# KEYS: snapshot, sequence. ARGV: sequence, snapshot JSON, snapshot PX (<= 0: not kept), sequence PX.
# 1: stored; 0: the sequence is not above the last one accepted (a replay or a late request).
STORE_SCRIPT = """
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
if tonumber(ARGV[1]) <= last then return 0 end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[4])
if tonumber(ARGV[3]) > 0 then redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end
return 1
"""

# KEYS: lease. ARGV: holder, PX. 1: this holder has the lease (taken or renewed); 0: another has.
LEASE_SCRIPT = """
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""


def _refuse(request: web.Request, centre: str, status: int, reason: str) -> Problem:
    log.warning(
        "partners.refused", centre=centre[:64], status=status, reason=reason, remote=client_address(request)
    )
    detail = reason if status != 401 else f"not accepted: {reason}"
    return Problem(status, detail, headers={"WWW-Authenticate": "HMAC-SHA256"} if status == 401 else None)


async def _body(request: web.Request, centre: str) -> bytes:
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise _refuse(request, centre, 413, f"the body is larger than {MAX_BODY_BYTES} bytes")
    body = b""
    while len(body) <= MAX_BODY_BYTES:  # a chunked body announces no length: read one byte past the limit
        chunk = await request.content.read(MAX_BODY_BYTES + 1 - len(body))
        if not chunk:
            return body
        body += chunk
    raise _refuse(request, centre, 413, f"the body is larger than {MAX_BODY_BYTES} bytes")


async def receive_snapshot(request: web.Request) -> web.Response:
    centre = request.match_info["centre"]
    config: PartnerConfig | None = request.app[CONFIG].partners
    body = await _body(request, centre)
    now = request.app[CLOCK]()
    secret = None
    if config is not None and _CENTRE.fullmatch(centre) and centre != config.centre:
        secret = config.secrets.get(centre)
    receiver = config.centre if config is not None else ""
    names = (TIMESTAMP_HEADER, SEQUENCE_HEADER, SIGNATURE_HEADER)
    headers = {name: request.headers.get(name, "") for name in names}
    try:
        sequence = check_request(
            secret, headers, body, sender=centre, receiver=receiver, now_s=now.timestamp()
        )
        snapshot = parse_snapshot(body, now)
    except Refused as exc:
        raise _refuse(request, centre, exc.status, exc.reason) from None
    assert config is not None  # a request without a partnership has no secret, so it was refused
    age_s = (now - snapshot.observed_at).total_seconds()
    keep_ms = int((config.stale_age_s - max(0.0, age_s)) * 1000)
    schema = keys_of(request)
    keys = [schema.centre_snapshot(centre), schema.partner_sequence(centre)]
    args = [str(sequence), snapshot_json(snapshot), str(keep_ms), str(SEQUENCE_TTL_MS)]
    stored = await request.app[REDIS].eval(STORE_SCRIPT, len(keys), *keys, *args)
    if int(stored) != 1:
        raise _refuse(request, centre, 401, "sequence not above the last one accepted (replayed)")
    return web.json_response({"stored": keep_ms > 0, "age_s": round(age_s, 3)})


@dataclass(slots=True)
class SenderStats:
    """What the sender has done, per partner (read by tests and the log)."""

    sent: dict[str, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, list[float]] = field(default_factory=dict)  # round trip of each accepted send


class PartnerSender:
    """Sends this centre's published snapshot to every partner, while holding the sender lease."""

    def __init__(
        self,
        config: PartnerConfig,
        redis: Redis,
        keys: RedisKeys = KEYS,
        *,
        holder: str | None = None,
        clock: Any = time.time,
    ) -> None:
        self.config = config
        self.redis = redis
        self.keys = keys
        self.holder = holder or f"web-{secrets.token_hex(6)}"
        self.clock = clock
        self.stats = SenderStats()
        self.tls = self._tls()  # here, so a CA file that cannot be used stops the service at start
        self._sequence = 0
        self._failing: set[str] = set()

    async def run(self) -> None:
        connector = aiohttp.TCPConnector(ssl=self.tls, limit_per_host=2)
        timeout = aiohttp.ClientTimeout(total=self.config.timeout_s)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            while True:
                started = time.monotonic()
                try:
                    await self.tick(session)
                except Exception:  # the sender must outlive any one bad round
                    log.error("partners.send_round_failed", exc_info=True)
                await asyncio.sleep(max(0.0, self.config.interval_s - (time.monotonic() - started)))

    def _tls(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.config.ca_file)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context

    async def tick(self, session: aiohttp.ClientSession) -> None:
        """One round: renew the lease; if held, send the own snapshot (if any) to every partner."""
        lease_ms = int(self.config.interval_s * 3000)
        try:
            async with asyncio.timeout(self.config.timeout_s):
                key = self.keys.partner_sender_lease()
                if int(await self.redis.eval(LEASE_SCRIPT, 1, key, self.holder, str(lease_ms))) != 1:
                    return
                raw = await self.redis.get(self.keys.centre_snapshot(self.config.centre))
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("partners.redis_error", error=type(exc).__name__)
            return
        if raw is None:
            return
        body = raw if isinstance(raw, bytes) else str(raw).encode("utf-8")
        await asyncio.gather(*(self._send(session, partner, body) for partner in sorted(self.config.urls)))

    async def _send(self, session: aiohttp.ClientSession, partner: str, body: bytes) -> None:
        now_s = self.clock()
        self._sequence = next_sequence(self._sequence, now_s) % MAX_SEQUENCE
        headers = request_headers(
            self.config.secrets[partner],
            body,
            sender=self.config.centre,
            receiver=partner,
            now_s=now_s,
            sequence=self._sequence,
        )
        url = self.config.urls[partner] + PATH.format(centre=self.config.centre)
        started = time.monotonic()
        try:
            async with session.post(url, data=body, headers=headers) as response:
                status = response.status
                await response.read()
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            self._failed(partner, type(exc).__name__)
            return
        if status != 200:
            self._failed(partner, f"HTTP {status}")
            return
        self.stats.sent[partner] = self.stats.sent.get(partner, 0) + 1
        self.stats.seconds.setdefault(partner, []).append(time.monotonic() - started)
        if partner in self._failing:
            self._failing.discard(partner)
            log.info("partners.send_resumed", partner=partner)

    def _failed(self, partner: str, why: str) -> None:
        self.stats.failed[partner] = self.stats.failed.get(partner, 0) + 1
        if partner not in self._failing:  # once per outage, not once a second
            self._failing.add(partner)
            log.warning("partners.send_failed", partner=partner, error=why)


SENDER = web.AppKey("partner_sender", PartnerSender)


async def _sender_context(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG].partners
    if config is None or not config.urls:
        yield
        return
    sender = app.get(SENDER) or PartnerSender(config, app[REDIS], app[CONFIG].keys)
    app[SENDER] = sender
    task = asyncio.create_task(sender.run(), name="partner-sender")
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def setup(app: web.Application) -> None:
    app.router.add_post(PATH, receive_snapshot)
    app.cleanup_ctx.append(_sender_context)
    openapi.contribute(app, _OPENAPI)


_SNAPSHOT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["queue", "waiting", "longest_wait_s", "logged_in", "available", "observed_at"],
    "properties": {
        "queue": {"type": "string", "minLength": 1, "maxLength": 64},
        "waiting": {"type": "integer", "minimum": 0, "maximum": 100000},
        "longest_wait_s": {"type": "number", "minimum": 0, "maximum": 86400},
        "logged_in": {"type": "integer", "minimum": 0, "maximum": 100000},
        "available": {"type": "integer", "minimum": 0, "maximum": 100000, "description": "at most logged_in"},
        "observed_at": {"type": "string", "format": "date-time", "description": "with its UTC offset"},
    },
}


_SNAPSHOT_REF = {"$ref": "#/components/schemas/PartnerSnapshot"}


def _header(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "header", "required": True, "description": description, "schema": schema}


_OPENAPI: dict[str, Any] = {
    "paths": {
        PATH: {
            "post": {
                "summary": "A partner centre's capacity snapshot",
                "description": "Sent every second by the partner centre named in the path, signed with the "
                "partnership's shared secret (docs/partners.md); stored as that partner's snapshot. "
                "No user token or cookie: the signature is the authentication.",
                "operationId": "receivePartnerSnapshot",
                "security": [],
                "parameters": [
                    {
                        "name": "centre",
                        "in": "path",
                        "required": True,
                        "description": "the sending centre's id",
                        "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
                    },
                    _header(
                        TIMESTAMP_HEADER,
                        "the sender's Unix time in seconds (within 30 s)",
                        {"type": "string"},
                    ),
                    _header(
                        SEQUENCE_HEADER,
                        "above every sequence accepted from this sender before",
                        {"type": "string", "pattern": "^[0-9]{1,16}$"},
                    ),
                    _header(
                        SIGNATURE_HEADER,
                        "sha256= and the hex HMAC-SHA256 of the request (docs/partners.md)",
                        {"type": "string"},
                    ),
                ],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _SNAPSHOT_REF}},
                },
                "responses": {
                    "200": {
                        "description": "stored (or, already older than the stale age, accepted but not kept)",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["stored", "age_s"],
                                    "properties": {
                                        "stored": {"type": "boolean"},
                                        "age_s": {"type": "number"},
                                    },
                                }
                            }
                        },
                    },
                    **openapi.errors(400, 401, 413, 503),
                },
            }
        }
    },
    "components": {"schemas": {"PartnerSnapshot": _SNAPSHOT_SCHEMA}},
}
