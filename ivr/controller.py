"""The call controller: the FastAGI routes the dialplans call, over the pure engine.

Routes (the path of ``AGI(agi://host:4573/<route>,args...)``):

- ``route,<dialled>,<from centre>,<from Linkedid>,<from dialled>``: a new call. Decide, play any
  announcements, set the contract variables. The last three: a partner centre's headers
  (checked; ``hop_from``, the dialled council); its language header is read on request.
- ``menu,<tenant>,<menu>,<prelude>``: run an IVR menu; ends in a destination (see :mod:`ivr.agi_handler`).
- ``payment,<tenant>,<line>``: hand the caller to a PCI-hosted payment line, with a checked reference.
- ``overflow,<tenant>,<queue>,<QUEUESTATUS>``: a queue attempt ended unanswered: where next.
- ``survey,<tenant>``: the GovMetric-style Good / Average / Poor question after the adviser hangs up.
- ``wait,<tenant>,<queue>,<event>/<QUEUEPOSITION>/<CR_WAIT>``: between two ``Queue()`` slices of a
  queue with a callback or wait announcements (``callrouter-wait``): announce, offer the callback,
  take the number, or rejoin the caller at their place (see :mod:`ivr.wait_loop`).

Each route ends by setting ``CR_ROUTE`` (its last command). Live state comes from a :class:`LiveSource`
within ``live_timeout``; when it fails or is slow, the decision is taken on unknown live state
(the plan's safe defaults) and the call goes on: fail static.
"""

from __future__ import annotations

import asyncio
import re
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import structlog

from ivr import channel_vars as cv
from ivr.agi_handler import choose_language, play_prelude, run_menu
from ivr.callback_desk import CallbackDesk, NoCallbackDesk
from ivr.contract import HopIn, decode_prelude, pack, read_hop, read_hop_language, route_fields
from ivr.fastagi import AgiChannel, AgiHangup, AgiRequest, FastAgiServer
from ivr.wait_loop import (
    DECLINED,
    OfferAnswer,
    announce,
    ask_offer,
    capture_number,
    clock_text,
    parse_wait_arg,
    prompt_name,
)
from records import facts as rf
from records.model import SurveyScore
from routing.core.callback import CallbackRequest
from routing.core.decide import (
    Call,
    CompiledPlan,
    Decision,
    PreludePrompt,
    after_queue,
    describe,
    out_of_hours_decision,
    resolve_destination,
)
from routing.core.decision_cache import DecisionCache
from routing.core.language import LanguageOutcome, call_language, offered, settled, unchosen
from routing.core.live import NO_TOGGLES, UNKNOWN_LIVE_STATE, LiveState, Toggles
from routing.core.plan import CallbackPolicy, MenuDest, PaymentReference, Queue, Tenant
from routing.core.problems import errors
from routing.core.wait import (
    WaitClock,
    WaitEstimate,
    WaitInputs,
    WaitWords,
    estimate_wait,
    wait_step,
    wait_words,
)
from routing.masking import mask_number
from routing.metrics import RoutedCalls, set_plan_generation
from routing.plan_file import LoadResult, load_plan

log = structlog.get_logger("callrouter.calls")
Clock = Callable[[], datetime]
Handler = Callable[[AgiChannel, AgiRequest], Awaitable[None]]
FactSink = Callable[[rf.IvrFact], None]
SURVEY_SCORES = {"1": 1, "2": 0, "3": -1}
UNKNOWN_CALLER = "unknown"  # agi_callerid when the channel has no caller id (README 1.2)


def _no_facts(fact: rf.IvrFact) -> None:
    return None


def utc_now() -> datetime:
    return datetime.now(UTC)


class LiveSource(Protocol):
    """Where live queue state and supervisor toggles come from (Redis in production).

    A source that answers from memory may also offer ``read_now(plan, tenant, now)``, the same
    result as :meth:`read` without a coroutine; the controller then calls it directly, with no
    timeout timer on the call path (:class:`routing.live.source.CachedLiveSource` does)."""

    async def read(
        self, plan: CompiledPlan, tenant: str | None, now: datetime
    ) -> tuple[LiveState, Toggles]: ...

    async def remember(self, latches: tuple[tuple[str, bool], ...]) -> None: ...


class NoLiveState:
    """No live source: every decision takes the plan's safe defaults."""

    async def read(self, plan: CompiledPlan, tenant: str | None, now: datetime) -> tuple[LiveState, Toggles]:
        return UNKNOWN_LIVE_STATE, NO_TOGGLES

    async def remember(self, latches: tuple[tuple[str, bool], ...]) -> None:
        return None


