"""One menu driver, two adapters: the controller (FastAGI, async) and the fail-static classic
script (sync) put the same commands on the wire for the same caller."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
import yaml

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
    """What the menu put on the wire: every command but the contract's SET VARIABLEs and the
    fail-static script's reads of the partner headers (``GET VARIABLE CR_FROM_CENTRE``: the
    controller has them as route arguments); the step guard's SET AUTOHANGUP before each
    blocking command included (both adapters send it)."""
    return [c for c in call.commands if not c.startswith(("SET VARIABLE ", "GET VARIABLE CR_FROM_"))]


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
    guarded = menu_commands(fallback)
    blocking = [i for i, c in enumerate(guarded) if c.startswith(("STREAM FILE ", "WAIT FOR DIGIT "))]
    assert all(guarded[i - 1].startswith("SET AUTOHANGUP ") for i in blocking)  # each step re-armed
    assert fields(controller)["CR_ACTION"] == fields(fallback)["CR_ACTION"]


async def test_both_play_a_skippable_announcement_before_the_menu(rig: Rig, tmp_path: Path) -> None:
    """The fallback's announcement comes from its own decision; the controller's from the route."""
    plan = always_open_plan(tmp_path)
    data = yaml.safe_load(plan.read_text())
    data["tenants"]["harborough"]["announcements"] = [
        {"id": "bins", "prompt": "harborough/bin-collection-change", "start": "2000-01-01 00:00",
         "end": "2100-01-01 00:00", "skippable": True}
    ]  # fmt: skip
    plan.write_text(yaml.safe_dump(data, default_style='"'))
    steps = [Press("#"), PressAfterPrompt("2")]
    prelude = "harborough/bin-collection-change:skip"
    controller = await rig.call("menu", "harborough", "main", prelude, dial=HARBOROUGH, steps=steps)
    fallback, code = await run_classic(
        SCRIPT, CallerScript(dial=HARBOROUGH, steps=steps), [HARBOROUGH, str(plan)]
    )
    assert code == 0
    assert menu_commands(controller) == menu_commands(fallback)
    announcement = 'STREAM FILE harborough/bin-collection-change "#"'
    assert menu_commands(fallback)[:2] == ["SET AUTOHANGUP 65", announcement]
    assert fields(controller)["CR_TARGET"] == fields(fallback)["CR_TARGET"] == "hdc-waste"


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
