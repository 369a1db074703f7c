"""A pretend contact centre for demonstrations: Asterisk's AMI side, with a peak building up.

``callrouter simulate-centre --plan PLAN --port 5038`` serves the fake AMI server on loopback
with three advisers in every queue of the plan. Callers keep joining one queue (by default
the first queue of the first council) faster than the advisers answer, so its waiting count
and longest wait climb until the overflow policy starts; the other queues stay quiet. It stops
by itself after ``--seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
from pathlib import Path

from emulator.ami import FakeAmi
from ivr.controller import PlanHolder
from routing.core.plan import Plan

ADVISERS = 3


def queues_of(plan: Plan) -> list[str]:
    """Every Asterisk queue the plan names, in plan order, once each."""
    found = [q.asterisk_queue for t in plan.tenants.values() for q in t.queues.values()]
    return list(dict.fromkeys(found))


def staff(fake: FakeAmi, queues: list[str]) -> None:
    for queue in queues:
        for n in range(1, ADVISERS + 1):
            fake.add_member(queue, f"PJSIP/{queue}-{n}", f"Adviser {n}", membership="static", send=False)


def step(fake: FakeAmi, queue: str, rng: random.Random, answered: list[str]) -> None:
    """One beat: a caller joins; now and then an adviser answers the longest waiter."""
    fake.caller_joins(queue, name=rng.choice(["Jane Resident", "Zoë Brontë", "Sam Patel", "Ade Okafor"]))
    waiting = fake.model.queue(queue).waiting
    if waiting and rng.random() < 0.35:
        caller = waiting[0].channel.uniqueid
        fake.answer(caller, f"PJSIP/{queue}-{1 + len(answered) % ADVISERS}")
        answered.append(caller)
    if len(answered) > ADVISERS:
        fake.complete(answered.pop(0))


async def run(
    plan: Plan, port: int, seconds: float, *, beat_s: float, peak_queue: str | None, secret: str
) -> None:
    queues = queues_of(plan)
    busy = peak_queue or queues[0]
    rng = random.Random(2026)
    answered: list[str] = []
    async with FakeAmi("callrouter", secret, port=port) as fake:
        staff(fake, queues)
        print(f"pretend centre: AMI on 127.0.0.1:{fake.port}, peak in {busy}", flush=True)
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while loop.time() < end:
            step(fake, busy, rng, answered)
            await asyncio.sleep(beat_s)


def cmd_simulate_centre(args: argparse.Namespace) -> int:
    plan = PlanHolder.load(Path(args.plan)).current.plan
    secret = os.environ.get("CALLROUTER_AMI_SECRET", "demo-only")
    asyncio.run(run(plan, args.port, args.seconds, beat_s=args.beat, peak_queue=args.queue, secret=secret))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "simulate-centre", help="a pretend Asterisk (AMI) with a peak, for demonstrations"
    )
    parser.add_argument("--plan", required=True)
    parser.add_argument("--port", type=int, default=5038)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--beat", type=float, default=0.4, help="seconds between callers joining")
    parser.add_argument("--queue", help="the Asterisk queue that peaks (default: the plan's first)")
    parser.set_defaults(handler=cmd_simulate_centre)