class PlanHolder:
    """The plan in force. :meth:`reload` swaps it only for a plan that validates."""

    def __init__(self, path: Path, plan: CompiledPlan) -> None:
        self.path = path
        self.current = plan
        self.version = 1
        self.generation: int | None = None
        """The plan store's generation in force (``plan_source = store``); None for a plan file."""
        set_plan_generation(self.version)

    @classmethod
    def load(cls, path: str | Path) -> PlanHolder:
        result = load_plan(path)
        if not result.ok or result.plan is None:
            raise PlanError(result)
        return cls(Path(path), CompiledPlan.compile(result.plan))

    def reload(self) -> LoadResult:
        """Re-read the plan file; keep serving the last good plan if it has errors."""
        result = load_plan(self.path)
        self.take(result, CompiledPlan.compile(result.plan) if result.ok and result.plan else None)
        return result

    def take(self, result: LoadResult, compiled: CompiledPlan | None, generation: int | None = None) -> bool:
        """Swap in ``compiled`` (``result``'s plan, compiled) if ``result`` is clean; else keep
        serving the current plan and log every error. One assignment: calls see either plan.
        ``generation``: the plan store's generation of ``compiled``, when it comes from the store."""
        if result.ok and compiled is not None:
            self.current = compiled
            self.version += 1
            self.generation = generation
            set_plan_generation(self.version)
            log.info(
                "plan.reloaded", path=str(self.path), version=self.version, generation=generation,
                warnings=len(result.problems),
            )  # fmt: skip
            return True
        problems = [str(p) for p in errors(result.problems)]
        log.error(
            "plan.rejected", path=str(self.path), kept_version=self.version, kept_generation=self.generation,
            problems=problems,
        )  # fmt: skip
        return False


class PlanError(Exception):
    """A plan with errors at start-up."""

    def __init__(self, result: LoadResult) -> None:
        super().__init__("\n".join(str(p) for p in errors(result.problems)))
        self.result = result


