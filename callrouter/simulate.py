"""``callrouter simulate``: a stream of emulated callers through the dialplan's flow; and
``callrouter simulate-crm``: a council CRM's webhook that prints what it receives.

Against a running controller (``--target HOST:PORT``) or one it starts itself. Callers are
drawn from the plan: each council number, the keys of its entry menu, callers who stay
silent or hang up in the menu, and a wrong number; queues answer, time out or are full at
random (seeded). Each call prints where it went, step by step, and the reason codes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import random
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from callrouter.logs import configure_logging
from emulator.agi import CallerScript, HangUpDuring, PressAfterPrompt, Silence, Step
from emulator.ami import FakeAmi
from emulator.ami_permissions import CALLROUTER_USER_WRITE
from emulator.centre import CallCentre, QueuePlay, queues_of, staff, step
from emulator.crm import FakeCrm
from emulator.dialplan import Asterisk, CallRecord, DialplansNotFound, find_dialplans, place_call
from emulator.pbx import Channel
from ivr.controller import Controller, PlanHolder
from ivr.fastagi import FastAgiServer, ServerConfig
from routing.core import numbers
from routing.core.language import choice_spec
from routing.core.plan import MenuDest, PaymentDest, Plan, Tenant
from routing.masking import mask_number
from routing.supervisor import shown

QUEUE_OUTCOMES = (("CONTINUE", 0.75), ("TIMEOUT", 0.15), ("FULL", 0.05), ("LEAVEEMPTY", 0.05))
WRONG_NUMBER = "01632960555"


@dataclass(frozen=True)
class Caller:
    script: CallerScript
    intent: str


def caller_mix(plan: Plan, rng: random.Random) -> Callable[[], Caller]:
    """A source of plausible callers for ``plan``."""
    choices: list[tuple[str, list[Step], str]] = []
    for tenant in plan.tenants.values():
        number = numbers.display(tenant.numbers[0]).replace(" ", "")
        menu = tenant.menus.get(tenant.entry.menu) if isinstance(tenant.entry, MenuDest) else None
        spec = choice_spec(tenant)  # a council with more than one language asks for it first
        first: list[Step] = []
        said = ""
        for key, dest in sorted(menu.options.items()) if menu else []:
            if spec is not None:
                language_key, language = rng.choice(spec.keys)
                first, said = [PressAfterPrompt(language_key)], f"chooses {language}, "
            then = (
                _reference_digits(tenant, dest.line, rng)
                if isinstance(dest, PaymentDest)
                else rng.choice("123")
            )
            steps: list[Step] = [*first, PressAfterPrompt(key), PressAfterPrompt(then)]
            choices.append((number, steps, f"{said}presses {key}"))
        silent = 12 if spec is None else 12 + (len(spec.languages) + 1) * spec.tries  # + the choice
        choices.append((number, [Silence()] * silent, "stays silent"))
        choices.append((number, [*first, HangUpDuring("WAIT FOR DIGIT")], f"{said}hangs up in the menu"))
    choices.append((WRONG_NUMBER, [], "dials a wrong number"))

    def next_caller() -> Caller:
        number, steps, intent = rng.choice(choices)
        caller = f"07700900{rng.randrange(1000):03d}"
        return Caller(CallerScript(dial=number, caller=caller, steps=steps), intent)

    return next_caller


def _reference_digits(tenant: Tenant, line: str, rng: random.Random) -> str:
    """A payment reference the caller types: valid for the line's pattern when it has one."""
    spec = tenant.payment_lines[line].reference
    return "".join(rng.choice("0123456789") for _ in range(spec.max_digits if spec else 8))


PLAYS = (("answer", 0.72), ("abandon", 0.14), ("timeout", 0.09), ("withdraw", 0.05))
DISPOSITIONS = (("resolved", 0.7), ("back_office", 0.12), ("avoidable", 0.1), ("complaint", 0.03), ("", 0.05))


