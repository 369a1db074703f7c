"""One menu driver, two adapters: the controller (FastAGI, async) and the fail-static classic
script (sync) put the same commands on the wire for the same caller."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from emulator.agi import CallerScript, EmulatedCall, Press, PressAfterPrompt, Silence, Step
from emulator.classic import run_classic
from ivr.menu_driver import MenuOutcome, StreamFile, WaitForDigit, menu_script
from routing.core.decide import CompiledPlan, PreludePrompt
from routing.core.plan import QueueDest
from routing.plan_file import load_plan
from tests.controller.conftest import EXAMPLE, HARBOROUGH, Rig, fields
from tests.controller.test_fallback import SCRIPT, always_open_plan

CALLERS: dict[str, Sequence[Step]] = {
    "key after the prompt": [PressAfterPrompt("1")],
    "key during the greeting": [Press("2")],
    "silence until the tries run out": [Silence(), Silence(), Silence()],
    "invalid keys and silence": [PressAfterPrompt("9"), Silence(), PressAfterPrompt("7")],
    "sub-menu, repeat, back, payment": [
        PressAfterPrompt("4"),
        PressAfterPrompt("*"),
        PressAfterPrompt("#"),
        PressAfterPrompt("3"),
    ],
    "sub-menu timeout returns to the main menu": [PressAfterPrompt("4"), Silence(), Press("2")],
}


def menu_commands(call: EmulatedCall) -> list[str]:
    """What the menu put on the wire: every command but the contract's SET VARIABLEs."""
    return [c for c in call.commands if not c.startswith("SET VARIABLE ")]


@pytest.mark.parametrize("steps", CALLERS.values(), ids=CALLERS.keys())
async def test_controller_and_fallback_send_the_same_menu_commands(
    rig: Rig, tmp_path: Path, steps: Sequence[Step]
) -> None:
    controller = await rig.call("menu", "harborough", "main", "", dial=HARBOROUGH, steps=steps)
    fallback, code = await run_classic(
        SCRIPT, CallerScript(dial=HARBOROUGH, steps=steps), [HARBOROUGH, str(always_open_plan(tmp_path))]
    )
    assert code == 0
    assert menu_commands(controller) == menu_commands(fallback)
    assert any(
        c.startswith("WAIT FOR DIGIT ") or c.startswith("STREAM FILE ") for c in menu_commands(fallback)
    )
    assert fields(controller)["CR_ACTION"] == fields(fallback)["CR_ACTION"]


def harborough() -> CompiledPlan:
    result = load_plan(EXAMPLE)
    assert result.plan is not None
    return CompiledPlan.compile(result.plan)


def test_the_driver_yields_commands_and_returns_the_destination() -> None:
    """Prelude (skippable: # only), greeting and prompt with every key, then the wait; key 2."""
    tenant = harborough().plan.tenants["harborough"]
    script = menu_script(tenant, "main", (PreludePrompt("harborough/bin-collection-change", skippable=True),))
    sent = [next(script), script.send(None), script.send(None), script.send(None)]
    assert sent == [
        StreamFile("harborough/bin-collection-change", "#"),
        StreamFile("harborough/welcome", "0123456789*#"),
        StreamFile("harborough/main-menu", "0123456789*#"),
        WaitForDigit(5),
    ]
    with pytest.raises(StopIteration) as end:
        script.send("2")
    outcome = end.value.value
    assert isinstance(outcome, MenuOutcome)
    assert outcome.destination == QueueDest(type="queue", queue="waste")
    assert outcome.trace == ["menu main: key 2"]


def test_each_command_knows_how_long_it_may_keep_the_caller() -> None:
    """The wait's bound is its timeout; a recording's length only Asterisk knows."""
    assert WaitForDigit(5).bound_s == 5
    assert WaitForDigit(5).timeout_ms == 5000
    assert StreamFile("harborough/welcome").bound_s is None