@dataclass
class Controller:
    """The routes, bound to a plan holder, a live source and a clock."""

    plans: PlanHolder
    live: LiveSource = field(default_factory=NoLiveState)
    clock: Clock = utc_now
    live_timeout: float = 0.25
    facts: FactSink = _no_facts
    """Where the call's facts go: in memory, no I/O per fact, and it must not raise
    (:meth:`records.outbox.RecordPump.fact` counts and drops a fact the builder refuses)."""
    fact_clock: Callable[[], float] = time.time
    """Real time for facts (the decision clock may be a rehearsal clock)."""
    metrics: RoutedCalls | None = field(default_factory=RoutedCalls)
    """Calls routed and decision latency (:mod:`routing.metrics`); None: not counted."""
    callbacks: CallbackDesk = field(default_factory=NoCallbackDesk)
    """The wait route's handle times and pending callbacks, and where callbacks are left."""

    def __post_init__(self) -> None:
        # A source that answers from memory offers read_now: no coroutine, no timer per call.
        self._read_now: Callable[..., tuple[LiveState, Toggles]] | None = getattr(self.live, "read_now", None)
        # decide() for a new call, remembered while nothing it reads can change (routing.core.
        # decision_cache): ~15-20 us of a ~115 us route session in-process (docs/performance.md)
        self._decisions = DecisionCache()
        self._routes: dict[int, tuple[Decision, str | None, weakref.ref[CompiledPlan], str]] = {}

    def routes(self) -> dict[str, Handler]:
        return {
            "route": self.route,
            "menu": self.menu,
            "payment": self.payment,
            "overflow": self.overflow,
            "survey": self.survey,
            "wait": self.wait,
        }

    def register(self, server: FastAgiServer) -> None:
        for name, handler in self.routes().items():
            server.register(name, handler)

    async def _live(self, plan: CompiledPlan, tenant: str | None, now: datetime) -> tuple[LiveState, Toggles]:
        try:
            if self._read_now is not None:
                return self._read_now(plan, tenant, now)
            async with asyncio.timeout(self.live_timeout):
                return await self.live.read(plan, tenant, now)
        except Exception as exc:  # any failure of live state must not stop the call
            log.warning("live.unavailable", error=type(exc).__name__, detail=str(exc)[:200])
            return UNKNOWN_LIVE_STATE, NO_TOGGLES

    def _decided(self, route: str, started: float) -> None:
        if self.metrics is not None:
            self.metrics.decided(route, time.perf_counter() - started)

    async def _remember(self, decision: Decision) -> None:
        if not decision.latches:
            return
        try:
            async with asyncio.timeout(self.live_timeout):
                await self.live.remember(decision.latches)
        except Exception as exc:  # the latch only steadies hysteresis
            log.warning("live.latch_not_saved", error=type(exc).__name__)

    async def _finish(
        self,
        channel: AgiChannel,
        plan: CompiledPlan,
        decision: Decision,
        *,
        reason: str | None = None,
        call_id: str = "",
        language: str | None = None,
    ) -> None:
        """Play the prelude and set ``CR_ROUTE``. ``language``: the call's language (the
        caller's choice), which the route's language field keeps on the channel."""
        if language is not None and language != decision.language:  # replace() costs ~3 us a call
            decision = replace(decision, language=language)
        self.facts(rf.route_decided(call_id, self.fact_clock(), decision, describe(decision.destination)))
        if not isinstance(decision.destination, MenuDest):
            try:
                skipped = await play_prelude(channel, decision.prelude)
            except AgiHangup:
                self.facts(rf.IvrAbandoned(call_id, self.fact_clock(), "announcement"))
                raise
            self._announced(call_id, decision, skipped)
        await channel.set_variable(cv.ROUTE, self._route_value(plan, decision, reason))
        await self._remember(decision)

    def _route_value(self, plan: CompiledPlan, decision: Decision, reason: str | None) -> str:
        """``CR_ROUTE`` for ``decision``, remembered for the decision object: the decision cache
        hands the same (immutable) one to every call it answers, and packing it was ~5 us a call
        (``docs/performance.md``, "Per core"). Keyed by identity, the entry holding the decision
        (so its id is not reused) and its plan weakly (a replaced plan is still freed)."""
        known = self._routes.get(id(decision))
        if known is not None and known[0] is decision and known[1] == reason and known[2]() is plan:
            return known[3]
        value = pack(route_fields(plan, decision, reason))
        if len(self._routes) >= 256:
            self._routes.clear()
        self._routes[id(decision)] = (decision, reason, weakref.ref(plan), value)
        return value

    def _announced(self, call_id: str, decision: Decision, skipped: tuple[bool, ...]) -> None:
        at = self.fact_clock()
        for item, was_skipped in zip(decision.prelude, skipped, strict=False):
            self.facts(rf.AnnouncementPlayed(call_id, at, item.prompt, was_skipped))

    # --- routes -------------------------------------------------------------------------------

    async def route(self, channel: AgiChannel, request: AgiRequest) -> None:
        """A new call: ``AGI(agi://host/route,${EXTEN},<from centre>,<from Linkedid>,<dialled>)``;
        the last three from a partner centre's ``X-Callrouter-Centre`` / ``-Linkedid`` /
        ``-Dialled`` headers (URI-encoded, empty when absent), checked by
        :func:`ivr.contract.read_hop`. A call a partner sent is answered in the name of the
        council the caller dialled there, when that number is one of this plan's councils, and
        in the language settled there (``X-Callrouter-Language``: :meth:`_carried_language`)."""
        started = time.perf_counter()
        # the plan, its version and generation read together (a swap never runs between them):
        # the decision and its log line name the one plan that made it
        plan, version, generation = self.plans.current, self.plans.version, self.plans.generation
        arrived_on = request.args[0] if request.args else request.extension
        from_centre, from_call, from_dialled = (*request.args, "", "", "", "")[1:4]
        hop = read_hop(plan, from_centre, from_call, from_dialled)
        _log_refused_hop(hop, from_centre, from_call, from_dialled)
        dialled = hop.dialled or arrived_on
        now = self.clock()
        live, toggles = await self._live(plan, plan.tenant_for(dialled), now)
        decision = self._decisions.decide(Call(dialled, caller=request.callerid), plan, live, toggles, now)
        if self.metrics is not None:
            self.metrics.decided("route", time.perf_counter() - started)
            self.metrics.routed(decision.tenant, decision.destination, decision.state)
        structlog.contextvars.bind_contextvars(tenant=decision.tenant)
        _summarize_decision(
            channel, "call.routed", decision, dialled=mask_number(dialled), plan_version=version,
            plan_generation=generation, hop_from=hop.centre,
        )  # fmt: skip
        caller = request.callerid if request.callerid and request.callerid != UNKNOWN_CALLER else None
        # The controller's AGI() runs on the caller's own channel, whose Uniqueid is the call's
        # Linkedid (every leg Asterisk makes for the call carries it): the record's id.
        arrived = rf.CallArrived(
            request.uniqueid, self.fact_clock(), dialled, caller, decision.tenant, hop.centre, hop.call
        )
        self.facts(arrived)
        carried = await self._carried_language(channel, plan, hop, decision.tenant)
        language = await self._choose_language(
            channel, plan, decision, request.uniqueid, carried, channel_language=request.language
        )
        await self._finish(channel, plan, decision, call_id=request.uniqueid, language=language)

    async def _carried_language(
        self, channel: AgiChannel, plan: CompiledPlan, hop: HopIn, tenant: str | None
    ) -> str | None:
        """The language a partner centre sent with the call (``X-Callrouter-Language``, which
        ``callrouter-inbound`` reads into ``CR_FROM_LANGUAGE``), when it is one of the answering
        tenant's languages. Asked for (one ``GET VARIABLE``) only for a call from a known
        partner centre to a tenant with a language choice: no other call pays the round trip."""
        known = plan.choices.get(tenant) if tenant is not None else None
        if hop.centre is None or known is None:
            return None
        value = await channel.get_variable(cv.FROM_LANGUAGE) or ""
        language, reason = read_hop_language(known, value)
        if reason is not None:
            _log_refused_hop(HopIn(refused=((cv.HEADER_LANGUAGE, reason),)), "", "", "", value)
        return language

    async def _choose_language(
        self,
        channel: AgiChannel,
        plan: CompiledPlan,
        decision: Decision,
        call_id: str,
        carried: str | None = None,
        *,
        channel_language: str = "",
    ) -> str | None:
        """A tenant with more than one language: the caller chooses first, and the choice
        sets the channel's language for the rest of the call (:mod:`ivr.language_driver`).
        No choice for a single-language tenant, for a call a partner centre sent with the
        language settled there (``carried``), nor for a call dialled straight out with no
        prompt of ours (the far end, e.g. a partner centre, offers its own: the route's
        language field is left empty, so the language is not sent on as settled)."""
        if decision.tenant is None:
            return None
        known = plan.choices[decision.tenant]
        spec = offered(known, decision.destination, bool(decision.prelude))
        outcome: LanguageOutcome
        if carried is not None:
            outcome = LanguageOutcome(carried, "hop")
        elif spec is None:
            outcome = unchosen(plan.plan.tenants[decision.tenant], known)
        else:
            try:
                outcome = await choose_language(channel, spec)  # sets the channel's language
            except AgiHangup:
                self.facts(rf.IvrAbandoned(call_id, self.fact_clock(), "language choice"))
                raise
        language = outcome.language if settled(outcome) else ""
        if (
            (spec is None or carried is not None)
            and language
            and language != channel_language
            and decision.prelude
            and not isinstance(decision.destination, MenuDest)
        ):
            # the prelude plays in this route, before callrouter-unpack sets the route's language
            # on the channel (a menu plays in its own route, after it): in the council's language
            # (sent with the call, or a single-language council's own), not the channel's
            await channel.set_variable(cv.LANGUAGE, language)
        # in the call's one event (call.routed), not a line of its own
        channel.summarize("call.routed", chosen_language=outcome.language, language_how=outcome.how)
        self.facts(rf.LanguageChosen(call_id, self.fact_clock(), outcome.language, outcome.how, outcome.key))
        return language

    def _language(self, plan: CompiledPlan, tenant_id: str, request: AgiRequest) -> str | None:
        """The language of a call at a later route: the channel's (``agi_language``, as the
        caller's choice left it) when it is one of the tenant's."""
        tenant = plan.plan.tenants.get(tenant_id)
        return None if tenant is None else call_language(tenant, request.language)

    async def menu(self, channel: AgiChannel, request: AgiRequest) -> None:
        """``AGI(agi://host/menu,${CR_TENANT},${CR_TARGET},${CR_PRELUDE})``."""
        plan = self.plans.current
        tenant_id, menu_name, prelude = (*request.args, "", "", "")[:3]
        tenant = plan.plan.tenants.get(tenant_id)
        if tenant is None or menu_name not in tenant.menus:
            log.error("menu.unknown", tenant=tenant_id, menu=menu_name, plan_version=self.plans.version)
            await self._finish(
                channel,
                plan,
                out_of_hours_decision(plan, tenant_id, f"unknown menu {tenant_id}/{menu_name}", self.clock()),
                call_id=request.uniqueid,
                language=self._language(plan, tenant_id, request),
            )
            return
        walk = _MenuFacts(request.uniqueid, menu_name, self.facts, self.fact_clock)
        items = decode_prelude(prelude)
        try:
            destination, trace = await run_menu(
                channel,
                tenant,
                menu_name,
                items,
                on_event=walk.on_event,
                on_prelude=lambda skipped: walk.on_prelude(items, skipped),
            )
        except AgiHangup:
            log.info("call.abandoned", stage="menu", tenant=tenant_id, menu=menu_name)
            self.facts(rf.IvrAbandoned(request.uniqueid, self.fact_clock(), walk.current))
            raise
        started, now = time.perf_counter(), self.clock()
        live, toggles = await self._live(plan, tenant_id, now)
        decision = resolve_destination(
            plan=plan, tenant=tenant_id, dest=destination, live=live, toggles=toggles, now=now
        )
        self._decided("menu", started)
        _summarize_decision(channel, "call.menu_done", decision, menu=menu_name, menu_trace=trace)
        await self._finish(
            channel, plan, decision, reason="menu", call_id=request.uniqueid,
            language=self._language(plan, tenant_id, request),
        )  # fmt: skip

    async def payment(self, channel: AgiChannel, request: AgiRequest) -> None:
        """``AGI(agi://host/payment,${CR_TENANT},${CR_TARGET})``: the caller is handed to the
        PCI-hosted line with only a payment reference; card digits are never asked for."""
        plan = self.plans.current
        tenant_id, line_name = (*request.args, "", "")[:2]
        tenant = plan.plan.tenants.get(tenant_id)
        line = tenant.payment_lines.get(line_name) if tenant else None
        if tenant is None or line is None:
            log.error("payment.unknown_line", tenant=tenant_id, line=line_name)
            await self._finish(
                channel,
                plan,
                out_of_hours_decision(
                    plan, tenant_id, f"unknown payment line {tenant_id}/{line_name}", self.clock()
                ),
                call_id=request.uniqueid,
                language=self._language(plan, tenant_id, request),
            )
            return
        call_id = request.uniqueid
        self.facts(rf.PaymentStarted(call_id, self.fact_clock(), line_name))
        try:
            capture = (
                await capture_reference(channel, line.reference) if line.reference else NO_REFERENCE_ASKED
            )
        except AgiHangup:
            self.facts(rf.IvrAbandoned(call_id, self.fact_clock(), f"payment {line_name}"))
            raise
        captured = capture.outcome == "captured"
        log.info(
            "call.payment_reference",
            tenant=tenant_id,
            line=line_name,
            outcome=capture.outcome,
            attempts=capture.attempts,
            refused_overlong=capture.overlong,
        )  # never the digits
        if capture.outcome == "failed" and line.reference and line.reference.on_failure is not None:
            now = self.clock()
            live, toggles = await self._live(plan, tenant_id, now)
            decision = resolve_destination(
                plan=plan,
                tenant=tenant_id,
                dest=line.reference.on_failure,
                live=live,
                toggles=toggles,
                now=now,
            )
            _log_decision("call.payment_reference_failed", decision, line=line_name)
            self.facts(rf.PaymentHandedOff(call_id, self.fact_clock(), line_name, captured, handed_off=False))
            await self._finish(
                channel, plan, decision, reason="payment", call_id=call_id,
                language=self._language(plan, tenant_id, request),
            )  # fmt: skip
            return
        log.info("call.payment_handoff", tenant=tenant_id, line=line_name, reference=bool(capture.reference))
        self.facts(rf.PaymentHandedOff(call_id, self.fact_clock(), line_name, captured, handed_off=True))
        await channel.set_variable(cv.PAYMENT_REFERENCE, capture.reference)
        fields = {cv.ACTION: "payment", cv.TARGET: line.number, cv.TENANT: tenant_id, cv.REASON: "payment"}
        await channel.set_variable(cv.ROUTE, pack(fields))

    async def overflow(self, channel: AgiChannel, request: AgiRequest) -> None:
        """``AGI(agi://host/overflow,${CR_TENANT},${CR_QUEUE},${QUEUESTATUS})``."""
        plan = self.plans.current
        tenant_id, queue, outcome = (*request.args, "", "", "")[:3]
        if tenant_id not in plan.plan.tenants:
            await self._finish(
                channel,
                plan,
                out_of_hours_decision(plan, tenant_id, f"unknown tenant {tenant_id}", self.clock()),
                call_id=request.uniqueid,
            )
            return
        if outcome:
            self.facts(rf.QueueStatusSeen(request.uniqueid, self.fact_clock(), outcome.upper()))
        started, now = time.perf_counter(), self.clock()
        live, toggles = await self._live(plan, tenant_id, now)
        decision = after_queue(
            plan=plan,
            tenant=tenant_id,
            queue=queue,
            outcome=outcome.upper(),
            live=live,
            toggles=toggles,
            now=now,
        )
        self._decided("overflow", started)
        _summarize_decision(channel, "call.queue_ended", decision, queue=queue, queue_status=outcome)
        reason = "withdrawn" if outcome.upper() == "WITHDRAW" else "after_queue"
        await self._finish(
            channel, plan, decision, reason=reason, call_id=request.uniqueid,
            language=self._language(plan, tenant_id, request),
        )  # fmt: skip

    async def survey(self, channel: AgiChannel, request: AgiRequest) -> None:
        """``AGI(agi://host/survey,${CR_TENANT},${CR_QUEUE})``: 1 Good (+1), 2 Average (0), 3 Poor (-1)."""
        plan = self.plans.current
        tenant_id, queue = (*request.args, "", "")[:2]
        tenant = plan.plan.tenants.get(tenant_id)
        score: int | None = None
        if tenant is not None and tenant.survey is not None:
            score = await ask_survey(channel, tenant.survey.prompt, tenant.survey.timeout_s)
            if score is not None and tenant.survey.thanks_prompt:
                await channel.stream_file(tenant.survey.thanks_prompt)
        log.info("call.survey", tenant=tenant_id, queue=queue, score=score, answered=score is not None)
        if score is not None:
            value: SurveyScore = 1 if score > 0 else -1 if score < 0 else 0
            self.facts(rf.SurveyAnswered(request.uniqueid, self.fact_clock(), value))
        await channel.set_variable(cv.SURVEY_SCORE, "" if score is None else str(score))
        await channel.set_variable(
            cv.ROUTE, pack({cv.ACTION: "hangup", cv.TENANT: tenant_id, cv.REASON: "survey"})
        )

    async def wait(self, channel: AgiChannel, request: AgiRequest) -> None:
        """``AGI(agi://host/wait,${CR_TENANT},${CR_QUEUE},<event>/${QUEUEPOSITION}/${CR_WAIT})``:
        one step of the wait loop (``callrouter-wait``): announce, offer the callback, or rejoin
        the caller at their place for the next slice. Sets ``CR_WAIT`` then ``CR_ROUTE``:
        ``wait`` (rejoin for ``CR_ARG`` seconds), ``hangup`` (a callback was taken: the goodbye)
        or the after-queue route once the queue's timeout has passed."""
        plan = self.plans.current
        tenant_id, queue_name, arg = (*request.args, "", "", "")[:3]
        tenant = plan.plan.tenants.get(tenant_id)
        queue = tenant.queues.get(queue_name) if tenant is not None else None
        if tenant is None or queue is None:
            log.error("wait.unknown_queue", tenant=tenant_id, queue=queue_name)
            why = f"unknown queue {tenant_id}/{queue_name}"
            decision = out_of_hours_decision(plan, tenant_id, why, self.clock())
            await self._finish(channel, plan, decision, call_id=request.uniqueid)
            return
        step_arg = parse_wait_arg(arg)
        now_s = int(self.fact_clock())
        clock = step_arg.clock or WaitClock(now_s, now_s + queue.timeout_s)
        now = self.clock()
        position, estimate = await self._estimate(
            plan=plan, tenant_id=tenant_id, queue=queue, position=step_arg.position, clock=clock, now=now
        )
        # no callback store behind the controller (serve without Redis): nothing to offer
        policy = queue.callback if self.callbacks.takes_callbacks else None
        words = queue.announce_wait
        step = wait_step(
            event=step_arg.event,
            key=step_arg.key,
            clock=clock,
            now=now_s,
            estimate=estimate,
            offer_above_s=policy.offer_above_s if policy else None,
            offer_key=policy.offer_key if policy else "",
            offer_every_s=policy.offer_every_s if policy else None,
            announce_every_s=words.every_s if words else None,
        )
        log.info(
            "call.wait_step", tenant=tenant_id, queue=queue_name, wait_event=step_arg.event,
            position=position, expected_s=estimate.expected_s, upper_s=estimate.upper_s,
            estimate_unknown=estimate.reason or None, announce=step.announce, offer=step.offer,
            timed_out=step.timed_out,
        )  # fmt: skip
        if step.timed_out:
            await self._wait_ended(channel, request, plan, tenant_id, queue_name)
            return
        try:
            if step.announce and words is not None:
                said = (
                    wait_words(estimate, words.max_figure_s) if words.expected_wait else WaitWords("nothing")
                )
                await announce(channel, position if words.position else None, said)
                clock = WaitClock(clock.joined, clock.deadline, now_s, clock.offered)
            if step.offer and policy is not None:
                clock = WaitClock(clock.joined, clock.deadline, clock.announced, now_s)
                answer = await self._offer(channel, request, tenant, policy)
                taken = await self._take_callback(
                    request=request, tenant_id=tenant_id, queue_name=queue_name, queue=queue,
                    policy=policy, clock=clock, answer=answer,
                )  # fmt: skip
                kind = answer.kind if taken is not None else None
                self.facts(rf.CallbackOffered(request.uniqueid, self.fact_clock(), taken is not None, kind))
                if taken is not None:
                    await channel.stream_file(prompt_name(tenant.prompts, "callback-goodbye"))
                    fields = {cv.ACTION: "hangup", cv.TENANT: tenant_id, cv.REASON: "callback"}
                    await channel.set_variable(cv.ROUTE, pack(fields))
                    return
                if answer.accepted:  # the store refused or failed: the caller keeps waiting
                    await channel.stream_file(prompt_name(tenant.prompts, "callback-unavailable"))
        except AgiHangup:
            at = self.fact_clock()
            if step_arg.event == "entry":  # not queued yet: an abandon in the IVR
                self.facts(rf.IvrAbandoned(request.uniqueid, at, f"wait {queue_name}"))
            else:  # between two slices: an abandon in the queue
                self.facts(rf.WaitAbandoned(request.uniqueid, at))
            raise
        await channel.set_variable(cv.WAIT, clock_text(clock))
        fields = {
            cv.ACTION: "wait", cv.TARGET: queue.asterisk_queue, cv.ARGUMENT: str(step.slice_s),
            cv.TENANT: tenant_id, cv.PROMPTS: tenant.prompts, cv.QUEUE: queue_name, cv.REASON: "wait",
            cv.HOME: plan.plan.centre, cv.SURVEY: "1" if tenant.survey is not None else "",
        }  # fmt: skip
        await channel.set_variable(cv.ROUTE, pack(fields))

    async def _estimate(
        self,
        *,
        plan: CompiledPlan,
        tenant_id: str,
        queue: Queue,
        position: int | None,
        clock: WaitClock,
        now: datetime,
    ) -> tuple[int | None, WaitEstimate]:
        """The caller's position (Queue()'s QUEUEPOSITION; at entry: behind everyone waiting)
        and the expected wait; unknown when live state or the handle times are not to be had."""
        live, _toggles = await self._live(plan, tenant_id, now)
        snap = live.snapshot(queue.asterisk_queue, now)
        try:
            async with asyncio.timeout(self.live_timeout):
                handle, ahead = await self.callbacks.wait_inputs(queue.asterisk_queue, clock.joined)
        except Exception as exc:  # the estimate is a nicety: the caller waits on without it
            log.warning("wait.inputs_unavailable", error=type(exc).__name__)
            handle, ahead = [], 0
        if snap is None:
            return position, WaitEstimate(None, None, "no live state for the queue")
        place = position if position is not None else snap.waiting + 1
        inputs = WaitInputs(place, ahead, snap.logged_in, snap.available, handle)
        return place, estimate_wait(inputs)

    async def _offer(
        self, channel: AgiChannel, request: AgiRequest, tenant: Tenant, policy: CallbackPolicy
    ) -> OfferAnswer:
        prompt = policy.prompt or prompt_name(tenant.prompts, "callback-offer")
        if not await ask_offer(channel, prompt, policy.offer_key):
            return DECLINED
        caller = request.callerid if request.callerid and request.callerid != UNKNOWN_CALLER else None
        return await capture_number(channel, tenant.prompts, caller, tuple(policy.allow_numbers))

    async def _take_callback(
        self,
        *,
        request: AgiRequest,
        tenant_id: str,
        queue_name: str,
        queue: Queue,
        policy: CallbackPolicy,
        clock: WaitClock,
        answer: OfferAnswer,
    ) -> str | None:
        """Leave the callback (its place: the call's first join time); its id, or None when the
        caller declined or the store could not take it (logged; never the number)."""
        if not answer.accepted or answer.number is None:
            log.info("call.callback_declined", tenant=tenant_id, refused_kind=answer.kind, tries=answer.tries)
            return None
        now = self.fact_clock()
        req = CallbackRequest(
            tenant=tenant_id, queue=queue_name, number=answer.number, joined_at=float(clock.joined),
            requested_at=max(now, float(clock.joined)), call_id=request.uniqueid,
            language=request.language or "en",
        )  # fmt: skip
        try:
            async with asyncio.timeout(max(self.live_timeout, 2.0)):
                callback_id = await self.callbacks.request(req, policy, now, queue.asterisk_queue)
        except Exception as exc:
            log.error(
                "call.callback_not_stored", tenant=tenant_id, queue=queue_name, error=type(exc).__name__,
                detail=str(exc)[:200],
            )  # fmt: skip
            return None
        log.info(
            "call.callback_taken", tenant=tenant_id, queue=queue_name, callback_id=callback_id,
            number=mask_number(answer.number), number_kind=answer.kind,
        )  # fmt: skip
        return callback_id

    async def _wait_ended(
        self, channel: AgiChannel, request: AgiRequest, plan: CompiledPlan, tenant_id: str, queue_name: str
    ) -> None:
        """The queue's timeout passed while waiting: the after-queue route, as for TIMEOUT."""
        self.facts(rf.QueueStatusSeen(request.uniqueid, self.fact_clock(), "TIMEOUT"))
        now = self.clock()
        live, toggles = await self._live(plan, tenant_id, now)
        decision = after_queue(
            plan=plan,
            tenant=tenant_id,
            queue=queue_name,
            outcome="TIMEOUT",
            live=live,
            toggles=toggles,
            now=now,
        )
        _summarize_decision(channel, "call.queue_ended", decision, queue=queue_name, queue_status="TIMEOUT")
        await self._finish(
            channel, plan, decision, reason="after_queue", call_id=request.uniqueid,
            language=self._language(plan, tenant_id, request),
        )  # fmt: skip


