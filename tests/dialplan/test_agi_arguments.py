"""AGI() arguments as Asterisk makes them: the application's data is substituted, then split
on every comma outside quotes, parentheses and brackets (``AST_STANDARD_APP_ARGS`` in
``agi_exec_full``), so a comma inside a variable's value makes more ``agi_arg_N`` lines
(README 1.2: ``AGI(agi://127.0.0.1:4573/suite?tenant=harborough,arg1,arg2)``).

The dialplan passes the menu's prelude (every announcement to play before the menu) through
``Gosub(callrouter-agi,...)`` and ``AGI()``: it must reach the ``menu`` route whole."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from emulator.agi import CallerScript, PressAfterPrompt
from emulator.dialplan import DIALPLANS, GLOBALS, place_call
from emulator.extensions import Dialplan, split_args
from emulator.pbx import Channel, Pbx
from ivr import channel_vars as cv
from ivr.contract import decode_prelude, encode_prelude
from ivr.fastagi import FastAgiServer, ServerConfig
from routing.core.decide import PreludePrompt
from routing.plan_file import load_plan
from tests.controller.conftest import EXAMPLE, HARBOROUGH, make_controller

PRELUDE = (
    PreludePrompt("harborough/storm-warning", False),
    PreludePrompt("harborough/bin-collection-change", True),
)


class RecordingAgi:
    """An AGI runner that keeps what each AGI() received and ends it like a closed server."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str]]] = []

    async def __call__(self, pbx: Pbx, channel: Channel, url: str, args: list[str]) -> None:
        self.calls.append((url, args))
        channel.set("AGISTATUS", "SUCCESS")


async def agi_arguments(conf: str, context: str, variables: dict[str, str]) -> list[tuple[str, list[str]]]:
    agi = RecordingAgi()
    globals_ = {**GLOBALS, "CR_AGI": "agi://127.0.0.1:4573"}
    pbx = Pbx(Dialplan.parse(conf), globals_, agi=agi, stop_contexts=("callrouter-failstatic",))
    channel = pbx.new_channel("PJSIP/sipp-00000001")
    for name, value in variables.items():
        channel.set(name, value)
    await pbx.run(channel, context, "s")
    return agi.calls


async def test_a_comma_in_a_value_makes_another_agi_argument() -> None:
    """As Asterisk: substitution first, then the split; quotes keep a comma in one argument."""
    conf = '[t]\nexten => s,1,AGI(agi://h/menu,${A},${B})\n same => n,AGI(agi://h/menu,"${B}")\n'
    calls = await agi_arguments(conf, "t", {"A": "harborough", "B": "x:,y:skip"})
    assert calls == [
        ("agi://h/menu", ["harborough", "x:", "y:skip"]),
        ("agi://h/menu", ["x:,y:skip"]),
    ]


@pytest.mark.parametrize(
    ("data", "standard", "raw"),
    [
        ("a,(b,c),d", ["a", "(b,c)", "d"], ["a", "(b,c)", "d"]),
        ("a,[b,c],d", ["a", "[b,c]", "d"], ["a", "[b,c]", "d"]),  # brackets nest too
        ('a,"b,c",d', ["a", "b,c", "d"], ["a", '"b,c"', "d"]),
        ("a\\,b,c", ["a,b", "c"], ["a\\,b", "c"]),  # RAW keeps the backslash, still protects
        ("a,,b,", ["a", "", "b", ""], ["a", "", "b", ""]),  # a trailing comma: one more, empty
    ],
)
def test_split_like_ast_app_separate_args(data: str, standard: list[str], raw: list[str]) -> None:
    assert split_args(data) == standard
    assert split_args(data, keep_quotes=True) == raw


def test_the_prelude_holds_no_character_asterisk_splits_on() -> None:
    """Gosub (RAW args), AGI (standard args) and CUT on "|" leave the encoded prelude whole."""
    encoded = encode_prelude(PRELUDE)
    assert not set(encoded) & set(',|()[]"\\$')
    assert split_args(encoded) == split_args(encoded, keep_quotes=True) == [encoded]
    assert decode_prelude(encoded) == PRELUDE


@pytest.mark.parametrize("prompt", ["harborough/a+b", "harborough/a,b", "harborough/a:b"])
def test_a_prompt_name_holding_a_separator_is_refused_by_the_plan(prompt: str, tmp_path: Path) -> None:
    """So an announcement never splits the encoded prelude."""
    data = yaml.safe_load(EXAMPLE.read_text())
    data["tenants"]["harborough"]["announcements"][0]["prompt"] = prompt
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(data))
    result = load_plan(path)
    assert result.plan is None
    assert any("is not a valid prompt name" in str(problem) for problem in result.problems)


async def test_the_menu_route_gets_the_whole_prelude_through_the_dialplan() -> None:
    """callrouter-dispatch,menu: Gosub(callrouter-agi,s,1(menu,tenant,menu,prelude)), then
    AGI(${CR_AGI}/${ARG1},${ARG2},${ARG3},${ARG4},${ARG5}): agi_arg_3 is the prelude, whole."""
    conf = "\n".join((DIALPLANS / name).read_text() for name in ("callrouter.conf", "callrouter-static.conf"))
    conf += "\n[t]\nexten => s,1,Goto(callrouter-dispatch,menu,1)\n"
    variables = {
        "CR_DIALLED": HARBOROUGH,
        cv.TENANT: "harborough",
        cv.TARGET: "main",
        cv.PRELUDE: encode_prelude(PRELUDE),
    }
    calls = await agi_arguments(conf, "t", variables)
    # every AGI() of callrouter-agi sends four arguments, the ones not passed empty
    assert calls[0] == ("agi://127.0.0.1:4573/menu", ["harborough", "main", encode_prelude(PRELUDE), ""])


def plan_with_two_announcements(tmp_path: Path) -> Path:
    data = yaml.safe_load(EXAMPLE.read_text())
    data["tenants"]["harborough"]["announcements"] = [
        {"id": item.prompt.rpartition("/")[2], "prompt": item.prompt, "start": "2026-11-01 00:00",
         "end": "2026-12-19 00:00", "skippable": item.skippable}
        for item in PRELUDE
    ]  # fmt: skip
    target = tmp_path / "plan.yaml"
    target.write_text(yaml.safe_dump(data, default_style='"'))
    return target


async def test_a_caller_hears_every_announcement_before_the_menu(tmp_path: Path) -> None:
    """A whole call: the route decides on a menu with two announcements; the menu session plays
    both, in order, before the greeting (with the comma-joined prelude it played the first only)."""
    controller, _clock = make_controller(plan=plan_with_two_announcements(tmp_path))
    server = FastAgiServer(ServerConfig(host="127.0.0.1", port=0, call_timeout=20))
    controller.register(server)
    async with server:
        script = CallerScript(dial=HARBOROUGH, steps=[PressAfterPrompt("2")])
        record = await place_call("127.0.0.1", server.port, script)
    assert record.summary().startswith("route (open) -> menu main -> queue hdc-waste")
    menu = record.sessions[1]
    assert menu.prompts[:3] == [*(item.prompt for item in PRELUDE), "harborough/welcome"]
