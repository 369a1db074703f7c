"""The decision engine: where a call goes, and why (pure: no I/O, no clock, no environment).

``decide(call, plan, live, toggles, now)`` is total: any dialled string at any
instant yields a destination. Precedence, first match wins:

1. an emergency toggle for the tenant (to its emergency cover);
2. a manual closure toggle (to its out-of-hours service);
3. a dated closure or a bank holiday (to the closure's own destination or out-of-hours);
4. a special opening, then the weekly hours: open goes to the tenant's entry;
   closed goes to out-of-hours.

When open, time-boxed topic announcements play first; the entry (usually a menu)
is followed through any keys the caller pressed; a queue is then judged by its
overflow policy against live state, which may be unknown (the policy's safe
default then applies, and the trace says so).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Literal

from routing.core import numbers, overflow
from routing.core.language import ChoiceSpec, choice_spec
from routing.core.live import NO_TOGGLES, UNKNOWN_LIVE_STATE, LiveState, Toggle, Toggles
from routing.core.menu import Done, MenuRun
from routing.core.plan import (
    AnnouncementDest,
    Destination,
    ExternalDest,
    HangupDest,
    MenuDest,
    OverflowPolicy,
    PaymentDest,
    Plan,
    QueueDest,
    Tenant,
    VoicemailDest,
)
from routing.core.schedule import Calendar

State = Literal["open", "closed", "emergency", "unknown_number"]
MAX_HOPS = 8
_NORMALISED: dict[str, str | None] = {}  # memo of a pure function: dialled string -> E.164 or None


@dataclass(frozen=True, slots=True)
class Call:
    """A call as the engine sees it: the dialled number, and any menu keys pressed.

    ``digits`` None stops at the entry destination; otherwise each item is a key
    (``"1"``, ``"*"``) or ``""`` for a silence, fed to the menus in order."""

    dialled: str
    caller: str | None = None
    digits: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class PreludePrompt:
    prompt: str
    skippable: bool = False


@dataclass(frozen=True, slots=True)
class Decision:
    """Where the call goes: ``destination`` after any ``prelude`` prompts, and the trace."""

    destination: Destination
    reasons: tuple[str, ...]
    state: State
    tenant: str | None = None
    language: str = "en"
    prompts: str | None = None
    prelude: tuple[PreludePrompt, ...] = ()
    latches: tuple[tuple[str, bool], ...] = ()  # (tenant/queue, overflowing) to remember


@dataclass(frozen=True)
class CompiledPlan:
    """A validated plan with its lookups prepared: number index and tenant calendars."""

    plan: Plan
    by_number: dict[str, str]
    calendars: dict[str, Calendar]
    arrivals: dict[str, str]  # E.164 -> the trace's first line
    # tenant -> its language choice (None: one language). Made once per plan, not per call:
    # made per call, the route's language step cost 2.5-5 us on top of decide()'s 10-15 us;
    # made here, under 2 us and within the noise (benchmarks/language_bench.py).
    choices: dict[str, ChoiceSpec | None]

    @classmethod
    def compile(cls, plan: Plan) -> CompiledPlan:
        by_number = {number: tid for tid, tenant in plan.tenants.items() for number in tenant.numbers}
        calendars = {tid: Calendar(tenant) for tid, tenant in plan.tenants.items()}
        arrivals = {
            number: f"{numbers.display(number)} -> tenant {tid} ({plan.tenants[tid].name})"
            for number, tid in by_number.items()
        }
        choices = {tid: choice_spec(tenant) for tid, tenant in plan.tenants.items()}
        return cls(plan, by_number, calendars, arrivals, choices)

    def tenant_for(self, dialled: str) -> str | None:
        e164 = self.normalise(dialled)
        return None if e164 is None else self.by_number.get(e164)

    def normalise(self, dialled: str) -> str | None:
        """E.164 form of a dialled string, remembered for the numbers callers really dial."""
        if dialled in _NORMALISED:
            return _NORMALISED[dialled]
        e164 = numbers.try_normalise(dialled)
        if len(_NORMALISED) < 4096:
            _NORMALISED[dialled] = e164
        return e164


@dataclass(slots=True)
class _Walk:
    """One decision in progress: its inputs, and the trace, prelude and latches so far."""

    plan: CompiledPlan
    tid: str
    live: LiveState
    toggles: Toggles
    now: datetime
    reasons: list[str]
    tenant: Tenant = field(init=False)
    local: datetime = field(init=False)  # the tenant's wall clock
    prelude: list[PreludePrompt] = field(default_factory=list)
    latches: list[tuple[str, bool]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.tenant = self.plan.plan.tenants[self.tid]
        self.local = self.plan.calendars[self.tid].wall_clock(self.now)

    def say(self, reason: str) -> None:
        self.reasons.append(reason)


# Memoised by value (destinations are frozen, hashable models; a plan holds a few dozen):
# benchmarks/decide_bench.py p50 per decision 10.2-10.3 us without it, 8.9-9.3 us with it
# (the same run, interleaved), as fast as the id()-keyed table it replaces.
@lru_cache(maxsize=1024)
def describe(dest: Destination) -> str:
    """A short, human reading of a destination for traces."""
    match dest:
        case ExternalDest(centre=str(centre)):
            target = f"centre {centre}"
        case ExternalDest(number=number):
            target = numbers.display(number or "")
        case QueueDest(queue=name) | MenuDest(menu=name) | PaymentDest(line=name):
            return f"{dest.type} {name}"
        case AnnouncementDest(prompt=prompt):
            return f"announcement {prompt}, then {describe(dest.then)}"
        case VoicemailDest(mailbox=mailbox):
            return f"voicemail {mailbox}"
        case HangupDest(prompt=prompt):
            return f"hangup after {prompt}" if prompt else "hangup"
    label = f" ({dest.label})" if isinstance(dest, ExternalDest) and dest.label else ""
    return f"external {target}{label}"


def _toggle_text(kind: str, toggle: Toggle) -> str:
    return f"{kind} toggle on ({toggle.reason}; by {toggle.by}; until {toggle.expires_at:%Y-%m-%d %H:%M %Z})"


def _cover(walk: _Walk) -> Destination:
    cover = walk.tenant.emergency_cover
    if cover is not None:
        walk.say(f"-> emergency cover: {describe(cover)}")
        return cover
    return _out_of_hours(walk, "no emergency cover in the plan: ")


def _out_of_hours(walk: _Walk, why: str = "") -> Destination:
    service = walk.tenant.out_of_hours
    if service is None:
        walk.say(f"-> {why}no out-of-hours service in the plan: hang up")
        return HangupDest(type="hangup")
    walk.say(f"-> {why}out-of-hours service: {describe(service)}")
    return service


def _active(toggle: Toggle | None, now: datetime, service: str | None = None) -> bool:
    return toggle is not None and toggle.service == service and toggle.active(now)


def _scheduled(walk: _Walk) -> tuple[State, Destination]:
    emergency = walk.toggles.emergency.get(walk.tid)
    if emergency is not None and _active(emergency, walk.now):
        walk.say(_toggle_text("emergency", emergency))
        return "emergency", _cover(walk)
    closure = walk.toggles.closure.get(walk.tid)
    if closure is not None and closure.active(walk.now):
        walk.say(_toggle_text("closure", closure))
        return "closed", _out_of_hours(walk)
    state = walk.plan.calendars[walk.tid].state_at(walk.now, walk.local)
    walk.say(state.cause)
    if state.open:
        walk.say(f"-> entry: {describe(walk.tenant.entry)}")
        return "open", walk.tenant.entry
    if state.closure is not None and state.closure.destination is not None:
        walk.say(f"-> closure destination: {describe(state.closure.destination)}")
        return "closed", state.closure.destination
    return "closed", _out_of_hours(walk)


def _topic_announcements(walk: _Walk) -> None:
    tenant = walk.tenant
    if not tenant.announcements:
        return
    local = walk.local
    forced = walk.toggles.announcement.get(walk.tid)
    for item in tenant.announcements:
        in_window = item.start <= local < item.end
        switched = forced is not None and forced.active(walk.now) and forced.service in (None, item.id)
        if in_window or switched:
            why = (
                f"until {item.end.isoformat(' ', 'minutes')}" if in_window else "switched on by a supervisor"
            )
            walk.say(f"topic announcement {item.id} ({why})")
            walk.prelude.append(PreludePrompt(item.prompt, item.skippable))


def _walk_menus(walk: _Walk, dest: MenuDest, digits: tuple[str, ...]) -> Destination:
    run = MenuRun(walk.tenant, dest.menu)
    steps = run.start()
    for key in digits:
        if any(isinstance(step, Done) for step in steps):
            break
        steps = run.on_input(key or None)
    walk.reasons.extend(run.trace)
    for step in steps:
        if isinstance(step, Done):
            return step.destination
    walk.say(f"waiting in menu {run.current.name} for a key")
    return MenuDest(type="menu", menu=run.current.name)


def _partner_refuses(walk: _Walk, dest: QueueDest, policy: OverflowPolicy) -> bool:
    if not isinstance(policy.to, ExternalDest) or policy.to.centre is None:
        return False
    ok, why = overflow.partner_has_capacity(policy, walk.live.partner(policy.to.centre, walk.now))
    walk.say(f"partner centre {policy.to.centre}: {why}")
    if not ok and policy.otherwise is None:
        walk.say(f"-> stay in queue {dest.queue}")
    return not ok


def _queue(walk: _Walk, dest: QueueDest) -> Destination | None:
    """A queue's own verdict: another destination, or None to join the queue."""
    emergency = walk.toggles.emergency.get(walk.tid)
    if emergency is not None and _active(emergency, walk.now, dest.queue):
        walk.say(_toggle_text(f"emergency ({dest.queue})", emergency))
        return _cover(walk)
    queue = walk.tenant.queues[dest.queue]
    policy = queue.overflow
    if policy is None:
        return None
    key = f"{walk.tid}/{dest.queue}"
    snapshot = walk.live.snapshot(queue.asterisk_queue, walk.now)
    verdict = overflow.evaluate(policy, snapshot, key in walk.live.overflowing)
    walk.say(f"queue {dest.queue} ({queue.asterisk_queue}): {verdict.reason}")
    walk.latches.append((key, verdict.latched))
    if not verdict.overflow:
        return None
    if _partner_refuses(walk, dest, policy):
        return policy.otherwise
    walk.say(f"-> overflow to {describe(policy.to)}")
    return policy.to


