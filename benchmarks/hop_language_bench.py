"""Benchmark: what the language sent with a partner's call costs the route, and what it saves.

Run ``.venv/bin/python -m benchmarks.hop_language_bench``. The controller's real ``route`` over
the example plan with Harborough in Welsh and English, a FastAGI server on loopback, and the
emulator playing Asterisk's side of each session (no Redis: live state unknown, the same on
every side). Side by side in the same run, rounds interleaved so a busy machine slows every
side alike, one session at a time, wall time per ``route`` session:

1. ``plain``: a call with no partner headers to the bilingual council; the caller presses 1
   during the first part of the choice (the shortest a choice can be on the wire);
2. ``hop, no language``: the same from a partner centre that sent no language (the controller
   asks for ``CR_FROM_LANGUAGE``, finds it empty, and offers the choice: the round trip is the
   whole added cost);
3. ``hop, language carried``: from a partner centre with ``X-Callrouter-Language: cy``: the
   round trip, and no choice.

The emulator models prompts and key presses as taking no time (``time_scale`` 0), so the
figures are the controller's and the wire's share; the caller's own time saved by (3) is the
choice's recordings and any wait for a key, which no benchmark of the CPU shows.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from benchmarks.language_bench import bilingual  # the example plan, Harborough in Welsh and English
from callrouter.logs import configure_logging
from emulator.agi import CallerScript, PressAfterPrompt, run_call
from ivr import channel_vars as cv
from ivr.controller import Controller, NoLiveState, PlanHolder
from ivr.fastagi import FastAgiServer, ServerConfig

HARBOROUGH = "01632960001"
LINKEDID = "1795970000.7"
TUESDAY_10AM = datetime(2026, 11, 24, 10, 0, tzinfo=ZoneInfo("Europe/London"))  # open


Variant = tuple[str, tuple[str, ...], CallerScript]


def variants() -> list[Variant]:
    choose = [PressAfterPrompt("1")]
    return [
        ("plain (choice offered)", (HARBOROUGH, "", "", ""), CallerScript(dial=HARBOROUGH, steps=choose)),
        (
            "hop, no language (choice offered)",
            (HARBOROUGH, "harborough", LINKEDID, ""),
            CallerScript(dial=HARBOROUGH, steps=choose),
        ),
        (
            "hop, language carried (no choice)",
            (HARBOROUGH, "harborough", LINKEDID, ""),
            CallerScript(dial=HARBOROUGH, variables={cv.FROM_LANGUAGE: "cy"}),
        ),
    ]


async def session(port: int, variant: Variant) -> tuple[float, int]:
    _, args, script = variant
    started = time.perf_counter()
    call = await run_call("127.0.0.1", port, script, "route", args=args, deadline=10)
    elapsed = time.perf_counter() - started
    assert call.variables.get(cv.ROUTE), call.outcome
    return elapsed, len(call.commands)


async def measure(rounds: int, calls: int) -> dict[str, tuple[list[float], int]]:
    with tempfile.TemporaryDirectory() as folder:
        # this centre is the example's (charnwood); the calls come from its partner, harborough
        controller = Controller(
            PlanHolder.load(bilingual(Path(folder))), NoLiveState(), clock=lambda: TUESDAY_10AM, metrics=None
        )
        server = FastAgiServer(ServerConfig(host="127.0.0.1", port=0, call_timeout=20))
        controller.register(server)
        results: dict[str, tuple[list[float], int]] = {name: ([], 0) for name, _, _ in variants()}
        async with server:
            for variant in variants():  # warm up
                await session(server.port, variant)
            for _ in range(rounds):
                for variant in variants():
                    times: list[float] = []
                    commands = 0
                    for _ in range(calls):
                        elapsed, commands = await session(server.port, variant)
                        times.append(elapsed)
                    results[variant[0]][0].append(statistics.median(times) * 1e6)
                    results[variant[0]] = (results[variant[0]][0], commands)
        return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=200)
    options = parser.parse_args()
    with open(os.devnull, "w") as sink:  # one JSON event per call at info, as serve writes it
        configure_logging(json=True, level="info", stream=sink)
        results = asyncio.run(measure(options.rounds, options.calls))
    print(f"{options.rounds} rounds x {options.calls} sessions, one at a time; median of the rounds' medians")
    print(f"{'variant':40} {'us/session':>11} {'range':>15} {'AGI commands':>13}")
    for name, (medians, commands) in results.items():
        low, high = min(medians), max(medians)
        print(f"{name:40} {statistics.median(medians):11.0f} {low:7.0f}-{high:<7.0f} {commands:13d}")


if __name__ == "__main__":
    main()
