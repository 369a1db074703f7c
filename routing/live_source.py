"""Live state for decisions, read from Redis: queue snapshots, partner centres, latches, toggles.

One decision costs one round trip in time: the queue snapshots (a server-side script) and one
``MGET`` (partner snapshots, overflow latches, the tenant's toggles) go out together. The
controller bounds the read with its ``live_timeout`` and falls back to unknown state.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from redis.asyncio import Redis

from routing.core.decide import CompiledPlan
from routing.core.live import LiveState, QueueSnapshot, Toggle, Toggles
from routing.core.plan import ExternalDest, Tenant
from routing.live.store import QueueStateStore, snapshot_from_json
from routing.redis_keys import KEYS, RedisKeys

TOGGLE_KINDS = ("emergency", "closure", "announcement")
LATCH_TTL_MS = 15 * 60 * 1000  # a latch nobody refreshes clears itself


def toggle_json(toggle: Toggle) -> str:
    """The stored form of a toggle (``expires_at`` ISO-8601 with its offset)."""
    data = {"reason": toggle.reason, "by": toggle.by, "expires_at": toggle.expires_at.isoformat()}
    return json.dumps({**data, "service": toggle.service}, separators=(",", ":"))


def toggle_from_json(raw: str | bytes) -> Toggle:
    data = json.loads(raw)
    return Toggle(
        reason=str(data["reason"]),
        by=str(data["by"]),
        expires_at=datetime.fromisoformat(data["expires_at"]),
        service=data.get("service"),
    )


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
    """:class:`routing.controller.LiveSource` over Redis."""

    def __init__(self, redis: Redis, keys: RedisKeys = KEYS, max_age_s: float = 30.0) -> None:
        self.redis = redis
        self.keys = keys
        self.max_age_s = max_age_s
        self.store = QueueStateStore(redis, writer="reader", keys=keys)

    def _reads(self, tenant_id: str, tenant: Tenant) -> _Reads:
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
        reads = self._reads(tenant, plan.plan.tenants[tenant])
        queues, values = await asyncio.gather(self.store.snapshots(now), self.redis.mget(reads.keys))
        return self._decode(tenant, reads, queues, values)

    def _decode(
        self, tenant: str, reads: _Reads, queues: dict[str, QueueSnapshot], values: list[Any]
    ) -> tuple[LiveState, Toggles]:
        n_partners, n_latches = len(reads.partners), len(reads.latches)
        partner_values = values[:n_partners]
        latch_values = values[n_partners : n_partners + n_latches]
        toggle_values = values[n_partners + n_latches :]
        partners = {
            c: snapshot_from_json(v) for c, v in zip(reads.partners, partner_values, strict=True) if v
        }
        latched = {f"{tenant}/{q}" for q, v in zip(reads.latches, latch_values, strict=True) if v}
        found = {k: toggle_from_json(v) for k, v in zip(TOGGLE_KINDS, toggle_values, strict=True) if v}
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
