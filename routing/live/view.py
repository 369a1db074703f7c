"""The live view of a centre for supervisors and engineers (pure: data in, view out).

:func:`build_view` turns what was read from Redis (:class:`LiveRead`, see
``routing/live/feed.py``) and ``now`` into a :class:`LiveView`: per plan queue the waiting
callers, the longest wait, the advisers logged in / available / paused and the overflow
verdict; the partner centres' published capacity and its age; the supervisor toggles; the
plan in force; the controller instances and which one writes live state (the AMI lease
holder). :func:`tiles` flattens a view into tiles keyed by a stable id, and :func:`diff`
says which tiles changed between two views: that is what the live feed sends.

The overflow verdict and each council's state are computed by the decision engine itself
(:func:`routing.core.decide.resolve_destination` for the queue, :func:`routing.core.decide.decide`
for a call to the council's first number), so the view says exactly what a call arriving now
would get, with the engine's own reasons.

Field names are part of the interface (``docs/live-view.md``): add fields, never rename.
Seconds shown are whole seconds, so a tile changes at most once a second by the clock alone.
Text stored by people (a toggle's reason and who set it) is bounded and its control
characters written as escapes; a web page must still escape it as HTML.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from routing.core import overflow
from routing.core.decide import Call, CompiledPlan, decide, describe, resolve_destination
from routing.core.live import LiveState, QueueSnapshot, Toggle, Toggles
from routing.core.plan import ExternalDest, QueueDest
from routing.supervisor import KINDS, MAX_BY, MAX_REASON, shown

Tile = dict[str, Any]


# --- what was read (the reader builds these) ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class QueueRead:
    """One Asterisk queue's live state as stored: the derived snapshot plus paused members."""

    waiting: int
    oldest_join: float | None  # Unix s of the longest-waiting caller's join, None when nobody waits
    logged_in: int
    available: int
    paused: int  # members logged in and paused


@dataclass(frozen=True, slots=True)
class LiveRead:
    """Everything the view needs, as read from Redis at ``read_at``."""

    read_at: datetime
    alive_at: datetime | None = None  # when the AMI writer last knew its stream was live
    last_event_at: datetime | None = None
    lease_holder: str | None = None  # the AMI writer (lease) holder now, None when free
    queues: Mapping[str, QueueRead] = field(default_factory=dict)  # by Asterisk queue name
    partners: Mapping[str, QueueSnapshot] = field(default_factory=dict)  # by centre id
    latches: frozenset[str] = frozenset()  # "tenant/queue" overflowing (hysteresis memory)
    toggles: Mapping[str, Mapping[str, Toggle]] = field(default_factory=dict)  # tenant -> kind -> toggle
    rejected: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # tenant -> kind -> why ignored
    plan_in_force: Mapping[str, Any] | None = None  # the published plan facts (version, at, ...)
    instances: tuple[str, ...] = ()  # controller instances with an alive key


@dataclass(frozen=True, slots=True)
class FeedHealth:
    """Whether the last read succeeded: when it failed the view is built from the last good read."""

    ok: bool = True
    failures: int = 0
    error: str | None = None
    last_read_at: datetime | None = None  # the last good read (None: none yet)


# --- the view -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OverflowView:
    """What a call arriving now at the queue would get.

    ``state``: ``stay`` (joins the queue), ``overflow`` (sent to the policy's target),
    ``otherwise`` (overflow wanted, but the partner cannot take it: the policy's ``otherwise``),
    ``emergency`` (the queue's emergency toggle sends it to emergency cover), ``no_policy``."""

    state: str
    destination: str  # the engine's description of where the call goes
    latched: bool  # the hysteresis memory after this verdict
    reason: str  # the engine's reasons, joined with "; "


@dataclass(frozen=True, slots=True)
class QueueView:
    tenant: str
    queue: str  # the plan's queue id
    asterisk_queue: str
    service: str | None
    known: bool  # the writer has state for this Asterisk queue
    waiting: int
    longest_wait_s: int
    logged_in: int
    available: int
    paused: int
    stale: bool  # unknown, or older than the limit: decisions take the plan's safe default
    # (how old the figures are is the AMI writer's age: ``ami_age_s`` of the controllers tile)
    overflow: OverflowView


@dataclass(frozen=True, slots=True)
class PartnerView:
    centre: str
    name: str
    tenants: tuple[str, ...]  # the councils whose overflow may go there
    present: bool  # the partner's published snapshot exists (it expires when the partner stops)
    waiting: int
    longest_wait_s: int
    logged_in: int
    available: int
    observed_at: str | None
    age_s: int | None
    stale: bool


