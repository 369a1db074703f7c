"""The fail-static classic AGI script, run as Asterisk runs it: a process per call, on pipes."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from emulator.agi import CallerScript, PressAfterPrompt
from emulator.classic import run_classic
from tests.controller.conftest import EXAMPLE, HARBOROUGH, fields

SCRIPT = [sys.executable, "-m", "agi_scripts.route_fallback"]
ROOT = Path(__file__).parents[2]


def always_open_plan(tmp_path: Path) -> Path:
    """The example plan, open around the clock, so the test does not depend on today's date."""
    data = yaml.safe_load(EXAMPLE.read_text())
    harborough = data["tenants"]["harborough"]
    harborough.update(hours={"weekdays": ["00:00-24:00"], "weekend": ["00:00-24:00"]}, bank_holidays="none")
    for key in ("closures", "special_openings", "announcements"):
        harborough.pop(key, None)
    target = tmp_path / "plan.yaml"
    target.write_text(yaml.safe_dump(data, default_style='"'))
    return target


async def test_fallback_runs_the_menu_and_sets_the_contract_in_static_mode(tmp_path: Path) -> None:
    """Without controller or Redis: same engine, same menu, CR_MODE=static, CR_ROUTE last."""
    plan = always_open_plan(tmp_path)
    caller = CallerScript(dial=HARBOROUGH, steps=[PressAfterPrompt("2")])
    call, code = await run_classic([*SCRIPT], caller, [HARBOROUGH, str(plan)])
    assert code == 0
    assert call.prompts[:2] == ["harborough/welcome", "harborough/main-menu"]
    assert (fields(call)["CR_ACTION"], fields(call)["CR_TARGET"]) == ("queue", "hdc-waste")
    assert fields(call)["CR_MODE"] == "static"
    assert call.commands[-1].startswith("SET VARIABLE CR_ROUTE ")


async def test_fallback_payment_gets_the_provider_number(tmp_path: Path) -> None:
    """Key 3 in static mode goes straight to the payment provider's number."""
    plan = always_open_plan(tmp_path)
    caller = CallerScript(dial=HARBOROUGH, steps=[PressAfterPrompt("3")])
    call, _code = await run_classic([*SCRIPT], caller, [HARBOROUGH, str(plan)])
    assert (fields(call)["CR_ACTION"], fields(call)["CR_TARGET"]) == ("payment", "+441632960777")


async def test_fallback_with_a_broken_plan_exits_non_zero(tmp_path: Path) -> None:
    """No usable plan: exit 1, no variables; the dialplan takes the static route."""
    broken = tmp_path / "plan.yaml"
    broken.write_text("version: 1\n")
    call, code = await run_classic([*SCRIPT], CallerScript(dial=HARBOROUGH), [HARBOROUGH, str(broken)])
    assert code == 1
    assert call.agistatus == "FAILURE"
    assert "CR_ROUTE" not in call.variables


async def test_fallback_writes_no_caller_number_to_stderr(tmp_path: Path) -> None:
    """pyst2 echoes the environment to stderr; the wrapper silences it."""
    import asyncio

    plan = always_open_plan(tmp_path)
    process = await asyncio.create_subprocess_exec(
        *SCRIPT,
        "01632960100",
        str(plan),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    env = "agi_request: route_fallback\nagi_callerid: 07700900123\nagi_extension: 01632960100\n\n"
    replies = "200 result=0 endpos=100\n" * 6 + "200 result=0\n" + "200 result=1\n" * 20
    _out, err = await process.communicate((env + replies).encode())
    assert b"07700900123" not in err
    assert b"agi_callerid" not in err
