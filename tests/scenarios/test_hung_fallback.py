"""A fail-static script that hangs never strands the caller; a healthy one is never cut off.

Whole calls through the shipped dialplans (``callrouter-failstatic``: ``AGIEXITONHANGUP=yes``,
``TIMEOUT(absolute)=4`` before the classic ``AGI()``, ``T`` to the static route), with the
fallback run as Asterisk runs it: a process on pipes, SIGHUP when Asterisk gives up on it
(:mod:`emulator.classic`). The controller is down (nothing listens on its port) unless a test
says otherwise. Times are on the emulator's clock (``CallerLine.clock``)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from emulator.agi import CallerScript, EmulatedCall, PressAfterPrompt, Silence, Step
from emulator.dialplan import FAILSTATIC, GLOBALS, Asterisk, CallRecord, place_call
from ivr.step_guard import FALLBACK_START_S, FIRST_COMMAND_S
from tests.controller.conftest import HARBOROUGH
from tests.controller.test_fallback import SCRIPT as FALLBACK
from tests.controller.test_fallback import always_open_plan
from tests.scenarios.test_hung_controller import EveryPrompt, SilentController
from tests.support.redis_server import free_port

STATIC = "static route -> queue hdc-revenues (continue) -> answered"  # callrouter-static.conf
HUNG = f"{FAILSTATIC} (timed out) -> {STATIC}"

# A fallback that hangs before its first command, and one that also ignores SIGHUP (Asterisk
# must not depend on the script obeying it).
SLEEPS = "#!/bin/sh\nexec sleep 120\n"
SLEEPS_THROUGH_SIGHUP = "#!/bin/sh\ntrap '' HUP\nexec sleep 120\n"
# The real fallback with a deadlock injected once the menu's first WAIT FOR DIGIT has answered.
FREEZES_MID_MENU = """\
import time
from agi_scripts import _agi, route_fallback
wait = _agi.ClassicChannel.wait_for_digit
def frozen(self, timeout_ms):
    wait(self, timeout_ms)
    while True:
        time.sleep(3600)