@dataclass(frozen=True, slots=True)
class ToggleView:
    tenant: str
    kind: str  # emergency | closure | announcement
    service: str | None  # the queue or announcement it applies to, None: the whole council
    reason: str
    by: str
    expires_at: str  # ISO-8601 with offset
    expires_local: str  # in the council's time zone, with the date
    expires_in_s: int


@dataclass(frozen=True, slots=True)
class RejectedToggleView:
    """A stored toggle the controllers ignore (not a toggle, or its MAC does not verify)."""

    tenant: str
    kind: str
    why: str


@dataclass(frozen=True, slots=True)
class TenantView:
    tenant: str
    name: str
    state: str  # what a call to the council's first number gets: open | closed | emergency
    destination: str
    reason: str


@dataclass(frozen=True, slots=True)
class PlanView:
    version: int | None  # the controllers' plan version (from the published plan facts)
    generation: int | None  # the published generation, when the plan store gives one
    sha256: str | None
    path: str | None
    at: str | None  # when the controllers took it


@dataclass(frozen=True, slots=True)
class ControllersView:
    instances: tuple[str, ...]  # controller instances alive now (their alive keys)
    writer: str | None  # the AMI writer: the instance holding the AMI lease
    ami_age_s: int | None  # since the writer last knew its AMI stream was live (None: never)
    ami_stale: bool


@dataclass(frozen=True, slots=True)
class FeedView:
    ok: bool  # the last read from Redis succeeded
    stale: bool  # not ok: the figures shown are from the last good read, ageing
    read_at: str | None  # when stale: when the figures shown were read (None: never)
    age_s: int  # when stale: how old that read is (0 when ok)
    error: str | None  # when stale: the kind of error


