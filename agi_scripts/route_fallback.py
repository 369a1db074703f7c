"""Fail-static routing: a classic AGI script Asterisk runs when the controller is unreachable.

``AGI(/opt/callrouter/.venv/bin/callrouter-agi-fallback,${EXTEN})`` with the plan file in
``CALLROUTER_PLAN`` (or as the second argument). It decides with the same pure engine as the
controller, from the plan file alone: no Redis (live state unknown, so every overflow policy
takes its safe default) and no toggles. It runs any menu itself, then sets the same contract
variables, packed in ``CR_ROUTE`` with ``CR_MODE=static`` (the dialplan then skips the
controller's later routes). One process per call: see docs/performance.md for its start-up cost.
"""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime

from agi_scripts._agi import ChannelGone, ClassicChannel
from ivr import channel_vars as cv
from ivr.contract import pack, route_fields
from routing.core.decide import Call, CompiledPlan, Decision, PreludePrompt, decide, resolve_destination
from routing.core.live import NO_TOGGLES, UNKNOWN_LIVE_STATE
from routing.core.menu import Collect, Done, MenuRun, Play, Step
from routing.core.plan import Destination, MenuDest, PaymentDest, Tenant
from routing.plan_file import load_plan

ALL_KEYS = "0123456789*#"


def _perform(channel: ClassicChannel, steps: list[Step]) -> str | Done | None:
    for step in steps:
        if isinstance(step, Done):
            return step
        if isinstance(step, Play):
            key = channel.stream_file(step.prompt, ALL_KEYS)
            if key is not None:
                return key
        elif isinstance(step, Collect):
            key = channel.stream_file(step.prompt, ALL_KEYS)
            return key if key is not None else channel.wait_for_digit(step.timeout_s * 1000)
    return None


def run_menu(channel: ClassicChannel, tenant: Tenant, menu: str) -> Destination:
    """The same menu state machine as the controller's, over the classic channel."""
    run = MenuRun(tenant, menu)
    outcome = _perform(channel, run.start())
    while not isinstance(outcome, Done):
        outcome = _perform(channel, run.on_input(outcome))
    return outcome.destination


def _play(channel: ClassicChannel, prelude: tuple[PreludePrompt, ...]) -> None:
    for item in prelude:
        channel.stream_file(item.prompt, "#" if item.skippable else "")


def route(channel: ClassicChannel, plan: CompiledPlan, dialled: str, now: datetime) -> Decision:
    """Decide, run the menu if there is one, and return the final decision."""
    decision = decide(Call(dialled), plan, UNKNOWN_LIVE_STATE, NO_TOGGLES, now)
    if isinstance(decision.destination, MenuDest) and decision.tenant is not None:
        _play(channel, decision.prelude)
        tenant = plan.plan.tenants[decision.tenant]
        outcome = run_menu(channel, tenant, decision.destination.menu)
        later = resolve_destination(
            plan=plan,
            tenant=decision.tenant,
            dest=outcome,
            live=UNKNOWN_LIVE_STATE,
            toggles=NO_TOGGLES,
            now=now,
        )
        return Decision(later.destination, decision.reasons + later.reasons, decision.state, decision.tenant,
                        decision.language, decision.prompts, later.prelude)  # fmt: skip
    return decision


def route_value(plan: CompiledPlan, decision: Decision) -> str:
    """``CR_ROUTE`` in static mode; a payment line's provider number is put straight in."""
    fields = route_fields(plan, decision)
    dest = decision.destination
    if isinstance(dest, PaymentDest) and decision.tenant is not None:
        fields[cv.TARGET] = plan.plan.tenants[decision.tenant].payment_lines[dest.line].number
    fields[cv.MODE] = "static"
    return pack(fields)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    channel = ClassicChannel()
    plan_path = args[1] if len(args) > 1 else os.environ.get("CALLROUTER_PLAN", "")
    dialled = args[0] if args else channel.env.get("agi_extension", "")
    result = load_plan(plan_path)
    if result.plan is None or not result.ok:
        return 1  # the dialplan takes the static route
    plan = CompiledPlan.compile(result.plan)
    try:
        decision = route(channel, plan, dialled, datetime.now(UTC))
        if not isinstance(decision.destination, MenuDest):
            _play(channel, decision.prelude)
        channel.set_variable(cv.ROUTE, route_value(plan, decision))
    except ChannelGone:
        return 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