class _MenuFacts:
    """Turns a menu walk's steps (:data:`routing.core.menu.MenuEvent`) into record facts."""

    def __init__(self, call_id: str, menu: str, facts: FactSink, clock: Callable[[], float]) -> None:
        self.call_id, self.current, self.facts, self.clock = call_id, menu, facts, clock

    def on_prelude(self, items: tuple[PreludePrompt, ...], skipped: tuple[bool, ...]) -> None:
        at = self.clock()
        for item, was_skipped in zip(items, skipped, strict=False):
            self.facts(rf.AnnouncementPlayed(self.call_id, at, item.prompt, was_skipped))

    def on_event(self, kind: str, menu: str, key: str | None) -> None:
        at = self.clock()
        if kind == "entered":
            self.current = menu
            self.facts(rf.MenuEntered(self.call_id, at, menu))
        elif kind == "key" and key is not None:
            self.facts(rf.KeyPressed(self.call_id, at, menu, key))
        elif kind == "invalid":
            self.facts(rf.InvalidKey(self.call_id, at, menu))
        elif kind == "timeout":
            self.facts(rf.MenuTimeout(self.call_id, at, menu))


def _decision_fields(decision: Decision) -> dict[str, object]:
    return {
        "tenant": decision.tenant,
        "state": decision.state,
        "destination": describe(decision.destination),
        "reasons": list(decision.reasons),
    }