@dataclass(frozen=True, slots=True)
class LiveView:
    at: str
    feed: FeedView
    plan: PlanView
    controllers: ControllersView
    tenants: tuple[TenantView, ...]
    queues: tuple[QueueView, ...]
    partners: tuple[PartnerView, ...]
    toggles: tuple[ToggleView, ...]
    rejected_toggles: tuple[RejectedToggleView, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """The view as JSON-able data (field names as above)."""
        return dataclasses.asdict(self)


# --- building it ----------------------------------------------------------------------------------


def _seconds(value: float) -> int:
    return max(0, math.floor(value))


def _age(at: datetime | None, now: datetime) -> int | None:
    return None if at is None else _seconds((now - at).total_seconds())


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()


def _snapshots(read: LiveRead, now: datetime) -> dict[str, QueueSnapshot]:
    if read.alive_at is None:
        return {}
    return {
        name: QueueSnapshot(
            queue=name,
            waiting=q.waiting,
            longest_wait_s=max(0.0, now.timestamp() - q.oldest_join) if q.oldest_join is not None else 0.0,
            logged_in=q.logged_in,
            available=q.available,
            observed_at=read.alive_at,
        )
        for name, q in read.queues.items()
    }


def _toggles(read: LiveRead, tenants: Collection[str]) -> Toggles:
    found: dict[str, dict[str, Toggle]] = {kind: {} for kind in KINDS}
    for tid in tenants:
        for kind, toggle in read.toggles.get(tid, {}).items():
            if kind in found:
                found[kind][tid] = toggle
    return Toggles(**found)


@dataclass(frozen=True, slots=True)
class _Inputs:
    """One view being built: the plan, what was read, the engine's inputs made of it, the time."""

    plan: CompiledPlan
    read: LiveRead
    live: LiveState
    toggles: Toggles
    now: datetime


def _overflow(inputs: _Inputs, tid: str, qid: str) -> OverflowView:
    plan, live, toggles, now = inputs.plan, inputs.live, inputs.toggles, inputs.now
    queue = plan.plan.tenants[tid].queues[qid]
    dest = QueueDest(type="queue", queue=qid)
    decision = resolve_destination(plan=plan, tenant=tid, dest=dest, live=live, toggles=toggles, now=now)
    reasons = decision.reasons[1:]  # the first names the queue and tenant
    latched = dict(decision.latches).get(f"{tid}/{qid}", False)
    policy = queue.overflow
    emergency = toggles.emergency.get(tid)
    if emergency is not None and emergency.service == qid and emergency.active(now):
        state = "emergency"
    elif policy is None:
        state = "no_policy"
    else:  # the engine's own pure steps, for a state a tile can colour by
        snapshot = live.snapshot(queue.asterisk_queue, now)
        verdict = overflow.evaluate(policy, snapshot, f"{tid}/{qid}" in live.overflowing)
        state = "overflow" if verdict.overflow else "stay"
        if verdict.overflow and isinstance(policy.to, ExternalDest) and policy.to.centre is not None:
            ok, _ = overflow.partner_has_capacity(policy, live.partner(policy.to.centre, now))
            state = "overflow" if ok else "otherwise"
    reason = "; ".join(reasons) if reasons else "no overflow policy: callers join the queue"
    return OverflowView(state, describe(decision.destination), latched, reason)


def _queue_view(inputs: _Inputs, tid: str, qid: str) -> QueueView:
    plan, read, live, now = inputs.plan, inputs.read, inputs.live, inputs.now
    spec = plan.plan.tenants[tid].queues[qid]
    raw = read.queues.get(spec.asterisk_queue)
    snap = live.queues.get(spec.asterisk_queue)
    fresh = live.snapshot(spec.asterisk_queue, now)
    return QueueView(
        tenant=tid,
        queue=qid,
        asterisk_queue=spec.asterisk_queue,
        service=spec.service,
        known=raw is not None and snap is not None,
        waiting=raw.waiting if raw else 0,
        longest_wait_s=_seconds(snap.longest_wait_s) if snap else 0,
        logged_in=raw.logged_in if raw else 0,
        available=raw.available if raw else 0,
        paused=raw.paused if raw else 0,
        stale=fresh is None,
        overflow=_overflow(inputs, tid, qid),
    )


def _partner_view(
    plan: CompiledPlan, centre: str, tenants: tuple[str, ...], live: LiveState, now: datetime
) -> PartnerView:
    snap = live.partners.get(centre)
    known = plan.plan.centres.get(centre)
    return PartnerView(
        centre=centre,
        name=known.name if known else centre,
        tenants=tenants,
        present=snap is not None,
        waiting=snap.waiting if snap else 0,
        longest_wait_s=_seconds(snap.longest_wait_s) if snap else 0,
        logged_in=snap.logged_in if snap else 0,
        available=snap.available if snap else 0,
        observed_at=_iso(snap.observed_at) if snap else None,
        age_s=_age(snap.observed_at, now) if snap else None,
        stale=live.partner(centre, now) is None,
    )


def _toggle_view(plan: CompiledPlan, tid: str, kind: str, toggle: Toggle, now: datetime) -> ToggleView:
    zone = plan.plan.tenants[tid].zone()
    return ToggleView(
        tenant=tid,
        kind=kind,
        service=shown(toggle.service, 80) if toggle.service is not None else None,
        reason=shown(toggle.reason, MAX_REASON),
        by=shown(toggle.by, MAX_BY),
        expires_at=toggle.expires_at.isoformat(),
        expires_local=f"{toggle.expires_at.astimezone(zone):%a %d %b %Y %H:%M %Z}",
        expires_in_s=_seconds((toggle.expires_at - now).total_seconds()),
    )


def _tenant_view(inputs: _Inputs, tid: str) -> TenantView:
    tenant = inputs.plan.plan.tenants[tid]
    call = Call(dialled=str(tenant.numbers[0]))
    decision = decide(call, inputs.plan, inputs.live, inputs.toggles, inputs.now)
    return TenantView(
        tenant=tid,
        name=tenant.name,
        state=decision.state,
        destination=describe(decision.destination),
        reason="; ".join(decision.reasons),
    )


def _optional_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _optional_str(value: object) -> str | None:
    return shown(value, 200) if isinstance(value, str) else None


def _plan_view(facts: Mapping[str, Any] | None) -> PlanView:
    facts = facts or {}
    return PlanView(
        version=_optional_int(facts.get("version")),
        generation=_optional_int(facts.get("generation")),
        sha256=_optional_str(facts.get("sha256")),
        path=_optional_str(facts.get("path")),
        at=_optional_str(facts.get("at")),
    )


def build_view(
    plan: CompiledPlan,
    read: LiveRead,
    now: datetime,
    *,
    max_age_s: float = 30.0,
    tenants: Collection[str] | None = None,
    health: FeedHealth = FeedHealth(),
) -> LiveView:
    """The live view of ``tenants`` (default: every tenant of the plan) at ``now``.

    ``max_age_s`` is the age after which live figures count as unknown (the same limit the
    controllers' decisions use, ``ami.stale_age_s``)."""
    shown_tenants = [tid for tid in plan.plan.tenants if tenants is None or tid in tenants]
    live = LiveState(
        queues=_snapshots(read, now),
        partners=dict(read.partners),
        overflowing=read.latches,
        max_age_s=max_age_s,
    )
    toggles = _toggles(read, shown_tenants)
    inputs = _Inputs(plan, read, live, toggles, now)
    queues = tuple(
        _queue_view(inputs, tid, qid)
        for tid in shown_tenants
        for qid in sorted(plan.plan.tenants[tid].queues)
    )
    partner_tenants: dict[str, list[str]] = {}
    for tid in shown_tenants:
        for spec in plan.plan.tenants[tid].queues.values():
            target = spec.overflow.to if spec.overflow is not None else None
            if isinstance(target, ExternalDest) and target.centre is not None:
                partner_tenants.setdefault(target.centre, [])
                if tid not in partner_tenants[target.centre]:
                    partner_tenants[target.centre].append(tid)
    partners = tuple(
        _partner_view(plan, centre, tuple(partner_tenants[centre]), live, now)
        for centre in sorted(partner_tenants)
    )
    toggle_views = tuple(
        _toggle_view(plan, tid, kind, toggle, now)
        for tid in shown_tenants
        for kind in KINDS
        if (toggle := read.toggles.get(tid, {}).get(kind)) is not None and toggle.active(now)
    )
    rejected = tuple(
        RejectedToggleView(tid, kind, shown(why, 200))
        for tid in shown_tenants
        for kind, why in sorted(read.rejected.get(tid, {}).items())
    )
    ami_age = _age(read.alive_at, now)
    controllers = ControllersView(
        instances=tuple(sorted(read.instances)),
        writer=read.lease_holder,
        ami_age_s=ami_age,
        ami_stale=ami_age is None or ami_age > max_age_s,
    )
    if health.ok:
        feed = FeedView(ok=True, stale=False, read_at=None, age_s=0, error=None)
    else:
        last = health.last_read_at
        age = _seconds((now - last).total_seconds()) if last else 0
        feed = FeedView(False, True, _iso(last), age, health.error)
    return LiveView(
        at=now.isoformat(),
        feed=feed,
        plan=_plan_view(read.plan_in_force),
        controllers=controllers,
        tenants=tuple(_tenant_view(inputs, tid) for tid in shown_tenants),
        queues=queues,
        partners=partners,
        toggles=toggle_views,
        rejected_toggles=rejected,
    )


# --- tiles and changes ----------------------------------------------------------------------------


def tiles(view: LiveView) -> dict[str, Tile]:
    """The view as tiles keyed by a stable id (``docs/live-view.md``), in display order.

    Ids: ``feed``, ``plan``, ``controllers``, ``tenant:<tenant>``, ``queue:<tenant>/<queue>``,
    ``partner:<centre>``, ``toggle:<tenant>:<kind>``, ``toggle_rejected:<tenant>:<kind>``. A tile
    for one council carries ``tenant``; a partner tile carries ``tenants``."""
    out: dict[str, Tile] = {
        "feed": {"tile": "feed", **dataclasses.asdict(view.feed)},
        "plan": {"tile": "plan", **dataclasses.asdict(view.plan)},
        "controllers": {"tile": "controllers", **dataclasses.asdict(view.controllers)},
    }
    for t in view.tenants:
        out[f"tenant:{t.tenant}"] = {"tile": "tenant", **dataclasses.asdict(t)}
    for q in view.queues:
        out[f"queue:{q.tenant}/{q.queue}"] = {"tile": "queue", **dataclasses.asdict(q)}
    for p in view.partners:
        out[f"partner:{p.centre}"] = {"tile": "partner", **dataclasses.asdict(p)}
    for g in view.toggles:
        out[f"toggle:{g.tenant}:{g.kind}"] = {"tile": "toggle", **dataclasses.asdict(g)}
    for r in view.rejected_toggles:
        out[f"toggle_rejected:{r.tenant}:{r.kind}"] = {"tile": "toggle_rejected", **dataclasses.asdict(r)}
    return out


def visible(tile: Tile, tenants: Collection[str] | None) -> bool:
    """Whether a viewer of ``tenants`` (None: every tenant) may see ``tile``."""
    if tenants is None:
        return True
    if "tenant" in tile:
        return tile["tenant"] in tenants
    if "tenants" in tile:
        return any(t in tenants for t in tile["tenants"])
    return True


def only(all_tiles: Mapping[str, Tile], tenants: Collection[str] | None) -> dict[str, Tile]:
    """The tiles a viewer of ``tenants`` may see."""
    return {tid: tile for tid, tile in all_tiles.items() if visible(tile, tenants)}


@dataclass(frozen=True, slots=True)
class Changes:
    """Tiles new or changed (whole), and ids of tiles gone."""

    changed: dict[str, Tile]
    removed: tuple[str, ...]

    def __bool__(self) -> bool:
        return bool(self.changed or self.removed)


def diff(before: Mapping[str, Tile], after: Mapping[str, Tile]) -> Changes:
    """What changed from ``before`` to ``after``: each changed tile whole, each gone tile's id."""
    changed = {tid: tile for tid, tile in after.items() if before.get(tid) != tile}
    removed = tuple(tid for tid in before if tid not in after)
    return Changes(changed, removed)
