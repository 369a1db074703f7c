"""Live state for decisions, from Redis: queue snapshots, partner centres, latches, toggles.

:class:`CachedLiveSource` (the one ``callrouter serve`` uses) keeps Redis off the call path: a
background task reads everything every ``refresh_s`` (default 0.25 s) in one round trip, and a
decision reads the copy in memory. Queue snapshots carry the writer's time, so a copy that
stops refreshing (Redis down) ages into "unknown" and decisions take the plan's safe
defaults; toggles carry their own expiry. Overflow latches are kept in memory at once and
written to Redis in the background, so every controller instance shares the hysteresis.

:class:`RedisLiveSource` reads per decision (one round trip); it is kept for tools and tests.

Toggles are obeyed only if their MAC verifies (``routing/toggle_mac.py``): one that is unsigned,
signed with another key, changed by hand or copied from another tenant or kind is ignored and
logged as a security event, ``toggle_rejected`` (tenant, kind, reason; at most once a minute per
tenant, kind and reason, with the count of those not logged). A source given no keyring obeys
no toggle at all and says so once, loudly, as it starts (``toggles.no_key``).

A toggle that was active in the last copy, had not expired, and is gone from Redis without an
audit entry switching it off (Redis restarted without its data, a key deleted by hand) is
logged as a consistency event, ``toggle.vanished``, with its tenant and kind.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from redis.asyncio import Redis

from routing.core.decide import CompiledPlan
from routing.core.live import LiveState, QueueSnapshot, Toggle, Toggles
from routing.core.plan import ExternalDest, Tenant
from routing.live.store import QueueStateStore, snapshot_from_json
from routing.redis_keys import KEYS, RedisKeys
from routing.toggle_mac import MAX_LIFETIME, ToggleKeyring, ToggleRejected, sign, verify

log = structlog.get_logger("callrouter.live")
TOGGLE_KINDS = ("emergency", "closure", "announcement")
LATCH_TTL_MS = 15 * 60 * 1000  # a latch nobody refreshes clears itself
EXPIRY_GRACE = timedelta(seconds=2)  # a toggle this close to its expiry may go by its TTL
AUDIT_LOOKBACK = 200  # audit entries searched for the one that switched a toggle off


def toggle_fields(toggle: Toggle, since: datetime | None = None) -> dict[str, Any]:
    """The stored fields of a toggle (``expires_at``, ``since`` ISO-8601 with their offsets)."""
    data: dict[str, Any] = {"reason": toggle.reason, "by": toggle.by}
    data |= {"expires_at": toggle.expires_at.isoformat(), "service": toggle.service}
    if since is not None:
        data["since"] = since.isoformat()
    return data


def toggle_json(toggle: Toggle) -> str:
    """A toggle's fields as JSON, unsigned: what a controller ignores (see :func:`signed_toggle_json`)."""
    return json.dumps(toggle_fields(toggle), separators=(",", ":"))


def signed_toggle_json(keyring: ToggleKeyring, key_name: str, toggle: Toggle, since: datetime) -> str:
    """The stored form of a toggle switched on at ``since``, signed for the Redis key ``key_name``."""
    return sign(keyring, key_name, toggle_fields(toggle, since))


def _toggle(data: Any) -> Toggle:
    expires_at = datetime.fromisoformat(data["expires_at"])
    if expires_at.tzinfo is None:
        raise ValueError("expires_at without an offset")
    service = data.get("service")
    return Toggle(reason=str(data["reason"]), by=str(data["by"]), expires_at=expires_at, service=service)


def toggle_from_json(raw: str | bytes) -> Toggle:
    """The stored form back, unverified (for showing a previous value); :class:`ValueError` if
    it is not one (written by something else)."""
    try:
        return _toggle(json.loads(raw))
    except (TypeError, KeyError, ValueError, AttributeError) as error:  # JSONDecodeError is a ValueError
        raise ValueError(f"not a stored toggle: {error}") from None


def verified_toggle(keyring: ToggleKeyring | None, key_name: str, raw: str | bytes) -> Toggle:
    """The toggle stored under ``key_name`` if its MAC verifies and its life is within bounds,
    else :class:`ToggleRejected` with the reason."""
    fields = verify(keyring, key_name, raw)
    try:
        toggle = _toggle(fields)
        since = datetime.fromisoformat(fields["since"])
        if since.tzinfo is None:
            raise ValueError("since without an offset")
    except (TypeError, KeyError, ValueError, AttributeError) as error:
        raise ToggleRejected("malformed", f"signed but not a toggle: {type(error).__name__}") from None
    if toggle.service is not None and not isinstance(toggle.service, str):
        raise ToggleRejected("malformed", "signed but its service is not text")
    if toggle.expires_at - since > MAX_LIFETIME + timedelta(minutes=1):
        raise ToggleRejected("malformed", "signed but its life is longer than any toggle may last")
    return toggle