_agi.ClassicChannel.wait_for_digit = frozen
raise SystemExit(route_fallback.main())
"""
# The real fallback without its step guard: the control for the long healthy menu.
UNGUARDED = """\
from agi_scripts import route_fallback
route_fallback.StepGuard = lambda: None
raise SystemExit(route_fallback.main())
"""


def fallback(tmp_path: Path, name: str, text: str) -> tuple[Asterisk, list[str]]:
    """The emulated Asterisk with ``CR_FALLBACK`` set to a script written in ``tmp_path``, and
    the command that runs it."""
    path = tmp_path / name
    path.write_text(text)
    command = ["/bin/sh" if text.startswith("#!/bin/sh") else sys.executable, str(path)]
    return Asterisk(globals={**GLOBALS, "CR_FALLBACK": str(path)}), command


async def call(
    steps: Sequence[Step] = (),
    *,
    asterisk: Asterisk | None = None,
    command: Sequence[str] = FALLBACK,
    port: int | None = None,
    time_scale: float = 0.0,
    prompts: EveryPrompt | None = None,
) -> CallRecord:
    script = CallerScript(dial=HARBOROUGH, steps=steps, prompts=prompts)
    return await place_call(
        "127.0.0.1", port or free_port(), script, time_scale=time_scale, asterisk=asterisk,
        fallback=command, deadline=60,
    )  # fmt: skip


def the_fallback(record: CallRecord) -> EmulatedCall:
    """The classic AGI() session (the last one: the controller's, if any, came first)."""
    return record.sessions[-1]


def after_hop_reads(session: EmulatedCall) -> list[str]:
    """The script's commands after its reads of the partner headers' variables (``GET VARIABLE
    CR_FROM_CENTRE``: answered at once, within the start-up bound, before any blocking step)."""
    return [c for c in session.commands if not c.startswith("GET VARIABLE CR_FROM_")]


@pytest.mark.parametrize(("name", "text", "left_running"), [
    ("sleeps.sh", SLEEPS, 0), ("sleeps-through-sighup.sh", SLEEPS_THROUGH_SIGHUP, 1),
])  # fmt: skip
async def test_fallback_hung_before_its_first_command_gives_the_static_route_within_its_bound(
    tmp_path: Path, name: str, text: str, left_running: int
) -> None:
    asterisk, command = fallback(tmp_path, name, text)
    record = await call(asterisk=asterisk, command=command, time_scale=0.25)
    assert record.summary() == HUNG
    session = the_fallback(record)
    assert session.commands == []
    assert session.goes_to_t
    assert session.sighups == 2  # at the hangup, and after run_agi()'s loop
    assert session.replies == []  # a classic script never gets a HANGUP line
    assert record.static_at is not None
    assert FALLBACK_START_S <= record.static_at - session.started_at <= FALLBACK_START_S + 1
    assert record.orphans == left_running  # AGI() returned all the same


async def test_fallback_hung_mid_menu_gives_the_static_route_within_the_step_bound_plus_5_s(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CALLROUTER_PLAN", str(always_open_plan(tmp_path)))
    asterisk, command = fallback(tmp_path, "freezes.py", FREEZES_MID_MENU)
    record = await call([Silence()], asterisk=asterisk, command=command)
    assert record.summary() == HUNG
    session = the_fallback(record)
    wait = session.commands.index("WAIT FOR DIGIT 5000")
    assert session.commands[wait - 1] == "SET AUTOHANGUP 10"  # the step's 5 s + the 5 s margin
    assert after_hop_reads(session)[0] == "SET AUTOHANGUP 65"  # re-armed before its first step
    assert record.static_at is not None
    assert record.static_at - session.command_times[wait] <= 5 + 5 + 0.5
    assert record.orphans == 0  # the real script ends at Asterisk's SIGHUP


async def test_healthy_fallback_with_a_long_menu_is_never_cut_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """50 s prompts, silence once (the menu again), then key 2: minutes on the clock."""
    monkeypatch.setenv("CALLROUTER_PLAN", str(always_open_plan(tmp_path)))
    steps = [Silence(), PressAfterPrompt("2")]
    record = await call(steps, prompts=EveryPrompt(50))
    assert record.summary() == f"{FAILSTATIC} (open) -> queue hdc-waste (continue) -> answered"
    assert not any(session.timed_out for session in record.sessions)
    assert record.line.clock.now() > 100
    assert record.static_at is None


async def test_without_its_step_guard_the_same_fallback_would_be_cut_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The control: a fallback that does not re-arm the timer loses the menu at 4 s."""
    monkeypatch.setenv("CALLROUTER_PLAN", str(always_open_plan(tmp_path)))
    asterisk, command = fallback(tmp_path, "unguarded.py", UNGUARDED)
    record = await call([Silence(), PressAfterPrompt("2")], asterisk=asterisk, command=command,
                        prompts=EveryPrompt(50))  # fmt: skip
    assert record.summary() == HUNG
    assert after_hop_reads(the_fallback(record))[0].startswith("STREAM FILE ")


async def test_controller_and_fallback_both_hung_still_give_the_static_route(tmp_path: Path) -> None:
    """The whole chain is bounded: 5 s for the controller, then 4 s for the fallback."""
    silent = SilentController()
    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    asterisk, command = fallback(tmp_path, "sleeps.sh", SLEEPS)
    try:
        port = server.sockets[0].getsockname()[1]
        record = await call(asterisk=asterisk, command=command, port=port, time_scale=0.25)
    finally:
        server.close()
    assert record.summary() == HUNG
    assert record.sessions[0].goes_to_t
    assert the_fallback(record).goes_to_t
    assert record.static_at is not None
    assert record.static_at <= FIRST_COMMAND_S + FALLBACK_START_S + 1