def _resolve(walk: _Walk, dest: Destination, digits: tuple[str, ...] | None) -> Destination:
    """Follow announcements, menus (with ``digits``) and queue verdicts to a final destination."""
    for _ in range(MAX_HOPS):
        if isinstance(dest, AnnouncementDest):
            walk.prelude.append(PreludePrompt(dest.prompt))
            dest = dest.then
        elif isinstance(dest, MenuDest) and digits is not None:
            dest, digits = _walk_menus(walk, dest, digits), None
            if isinstance(dest, MenuDest):
                return dest
        elif isinstance(dest, QueueDest):
            verdict = _queue(walk, dest)
            if verdict is None or verdict is dest:
                return dest
            dest = verdict
        else:
            return dest
    walk.say(f"stopped after {MAX_HOPS} hops at {describe(dest)}")
    return dest


def _decision(walk: _Walk, state: State, start: Destination, final: Destination) -> Decision:
    if final is not start:
        walk.say(f"=> {describe(final)}")
    return Decision(
        destination=final,
        reasons=tuple(walk.reasons),
        state=state,
        tenant=walk.tid,
        language=walk.tenant.languages[0],
        prompts=walk.tenant.prompts,
        prelude=tuple(walk.prelude),
        latches=tuple(walk.latches),
    )