def _log_decision(event: str, decision: Decision, **fields: object) -> None:
    log.info(event, **_decision_fields(decision), **fields)


def _summarize_decision(channel: AgiChannel, event: str, decision: Decision, **fields: object) -> None:
    """The session's decision as its one log event, logged by the server when the session ends
    with ``outcome``, ``duration_ms`` and ``commands`` (:meth:`AgiChannel.summarize`): one JSON
    event per call instead of two saved ~20-30 us per route session (``docs/performance.md``)."""
    channel.summarize(event, **_decision_fields(decision), **fields)


@dataclass(frozen=True, slots=True)
class ReferenceCapture:
    """What the reference prompt gave: ``outcome`` ``captured`` (``reference`` set), ``failed``
    (``attempts`` entries refused or unrecognised) or ``not-asked``; ``overlong``: how many
    entries were longer than allowed (their digits were drained and dropped)."""

    outcome: str
    reference: str = ""
    attempts: int = 0
    overlong: int = 0


NO_REFERENCE_ASKED = ReferenceCapture("not-asked")
DRAIN_QUIET_MS = 1000  # the caller has stopped typing (digits came 0.3 s apart in the capture)
DRAIN_MAX_DIGITS = 32  # a card number is at most 19 digits; then stop listening anyway


def is_overlong(digits: str, max_digits: int) -> bool:
    """More digits than a reference can have: a card number typed at the wrong prompt."""
    return len(digits) > max_digits


