"""Fail-static routing: a classic AGI script Asterisk runs when the controller is unreachable.

``AGI(/opt/callrouter/.venv/bin/callrouter-agi-fallback,${EXTEN})`` with the plan file in
``CALLROUTER_PLAN`` (or as the second argument). It decides with the same pure engine as the
controller, from the plan file alone: no Redis (live state unknown, so every overflow policy
takes its safe default) and no toggles. It runs any menu itself, then sets the same contract
variables, packed in ``CR_ROUTE`` with ``CR_MODE=static`` (the dialplan then skips the
controller's later routes). One process per call: see docs/performance.md for its start-up cost.

The dialplan bounds it (``callrouter-failstatic``: ``TIMEOUT(absolute)`` until its first command,
``AGIEXITONHANGUP=yes``, a ``T`` extension to the static route); the script keeps that bound
ahead of itself before each prompt or digit wait, as the controller does, and ends at the
``SIGHUP`` Asterisk sends when it gives up on the call.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Generator
from dataclasses import replace
from datetime import UTC, datetime
from typing import TypeVar

from agi_scripts._agi import ChannelGone, ClassicChannel, exit_on_sighup
from ivr import channel_vars as cv
from ivr.contract import pack, read_hop, read_hop_language, route_fields
from ivr.language_driver import language_script
from ivr.menu_driver import Command, Key, SetLanguage, StreamFile, menu_script, prelude_script
from ivr.step_guard import StepGuard
from routing.core.decide import Call, CompiledPlan, Decision, PreludePrompt, decide, resolve_destination
from routing.core.language import LanguageOutcome, offered, settled, unchosen
from routing.core.live import NO_TOGGLES, UNKNOWN_LIVE_STATE
from routing.core.plan import Destination, MenuDest, PaymentDest, Tenant
from routing.plan_file import load_plan

T = TypeVar("T")


def perform(channel: ClassicChannel, command: Command) -> Key:
    """Run one command of the menu driver on the classic channel; the key pressed, or None."""
    if isinstance(command, StreamFile):
        return channel.stream_file(command.prompt, command.escape_digits)
    if isinstance(command, SetLanguage):
        channel.set_variable(cv.LANGUAGE, command.language)
        return None
    return channel.wait_for_digit(command.timeout_ms)


def drive(channel: ClassicChannel, script: Generator[Command, Key, T]) -> T:
    """Run ``script`` on the channel, feeding it each command's result, until it returns."""
    result: Key = None
    while True:
        try:
            command = script.send(result)
        except StopIteration as end:
            value: T = end.value
            return value
        result = perform(channel, command)


def run_menu(
    channel: ClassicChannel, tenant: Tenant, menu: str, prelude: tuple[PreludePrompt, ...] = ()
) -> Destination:
    """Play the prelude, then run ``menu``: the controller's driver (:mod:`ivr.menu_driver`)."""
    return drive(channel, menu_script(tenant, menu, prelude)).destination


def play_prelude(channel: ClassicChannel, prelude: tuple[PreludePrompt, ...]) -> None:
    drive(channel, prelude_script(prelude))


def choose_language(
    channel: ClassicChannel, plan: CompiledPlan, decision: Decision, carried: str = ""
) -> str:
    """The controller's language choice (:mod:`ivr.language_driver`), offered here too: the
    caller chooses as if the controller were up, and hears the rest of the call in it. Not
    offered for a single-language tenant, for a call a partner centre sent with its language
    (``carried``: ``CR_FROM_LANGUAGE``, taken when it is one of the tenant's), nor before a
    call dialled straight out (then "": the language is not settled, as the controller says)."""
    if decision.tenant is None:
        return decision.language
    known = plan.choices[decision.tenant]
    taken, _refused = read_hop_language(known, carried)
    spec = offered(known, decision.destination, bool(decision.prelude))
    if spec is not None and taken is None:
        outcome: LanguageOutcome = drive(channel, language_script(spec))  # sets the channel's
        return outcome.language if settled(outcome) else ""
    language = taken
    if language is None:
        outcome = unchosen(plan.plan.tenants[decision.tenant], known)
        language = outcome.language if settled(outcome) else ""
    plays_here = bool(decision.prelude) or isinstance(decision.destination, MenuDest)
    if language and plays_here and language != channel.env.get("agi_language"):
        # a prelude or the menu plays in this script: in the council's language (the one sent
        # with the call, or a single-language council's own), not the channel's
        channel.set_variable(cv.LANGUAGE, language)
    return language


def read_hop_in(channel: ClassicChannel, plan: CompiledPlan) -> tuple[str | None, str]:
    """What a partner centre sent with the call (``callrouter-inbound`` read its headers into
    ``CR_FROM_*``), checked as the controller checks it: the council number the caller dialled
    there, when it is one of this plan's, and the language (unchecked here: :func:`choose_language`
    checks it against the tenant's). Nothing is asked beyond ``CR_FROM_CENTRE`` for a call no
    partner sent."""
    if not set(plan.plan.centres) - {plan.plan.centre}:
        return None, ""  # no partner centre in the plan: no call can come from one, ask nothing
    centre = channel.get_variable(cv.FROM_CENTRE) or ""
    if not centre:
        return None, ""
    dialled = channel.get_variable(cv.FROM_DIALLED) or ""
    hop = read_hop(plan, centre, "", dialled)
    if hop.centre is None:
        return None, ""
    return hop.dialled, channel.get_variable(cv.FROM_LANGUAGE) or ""


def route(
    channel: ClassicChannel, plan: CompiledPlan, dialled: str, now: datetime, carried: str = ""
) -> Decision:
    """Decide, offer the language choice (unless ``carried`` from a partner centre is taken),
    run the menu if there is one, and return the final decision (in the language taken)."""
    decision = decide(Call(dialled), plan, UNKNOWN_LIVE_STATE, NO_TOGGLES, now)
    decision = replace(decision, language=choose_language(channel, plan, decision, carried))
    if isinstance(decision.destination, MenuDest) and decision.tenant is not None:
        tenant = plan.plan.tenants[decision.tenant]
        outcome = run_menu(channel, tenant, decision.destination.menu, decision.prelude)
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
    channel = ClassicChannel(guard=StepGuard())
    exit_on_sighup()  # after pyst2, which installs its own SIGHUP handler
    plan_path = args[1] if len(args) > 1 else os.environ.get("CALLROUTER_PLAN", "")
    dialled = args[0] if args else channel.env.get("agi_extension", "")
    result = load_plan(plan_path)
    if result.plan is None or not result.ok:
        return 1  # the dialplan takes the static route
    plan = CompiledPlan.compile(result.plan)
    try:
        council, carried = read_hop_in(channel, plan)
        decision = route(channel, plan, council or dialled, datetime.now(UTC), carried)
        if not isinstance(decision.destination, MenuDest):
            play_prelude(channel, decision.prelude)
        channel.set_variable(cv.ROUTE, route_value(plan, decision))
    except ChannelGone:
        return 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