def resolve_destination(
    *, plan: CompiledPlan, tenant: str, dest: Destination, live: LiveState, toggles: Toggles, now: datetime
) -> Decision:
    """Judge a destination reached later in the call (e.g. the end of a menu): queue
    emergency toggles and overflow apply, announcements become the prelude."""
    walk = _Walk(plan, tenant, live, toggles, now, [f"{describe(dest)} for tenant {tenant}"])
    return _decision(walk, "open", dest, _resolve(walk, dest, None))


def decide(call: Call, plan: CompiledPlan, live: LiveState, toggles: Toggles, now: datetime) -> Decision:
    """Where ``call`` goes at aware instant ``now``; never raises for any dialled string."""
    e164 = plan.normalise(call.dialled)
    tid = plan.by_number.get(e164) if e164 else None
    if tid is None:
        shown = numbers.display(e164) if e164 else repr(call.dialled)
        reason = f"{shown} -> no tenant has this number: -> {describe(plan.plan.unknown_number)}"
        return Decision(plan.plan.unknown_number, (reason,), "unknown_number")
    walk = _Walk(plan, tid, live, toggles, now, [plan.arrivals[e164 or ""]])
    state, dest = _scheduled(walk)
    if state == "open":
        _topic_announcements(walk)
    return _decision(walk, state, dest, _resolve(walk, dest, call.digits))