class RejectionLog:
    """Logs ``toggle_rejected`` security events, at most once per ``interval_s`` for each
    tenant, kind and reason (a flood of bad writes cannot flood the logs); the next line
    carries the count of those not logged. Never logs the stored value."""

    def __init__(self, interval_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self.clock = clock
        self._last: dict[tuple[str, str, str], tuple[float, int]] = {}

    def report(self, tenant: str, kind: str, rejected: ToggleRejected) -> bool:
        """Log the event unless one like it was logged within the interval; True if logged."""
        key = (tenant, kind, rejected.reason)
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last[0] < self.interval_s:
            self._last[key] = (last[0], last[1] + 1)
            return False
        if len(self._last) > 10_000:  # tenants x kinds x reasons: never this many; bound it anyway
            self._last.clear()
        self._last[key] = (now, 0)
        log.warning(
            "toggle_rejected",
            security=True,
            tenant=tenant,
            kind=kind,
            reason=rejected.reason,
            detail=rejected.detail,
            suppressed=last[1] if last else 0,
            action="ignored: routing goes on as if the toggle were off",
        )
        return True


def _stored_toggles(
    tenant: str,
    key_names: list[str],
    values: list[Any],
    keyring: ToggleKeyring | None,
    rejections: RejectionLog,
) -> tuple[dict[str, Toggle], dict[str, str]]:
    """The toggles among ``values`` (one per kind) whose MAC verifies, and the reason each
    other one was rejected; a rejected one is ignored and logged (rate-limited): a raw write to
    Redis must neither change routing nor take live state down with it."""
    found: dict[str, Toggle] = {}
    rejected: dict[str, str] = {}
    for kind, key_name, value in zip(TOGGLE_KINDS, key_names, values, strict=True):
        if not value:
            continue
        try:
            found[kind] = verified_toggle(keyring, key_name, value)
        except ToggleRejected as error:
            rejected[kind] = error.reason
            rejections.report(tenant, kind, error)
    return found, rejected


def partner_centres(tenant: Tenant) -> list[str]:
    """The partner centres a tenant's overflow policies may send callers to."""
    found = {
        q.overflow.to.centre
        for q in tenant.queues.values()
        if q.overflow is not None and isinstance(q.overflow.to, ExternalDest) and q.overflow.to.centre
    }
    return sorted(found)


@dataclass(frozen=True, slots=True)
class _Reads:
    partners: list[str]
    latches: list[str]
    keys: list[str]


class RedisLiveSource:
    """:class:`ivr.controller.LiveSource` over Redis."""

    def __init__(
        self,
        redis: Redis,
        keys: RedisKeys = KEYS,
        max_age_s: float = 30.0,
        *,
        keyring: ToggleKeyring | None = None,
        rejections: RejectionLog | None = None,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.max_age_s = max_age_s
        self.keyring = keyring  # None: no toggle is obeyed
        self.rejections = rejections or RejectionLog()
        self.rejected: dict[str, dict[str, str]] = {}  # tenant -> kind -> why its toggle was ignored
        self.store = QueueStateStore(redis, writer="reader", keys=keys)

    def reads_for(self, tenant_id: str, tenant: Tenant) -> _Reads:
        partners = partner_centres(tenant)
        latches = sorted(tenant.queues)
        keys = [
            *(self.keys.centre_snapshot(c) for c in partners),
            *(self.keys.overflow_latch(tenant_id, q) for q in latches),
            *(self.keys.toggle(kind, tenant_id) for kind in TOGGLE_KINDS),
        ]
        return _Reads(partners, latches, keys)

    async def read(self, plan: CompiledPlan, tenant: str | None, now: datetime) -> tuple[LiveState, Toggles]:
        if tenant is None:
            return LiveState(max_age_s=self.max_age_s), Toggles()
        reads = self.reads_for(tenant, plan.plan.tenants[tenant])
        queues, values = await asyncio.gather(self.store.snapshots(now), self.redis.mget(reads.keys))
        return self.decode(tenant, reads, queues, values)

    def decode(
        self, tenant: str, reads: _Reads, queues: dict[str, QueueSnapshot], values: list[Any]
    ) -> tuple[LiveState, Toggles]:
        n_partners, n_latches = len(reads.partners), len(reads.latches)
        partner_values = values[:n_partners]
        latch_values = values[n_partners : n_partners + n_latches]
        toggle_values = values[n_partners + n_latches :]
        toggle_keys = reads.keys[n_partners + n_latches :]
        partners = {
            c: snapshot_from_json(v) for c, v in zip(reads.partners, partner_values, strict=True) if v
        }
        latched = {f"{tenant}/{q}" for q, v in zip(reads.latches, latch_values, strict=True) if v}
        found, rejected = _stored_toggles(tenant, toggle_keys, toggle_values, self.keyring, self.rejections)
        if rejected or tenant in self.rejected:
            self.rejected[tenant] = rejected
        toggles = Toggles(**{kind: {tenant: t} for kind, t in found.items()})
        live = LiveState(
            queues=queues, partners=partners, overflowing=frozenset(latched), max_age_s=self.max_age_s
        )
        return live, toggles

    async def remember(self, latches: tuple[tuple[str, bool], ...]) -> None:
        """Store the overflow latches (hysteresis memory) shared by every controller."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for key, on in latches:
                tenant, _, queue = key.partition("/")
                if on:
                    pipe.set(self.keys.overflow_latch(tenant, queue), "1", px=LATCH_TTL_MS)
                else:
                    pipe.delete(self.keys.overflow_latch(tenant, queue))
            await pipe.execute()


@dataclass(frozen=True, slots=True)
class Vanished:
    tenant: str
    kind: str
    toggle: Toggle


def vanished_toggles(
    before: dict[str, tuple[LiveState, Toggles]], after: dict[str, tuple[LiveState, Toggles]], now: datetime
) -> list[Vanished]:
    """Toggles active in ``before``, not about to expire at ``now``, and missing from ``after``
    (tenants in both copies only: a plan reload may drop a tenant)."""
    found = []
    for tenant in before.keys() & after.keys():
        old, new = before[tenant][1], after[tenant][1]
        for kind in TOGGLE_KINDS:
            toggle = getattr(old, kind).get(tenant)
            if (
                toggle is not None
                and toggle.expires_at > now + EXPIRY_GRACE
                and tenant not in getattr(new, kind)
            ):
                found.append(Vanished(tenant, kind, toggle))
    return found


def switched_off(entries: list[tuple[Any, Any]], gone: Vanished) -> bool:
    """Whether one of the audit ``entries`` (raw stream rows: id, fields) switched ``gone`` off."""
    for _, fields in entries:
        try:
            entry = json.loads(fields[b"entry"])
            previous = fields.get(b"previous") or b""
            if (
                entry.get("what") == f"toggle.{gone.kind}.off"
                and entry.get("tenant") == gone.tenant
                and previous
                and toggle_from_json(previous) == gone.toggle
            ):
                return True
        except (KeyError, ValueError, TypeError, AttributeError):  # an entry of another shape: not this one
            continue
    return False


def _shifted(live: LiveState, shift: timedelta) -> LiveState:
    """``live`` with every snapshot's time moved by ``shift`` (nothing to do under a second)."""
    if abs(shift) < timedelta(seconds=1):
        return live
    move = {
        name: dataclasses.replace(s, observed_at=s.observed_at + shift) for name, s in live.queues.items()
    }
    partners = {
        c: dataclasses.replace(s, observed_at=s.observed_at + shift) for c, s in live.partners.items()
    }
    return dataclasses.replace(live, queues=move, partners=partners)


class CachedLiveSource:
    """:class:`ivr.controller.LiveSource` served from memory, refreshed from Redis."""

    def __init__(
        self,
        redis: Redis,
        plan: Callable[[], CompiledPlan],
        *,
        refresh_s: float = 0.25,
        keys: RedisKeys = KEYS,
        max_age_s: float = 30.0,
        timeout_s: float = 1.0,
        keyring: ToggleKeyring | None = None,
    ) -> None:
        self.source = RedisLiveSource(redis, keys=keys, max_age_s=max_age_s, keyring=keyring)
        self.plan = plan
        self.refresh_s = refresh_s
        self.timeout_s = timeout_s
        self._state: dict[str, tuple[LiveState, Toggles]] = {}
        self._latches: dict[str, bool] = {}
        self._pending: asyncio.Queue[tuple[tuple[str, bool], ...]] = asyncio.Queue(maxsize=10_000)
        self.refreshed_at: datetime | None = None
        self.refreshed_monotonic: float | None = None  # for the live-state age metric (any clock)
        self.failures = 0
        self.real_clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    async def read(self, plan: CompiledPlan, tenant: str | None, now: datetime) -> tuple[LiveState, Toggles]:
        return self.read_now(plan, tenant, now)

    def read_now(self, plan: CompiledPlan, tenant: str | None, now: datetime) -> tuple[LiveState, Toggles]:
        """:meth:`read` without a coroutine: the copy in memory never waits, so the controller
        calls this directly (no timeout timer on the call path)."""
        live, toggles = self._state.get(tenant or "", (LiveState(max_age_s=self.source.max_age_s), Toggles()))
        if not self._latches:
            return live, toggles
        latched = {key for key in live.overflowing if self._latches.get(key, True)}
        latched |= {key for key, on in self._latches.items() if on}
        return dataclasses.replace(live, overflowing=frozenset(latched)), toggles

    async def remember(self, latches: tuple[tuple[str, bool], ...]) -> None:
        changed = tuple((key, on) for key, on in latches if self._latches.get(key) != on)
        self._latches.update(latches)
        if changed:
            with contextlib.suppress(asyncio.QueueFull):
                self._pending.put_nowait(changed)

    async def refresh(self, now: datetime) -> None:
        """Read every tenant's live state in one round trip and replace the copy.

        Queue figures are derived on the real clock (Asterisk's timestamps are real); when the
        controller runs on a rehearsal clock, snapshot times are moved onto that clock so that
        ages and staleness stay true."""
        plan = self.plan()
        reads = {tid: self.source.reads_for(tid, tenant) for tid, tenant in plan.plan.tenants.items()}
        flat = [key for r in reads.values() for key in r.keys]
        real = self.real_clock()
        queues, values = await asyncio.gather(self.source.store.snapshots(real), self.source.redis.mget(flat))
        shift = now - real
        state, offset = {}, 0
        for tid, r in reads.items():
            live, toggles = self.source.decode(tid, r, queues, values[offset : offset + len(r.keys)])
            state[tid] = (_shifted(live, shift), toggles)
            offset += len(r.keys)
        previous, self._state = self._state, state
        gone = vanished_toggles(previous, state, real)
        if gone:
            await self._report(gone)
        stored = {key for live, _ in state.values() for key in live.overflowing}
        self._latches = {key: on for key, on in self._latches.items() if (key in stored) != on}
        self.refreshed_at = now
        self.refreshed_monotonic = time.monotonic()

    def active_toggles(self, now: datetime) -> list[tuple[str, str]]:
        """(tenant, kind) of each toggle in force in the copy at ``now`` (for the metrics)."""
        found = []
        for tenant, (_, toggles) in self._state.items():
            for kind in TOGGLE_KINDS:
                toggle = getattr(toggles, kind).get(tenant)
                if toggle is not None and toggle.expires_at > now:
                    found.append((tenant, kind))
        return found

    async def _report(self, gone: list[Vanished]) -> None:
        """Log each toggle that vanished without an audit entry switching it off."""
        entries = await self.source.redis.xrevrange(self.source.keys.audit_stream(), count=AUDIT_LOOKBACK)
        for item in gone:
            if not switched_off(entries or [], item):
                log.warning(
                    "toggle.vanished",
                    tenant=item.tenant,
                    kind=item.kind,
                    service=item.toggle.service,
                    by=item.toggle.by,
                    expires_at=item.toggle.expires_at.isoformat(),
                    why="active, not expired, and no audit entry switched it off",
                )

    async def run(self, clock: Callable[[], datetime]) -> None:
        """Refresh forever, and write latches as they change; never raises for Redis errors."""
        if self.source.keyring is None:
            log.warning(
                "toggles.no_key",
                security=True,
                why="no toggle key configured (toggle_key_file): every supervisor toggle is ignored",
            )
        writer = asyncio.create_task(self._write_latches())
        try:
            while True:
                try:
                    async with asyncio.timeout(self.timeout_s):
                        await self.refresh(clock())
                except Exception as exc:  # Redis down or slow: keep the copy, let it age
                    self.failures += 1
                    if self.failures in (1, 10) or self.failures % 240 == 0:
                        log.warning("live.refresh_failed", error=type(exc).__name__, failures=self.failures)
                await asyncio.sleep(self.refresh_s)
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer

    async def _write_latches(self) -> None:
        while True:
            latches = await self._pending.get()
            try:
                await self.source.remember(latches)
            except Exception as exc:  # the next change writes again; a latch also expires
                log.warning("live.latch_not_saved", error=type(exc).__name__)