def centre_plays(plan: Plan, rng: random.Random) -> Callable[[str, Channel], QueuePlay]:
    """What the pretend centre does with each caller who joins a queue: mostly answered after a
    short wait (an adviser of that queue, who gives a disposition), some abandon, time out or
    are withdrawn (seeded)."""
    reasons = [r for t in plan.tenants.values() for r in t.avoidable_contact_reasons] or ["chasing-progress"]

    def play(queue: str, _caller: Channel) -> QueuePlay:
        outcome = rng.choices([o for o, _ in PLAYS], [w for _, w in PLAYS])[0]
        kind = rng.choices([d for d, _ in DISPOSITIONS], [w for _, w in DISPOSITIONS])[0]
        detail = {"back_office": ":council-tax", "avoidable": f":{rng.choice(reasons)}"}.get(kind, "")
        adviser = 1 + rng.randrange(3)
        return QueuePlay(
            outcome,  # type: ignore[arg-type]
            interface=f"PJSIP/{queue}-{adviser}",
            adviser=f"Adviser {adviser}",
            disposition=f"{kind}{detail}" if kind else None,
            wait_s=round(rng.uniform(0.2, 3.0), 1),
        )

    return play


def queue_outcomes(rng: random.Random) -> Callable[[str, dict[str, str]], str]:
    names = [name for name, _ in QUEUE_OUTCOMES]
    weights = [weight for _, weight in QUEUE_OUTCOMES]
    return lambda _queue, _variables: rng.choices(names, weights)[0]


def line(index: int, caller: Caller, record: CallRecord) -> str:
    who = mask_number(caller.script.caller or "")
    dialled = numbers.display(numbers.try_normalise(record.dialled) or record.dialled)
    took = f"{record.duration * 1000:.0f} ms"
    return f"#{index:03d} {dialled} from {who} {caller.intent}: {record.summary()}  [{took}]"


@dataclass(frozen=True)
class Run:
    host: str
    port: int
    calls: int = 20
    rate: float = 4.0
    seed: int = 2026
    as_json: bool = False
    asterisk: Asterisk | None = None


def _json_line(index: int, caller: Caller, record: CallRecord) -> str:
    data = {"call": index, "intent": caller.intent, "tenant": record.tenant, "steps": record.steps}
    return json.dumps({**data, "ended": record.ended, "ms": round(record.duration * 1000, 1)})


async def run(options: Run, plan: Plan) -> int:
    host, port, calls, rate, as_json = (
        options.host,
        options.port,
        options.calls,
        options.rate,
        options.as_json,
    )
    rng = random.Random(options.seed)
    next_caller, outcome = caller_mix(plan, rng), queue_outcomes(rng)
    pending: list[asyncio.Task[None]] = []
    failures = 0

    async def one(index: int, caller: Caller) -> None:
        nonlocal failures
        record = await place_call(
            host, port, caller.script, outcome=outcome, number=index, asterisk=options.asterisk
        )
        failures += record.ended.endswith("fail-static route")
        print(_json_line(index, caller, record) if as_json else line(index, caller, record), flush=True)

    for index in range(1, calls + 1):
        pending.append(asyncio.create_task(one(index, next_caller())))
        await asyncio.sleep(1 / rate if rate > 0 else 0)
    await asyncio.gather(*pending)
    print(f"{calls} calls, {failures} took the fail-static route", file=sys.stderr)
    return 0 if failures == 0 else 1


async def run_with_own_controller(args: argparse.Namespace, holder: PlanHolder) -> int:
    server = FastAgiServer(ServerConfig(host="127.0.0.1", port=0))
    Controller(holder).register(server)
    async with server:
        options = Run("127.0.0.1", server.port, args.calls, args.rate, args.seed, args.json)
        return await run(options, holder.current.plan)


async def run_with_centre(options: Run, plan: Plan, port: int, seconds: float) -> int:
    """The callers, with a pretend centre's AMI on ``port`` (``callrouter simulate-centre``'s
    peak too) that reports their calls as Asterisk would and plays their queues: the
    controller connected to it sees queue joins, answers, advisers' dispositions, hang-ups."""
    secret = os.environ.get("CALLROUTER_AMI_SECRET", "demo-only")
    rng = random.Random(options.seed)
    async with FakeAmi("callrouter", secret, port=port, write=CALLROUTER_USER_WRITE) as fake:
        queues = queues_of(plan)
        staff(fake, queues)
        print(f"pretend centre: AMI on 127.0.0.1:{fake.port}, peak in {queues[0]}", flush=True)
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while fake.sessions < 1 and loop.time() < end:  # noqa: ASYNC110 - the controller's AMI login
            await asyncio.sleep(0.1)
        answered: list[str] = []
        for _ in range(8):  # the peak builds before the first caller
            step(fake, queues[0], rng, answered)
            await asyncio.sleep(0.2)
        centre = Asterisk(centre=CallCentre(fake, centre_plays(plan, rng)))
        callers = asyncio.create_task(run(dataclasses.replace(options, asterisk=centre), plan))
        while loop.time() < end or not callers.done():  # the centre stays up for the controller
            step(fake, queues[0], rng, answered)
            await asyncio.sleep(0.4)
        return await callers


