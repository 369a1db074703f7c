"""The step guard: Asterisk's absolute timeout re-armed before every blocking command."""

from __future__ import annotations

import math

from emulator.agi import CallerScript, PressAfterPrompt, run_call
from ivr.fastagi import AgiChannel, AgiRequest
from ivr.step_guard import StepGuard
from tests.fastagi.conftest import StartServer


def test_each_step_gets_its_own_bound_plus_the_margin() -> None:
    guard = StepGuard(margin_s=5, prompt_s=30)
    assert guard.autohangup(guard.stream_file()) == "35"
    assert guard.autohangup(guard.wait_for_digit(5000)) == "10"
    # prompt, first digit within 6 s, then 8 more each within 6 s
    assert guard.get_data(6000, 9) == 30 + 6 + 8 * 6
    assert guard.autohangup(guard.get_data(6000, 9)) == "89"
    assert guard.get_data(0, 2) == 30 + 6 + 2  # Asterisk's defaults: 6 s first, 2 s next
    assert guard.autohangup(guard.wait_for_digit(1500)) == "7"  # rounded up
    assert math.isinf(guard.wait_for_digit(-1))
    assert guard.autohangup(guard.wait_for_digit(-1)) == "0"  # no bound: disarmed


async def test_blocking_commands_are_preceded_by_set_autohangup(start_server: StartServer) -> None:
    """The emulator arms its timer from each SET AUTOHANGUP: a healthy session that takes far
    longer than the dialplan's 5 s (a 30 s prompt, an 8 s digit wait) is never cut off."""
    server = await start_server(step_guard=StepGuard(margin_s=5, prompt_s=40))

    @server.route("route")
    async def route(channel: AgiChannel, request: AgiRequest) -> None:
        await channel.stream_file("long-announcement")
        await channel.wait_for_digit(8000)
        digits, _ = await channel.get_data("account", 6000, 9)
        await channel.set_variable("REF", digits)

    script = CallerScript(
        answered=True,
        absolute_timeout=5,
        agiexitonhangup=True,
        prompts={"long-announcement": 30 * 8000, "account": 3 * 8000},
        steps=[PressAfterPrompt(""), PressAfterPrompt("1234")],
    )
    call = await run_call("127.0.0.1", server.port, script)
    assert call.commands == [
        "SET AUTOHANGUP 45",
        'STREAM FILE long-announcement ""',
        "SET AUTOHANGUP 13",
        "WAIT FOR DIGIT 8000",
        "SET AUTOHANGUP 99",
        "GET DATA account 6000 9",
        'SET VARIABLE REF "1234"',
    ]
    assert call.replies[0] == "200 result=0"
    assert not call.timed_out
    assert call.agistatus == "SUCCESS"
    assert call.variables["REF"] == "1234"
    assert call.ended_at > 30 + 8 + 3 + 6  # far beyond the first 5 s, on the emulator's clock