async def capture_reference(channel: AgiChannel, spec: PaymentReference) -> ReferenceCapture:
    """Ask for the payment reference, at most ``spec.tries`` times.

    Asterisk buffers no digits: ``GET DATA ... N`` returns the first N digits of a longer entry
    and the rest go to whatever listens next (``agi_getdata_maxdigits_overflow.txt``). So it asks
    for ``max_digits + 1``: a result that long means the caller typed more than a reference can
    hold (e.g. a 16-digit card number). Such an entry is never kept, logged or set: the rest of
    it is drained (``WAIT FOR DIGIT`` until the caller stops) and the caller hears
    ``invalid_prompt`` and is asked again. An entry of exactly ``max_digits`` returns after the
    inter-digit timeout (or at once when the caller presses ``#``)."""
    pattern = re.compile(spec.pattern)
    overlong = 0
    for attempt in range(1, spec.tries + 1):
        digits, _timed_out = await channel.get_data(spec.prompt, spec.timeout_s * 1000, spec.max_digits + 1)
        if is_overlong(digits, spec.max_digits):
            digits = ""  # dropped here, before anything can keep it
            overlong += 1
            await drain_digits(channel)
        elif digits and pattern.fullmatch(digits):
            return ReferenceCapture("captured", digits, attempt, overlong)
        if spec.invalid_prompt:
            await channel.stream_file(spec.invalid_prompt)  # no escape digits: typing is ignored
    return ReferenceCapture("failed", "", spec.tries, overlong)