def cmd_simulate(args: argparse.Namespace) -> int:
    try:
        find_dialplans()  # every call runs through them: without them, say so once, up front
    except DialplansNotFound as exc:
        print(f"callrouter: {exc}", file=sys.stderr)
        return 2
    holder = PlanHolder.load(Path(args.plan))
    if args.centre_port is not None:
        if args.target is None:
            print("callrouter: --centre-port needs --target (the controller)", file=sys.stderr)
            return 2
        host, _, port = args.target.rpartition(":")
        options = Run(host or "127.0.0.1", int(port), args.calls, args.rate, args.seed, args.json)
        return asyncio.run(
            run_with_centre(options, holder.current.plan, args.centre_port, args.centre_seconds)
        )
    if args.target is None:
        configure_logging(json=True, level="warning", stream=sys.stderr)
        return asyncio.run(run_with_own_controller(args, holder))
    host, _, port = args.target.rpartition(":")
    options = Run(host or "127.0.0.1", int(port), args.calls, args.rate, args.seed, args.json)
    return asyncio.run(run(options, holder.current.plan))


def crm_line(count: int, event: dict[str, object]) -> str:
    """One received contact event, for the terminal: the caller number masked, text bounded."""
    data = event.get("data")
    record = data if isinstance(data, dict) else {}
    caller = record.get("caller")
    number = caller.get("number") if isinstance(caller, dict) else None
    disposition = record.get("disposition")
    outcome = disposition.get("kind") if isinstance(disposition, dict) else None
    fields = [
        f"{count:>5}",
        shown(str(event.get("tenant", "")), 40),
        shown(str(event.get("id", "")), 80),
        shown(str(event.get("time", "")), 40),
        f"caller {mask_number(str(number)) if number else 'withheld'}",
        f"answered {'yes' if isinstance(record.get('answered'), dict) else 'no'}",
    ]
    if outcome:
        fields.append(f"disposition {shown(str(outcome), 40)}")
    return "  ".join(fields)


async def run_crm(port: int, secret: bytes, lifetime_s: float | None) -> int:
    crm = FakeCrm(secret)
    crm.keep_events = False
    crm.on_event = lambda event: print(crm_line(len(crm.accepted), event), flush=True)
    await crm.start(port)
    print(f"fake CRM listening on {crm.url} (signatures checked, repeats de-duplicated)", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=lifetime_s)
    finally:
        await crm.stop()
    stats = crm.stats()
    print(f"fake CRM stopped: {stats['accepted']} accepted, {stats['duplicates']} repeats, "
          f"{stats['bad_signatures']} bad signatures", flush=True)  # fmt: skip
    return 0


def cmd_simulate_crm(args: argparse.Namespace) -> int:
    secret = os.environ.get(args.secret_env, "")
    if not secret:
        print(f"callrouter: the environment variable {args.secret_env} is not set or empty", file=sys.stderr)
        return 2
    return asyncio.run(run_crm(args.port, secret.encode(), args.lifetime_s))


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("simulate", help="drive emulated callers through the controller")
    parser.add_argument("--plan", required=True)
    parser.add_argument("--target", help="HOST:PORT of a running controller (default: start one)")
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--rate", type=float, default=4.0, help="new calls per second")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--centre-port", type=int,
        help="also serve a pretend centre's AMI on this 127.0.0.1 port (the controller's --ami-port): "
        "it reports the callers' calls and plays their queues (answers, waits, dispositions)",
    )  # fmt: skip
    parser.add_argument(
        "--centre-seconds", type=float, default=120.0, help="how long the pretend centre runs"
    )
    parser.set_defaults(handler=cmd_simulate)

    crm = sub.add_parser(
        "simulate-crm", help="a council CRM's webhook on 127.0.0.1 that prints what it receives"
    )
    crm.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free port)")
    crm.add_argument(
        "--secret-env", required=True, metavar="NAME",
        help="environment variable holding the sink's secret (the plan's secret_env)",
    )  # fmt: skip
    crm.add_argument("--lifetime-s", type=float, help="stop after this many seconds (default: at SIGTERM)")
    crm.set_defaults(handler=cmd_simulate_crm)