QUEUE_OUTCOMES = ("TIMEOUT", "FULL", "JOINEMPTY", "LEAVEEMPTY", "JOINUNAVAIL", "LEAVEUNAVAIL", "WITHDRAW")


def after_queue(
    *,
    plan: CompiledPlan,
    tenant: str,
    queue: str,
    outcome: str,
    live: LiveState,
    toggles: Toggles,
    now: datetime,
) -> Decision:
    """Where a caller goes when ``Queue()`` returned without an answer (``QUEUESTATUS``).

    ``WITHDRAW``: the controller withdrew the caller for overflow, so the policy's target
    applies. Otherwise the overflow policy is judged again on live state (a partner may have
    capacity now); failing that, the queue's failover; failing that, a polite hang-up."""
    walk = _Walk(plan, tenant, live, toggles, now, [f"queue {queue} ended: {outcome or 'no status'}"])
    spec = walk.tenant.queues.get(queue)
    if spec is None:
        walk.say(f"unknown queue '{queue}' for tenant {tenant}: -> out-of-hours")
        return _decision(walk, "open", HangupDest(type="hangup"), _out_of_hours(walk))
    policy = spec.overflow
    if outcome == "WITHDRAW" and policy is not None:
        walk.say(f"-> withdrawn for overflow to {describe(policy.to)}")
        return _decision(walk, "open", policy.to, _resolve(walk, policy.to, None))
    overflow_to = _queue(walk, QueueDest(type="queue", queue=queue)) if policy is not None else None
    if overflow_to is not None:
        return _decision(walk, "open", overflow_to, _resolve(walk, overflow_to, None))
    if spec.failover is not None:
        walk.say(f"-> failover: {describe(spec.failover)}")
        return _decision(walk, "open", spec.failover, _resolve(walk, spec.failover, None))
    walk.say("-> no failover in the plan: hang up")
    return _decision(walk, "open", HangupDest(type="hangup"), HangupDest(type="hangup"))


def out_of_hours_decision(plan: CompiledPlan, tenant: str, why: str, now: datetime) -> Decision:
    """Send a call the controller cannot place (e.g. its menu vanished in a reload) to the
    tenant's out-of-hours service; an unknown tenant gets the plan's unknown-number destination."""
    if tenant not in plan.plan.tenants:
        return Decision(
            plan.plan.unknown_number, (why, f"-> {describe(plan.plan.unknown_number)}"), "unknown_number"
        )
    walk = _Walk(plan, tenant, UNKNOWN_LIVE_STATE, NO_TOGGLES, now, [why])
    destination = _out_of_hours(walk)
    return _decision(walk, "closed", destination, destination)