async def drain_digits(channel: AgiChannel) -> int:
    """Listen until the caller stops typing (``WAIT FOR DIGIT`` gets nothing for
    :data:`DRAIN_QUIET_MS`); the digits are discarded. Returns how many were drained."""
    for drained in range(DRAIN_MAX_DIGITS):
        if await channel.wait_for_digit(DRAIN_QUIET_MS) is None:
            return drained
    return DRAIN_MAX_DIGITS


async def ask_survey(channel: AgiChannel, prompt: str, timeout_s: int, tries: int = 2) -> int | None:
    for _ in range(tries):
        digits, _timed_out = await channel.get_data(prompt, timeout_s * 1000, 1)
        if digits in SURVEY_SCORES:
            return SURVEY_SCORES[digits]
    return None


HOP_SAMPLE_MAX = 24  # characters of a refused header value shown in the log, masked


def _log_refused_hop(
    hop: HopIn, from_centre: str, from_call: str, from_dialled: str, from_language: str = ""
) -> None:
    """One warning per refused partner header: the reason, the length and a short masked sample
    (the value came from the network: never logged whole, digits hidden as a caller number's)."""
    given = {
        cv.HEADER_CENTRE: from_centre, cv.HEADER_LINKEDID: from_call, cv.HEADER_DIALLED: from_dialled,
        cv.HEADER_LANGUAGE: from_language,
    }  # fmt: skip
    for header, reason in hop.refused:
        value = given.get(header, "")
        log.warning(
            "call.hop_header_refused", header=header, reason=reason, length=len(value),
            sample=mask_number(value[:HOP_SAMPLE_MAX]),
        )  # fmt: skip
