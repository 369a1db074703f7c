"""The dialplans and the controller agree: routes, variables, actions, queues, static routes."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from ivr import channel_vars as cv
from ivr.controller import Controller, PlanHolder
from ivr.static_dialplan import render
from ivr.step_guard import FALLBACK_START_S, FIRST_COMMAND_S
from routing.plan_file import load_plan

DIALPLANS = Path(__file__).parents[2] / "dialplans"
EXAMPLE = Path(__file__).parents[2] / "examples" / "plan.yaml"
CONTEXT = re.compile(r"^\[([A-Za-z0-9_-]+)\](\((!|[A-Za-z0-9_,-]+)\))?$")
LINE = re.compile(r"^(exten|same)\s*=>\s*(.+)$")
SETTING = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*(\(.*\))?\s*=\s*.*$")


def parse_conf(path: Path) -> dict[str, list[str]]:
    """Asterisk config: ``[context]`` (templates allowed) then lines; ``;`` starts a comment.
    Fails on any line that is neither, so a typo does not pass silently."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        text = raw.split(";", 1)[0].strip() if not raw.lstrip().startswith(("exten", "same")) else raw.strip()
        if not text or text.startswith(";"):
            continue
        header = CONTEXT.match(text)
        if header:
            current = sections.setdefault(header.group(1), [])
        elif current is not None and (LINE.match(text) or SETTING.match(text)):
            current.append(text)
        else:
            raise AssertionError(f"{path.name}:{number}: cannot parse {raw!r}")
    return sections


def dialplan_text() -> str:
    return "\n".join(line for lines in parse_conf(DIALPLANS / "callrouter.conf").values() for line in lines)


def test_config_files_parse() -> None:
    """Every shipped config file parses and has the expected sections."""
    assert {
        "callrouter-inbound",
        "callrouter-dispatch",
        "callrouter-failstatic",
        "callrouter-outbound",
        "callrouter-headers",
    } <= set(parse_conf(DIALPLANS / "callrouter.conf"))
    assert set(parse_conf(DIALPLANS / "callrouter-static.conf")) == {"callrouter-static"}
    assert {"general", "callrouter"} <= set(parse_conf(DIALPLANS / "manager.conf.sample"))
    assert "hdc-revenues" in parse_conf(DIALPLANS / "queues.conf.sample")


def test_every_agi_route_in_the_dialplan_is_served() -> None:
    """Each Gosub(callrouter-agi,s,1(<route>,...)) names a route the controller registers, and
    all are used; the controller is called nowhere else."""
    used = set(re.findall(r"Gosub\(callrouter-agi,s,1\(([a-z_]+)", dialplan_text()))
    served = set(Controller(PlanHolder.load(EXAMPLE)).routes())
    assert used == served
    calls = [line for line in dialplan_text().splitlines() if "AGI(${CR_AGI}" in line]
    assert calls == [" same => n,AGI(${CR_AGI}/${ARG1},${ARG2},${ARG3},${ARG4},${ARG5})".strip()]


def test_every_controller_agi_is_bounded_and_t_takes_the_fail_static_path() -> None:
    """callrouter-agi: AGIEXITONHANGUP=yes and TIMEOUT(absolute)=5 (the controller's budget
    before its first command) before AGI(), cleared after it and in T, which returns to the
    caller's own CR_ROUTE check: the path of a controller that is down
    (agi_hung_controller_timeout.txt, variant b). A caller already waiting in a queue keeps
    their place on that path (callrouter-wait-static)."""
    agi = parse_conf(DIALPLANS / "callrouter.conf")["callrouter-agi"]
    steps = [line.split(",", 1)[1].split(",", 1)[1] if line.startswith("exten") else line.split(",", 1)[1]
             for line in agi]  # fmt: skip
    assert steps == [
        "Set(CR_ROUTE=)",
        "Set(AGIEXITONHANGUP=yes)",
        f"Set(TIMEOUT(absolute)={FIRST_COMMAND_S})",
        "AGI(${CR_AGI}/${ARG1},${ARG2},${ARG3},${ARG4},${ARG5})",
        "Set(TIMEOUT(absolute)=0)",
        "Return()",
        "Set(TIMEOUT(absolute)=0)",
        "Return()",
    ]
    assert agi[6].startswith("exten => T,1,")
    lines = dialplan_text().splitlines()
    for i, line in enumerate(lines):
        if "Gosub(callrouter-agi," in line and "(survey," not in line:
            assert re.search(
                r'GotoIf\(\$\["\$\{CR_ROUTE\}" = ""\]\?callrouter-(failstatic|static|wait-static),',
                lines[i + 1],
            ), line


def test_the_fail_static_script_is_bounded_and_t_takes_the_static_route() -> None:
    """callrouter-failstatic bounds the classic AGI() as callrouter-agi bounds the controller's:
    AGIEXITONHANGUP=yes and TIMEOUT(absolute)=FALLBACK_START_S before it, cleared after it; T
    clears the timer and takes the static route of the dialled number (in T, ${EXTEN} is T)."""
    failstatic = parse_conf(DIALPLANS / "callrouter.conf")["callrouter-failstatic"]
    steps = [line.split(",", 2)[2] if line.startswith("exten") else line.split(",", 1)[1]
             for line in failstatic]  # fmt: skip
    assert steps == [
        "NoOp(callrouter: fail-static for ${EXTEN}, AGISTATUS=${AGISTATUS})",
        "Set(CR_ROUTE=)",
        "Set(AGIEXITONHANGUP=yes)",
        f"Set(TIMEOUT(absolute)={FALLBACK_START_S})",
        "AGI(${CR_FALLBACK},${EXTEN})",
        "Set(TIMEOUT(absolute)=0)",
        'GotoIf($["${CR_ROUTE}" = ""]?callrouter-static,${EXTEN},1)',
        "Gosub(callrouter-unpack,s,1)",
        "Goto(callrouter-dispatch,${CR_ACTION},1)",
        "Set(TIMEOUT(absolute)=0)",
        "Goto(callrouter-static,${CR_DIALLED},1)",
    ]
    assert failstatic[9].startswith("exten => T,1,")


def test_fallback_entry_point_is_named_the_same_everywhere() -> None:
    """CR_FALLBACK is the installed console script, in the dialplan and in its README."""
    scripts = tomllib.loads((DIALPLANS.parent / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["callrouter-agi-fallback"] == "agi_scripts.route_fallback:main"
    setting = "CR_FALLBACK=/opt/callrouter/.venv/bin/callrouter-agi-fallback"
    for doc in ("callrouter.conf", "README.md"):
        found = re.findall(r"CR_FALLBACK=\S+", (DIALPLANS / doc).read_text())
        assert found == [setting], doc


def test_every_variable_the_dialplan_uses_is_named_in_channel_vars() -> None:
    """No CR_ variable is spelt only in the dialplan."""
    names = {getattr(cv, n) for n in dir(cv) if n.isupper() and isinstance(getattr(cv, n), str)}
    used = set(re.findall(r"\b(CR_[A-Z_]+)\b", dialplan_text()))
    globals_ = {"CR_AGI", "CR_FALLBACK", "CR_TRUNK", "CR_PAYMENT_TRUNK", "CR_DIALLED"}
    assert used - globals_ <= names
    assert {cv.ROUTE, cv.ACTION, cv.TARGET, cv.TENANT, cv.QUEUE, cv.PRELUDE, cv.SURVEY, cv.MODE} <= used


def test_every_action_has_a_dispatch_extension() -> None:
    """callrouter-dispatch has an extension for every CR_ACTION the controller can set."""
    dispatch = parse_conf(DIALPLANS / "callrouter.conf")["callrouter-dispatch"]
    extensions = {m.group(1) for line in dispatch if (m := re.match(r"exten\s*=>\s*([a-z]+),1,", line))}
    assert set(cv.ACTIONS) <= extensions


def test_status_is_cleared_before_every_agi_call() -> None:
    """A CR_ROUTE left by an earlier step must never be trusted."""
    for context, lines in parse_conf(DIALPLANS / "callrouter.conf").items():
        for i, line in enumerate(lines):
            if "AGI(" in line:
                extension = lines[: i + 1]
                start = max(j for j, text in enumerate(extension) if text.startswith("exten"))
                assert any("Set(CR_ROUTE=)" in text for text in extension[start:i]), (context, line)


def test_every_queue_of_the_example_plan_is_in_queues_conf() -> None:
    """The sample queues.conf defines each asterisk_queue the example plan names."""
    plan = load_plan(EXAMPLE).plan
    assert plan is not None
    named = {q.asterisk_queue for t in plan.tenants.values() for q in t.queues.values()}
    assert named <= set(parse_conf(DIALPLANS / "queues.conf.sample"))


def test_static_routes_are_generated_from_the_example_plan() -> None:
    """The committed callrouter-static.conf is what the plan generates today."""
    plan = load_plan(EXAMPLE).plan
    assert plan is not None
    assert (DIALPLANS / "callrouter-static.conf").read_text() == render(plan)


def test_manager_conf_never_grants_dtmf() -> None:
    """The controller's AMI user reads no DTMF class and filters DTMF events. Its classes are
    those of the capture user that received no DTMF events (README 6.5): user for the
    adviser's CallDisposition UserEvent."""
    user = parse_conf(DIALPLANS / "manager.conf.sample")["callrouter"]
    read = next(line for line in user if line.startswith("read"))
    classes = {c.strip() for c in read.partition("=")[2].partition(";")[0].split(",")}
    assert classes == {"system", "call", "agent", "user"}
    assert any(line.startswith("eventfilter") and "DTMF" in line for line in user)


@pytest.mark.parametrize("name", ["callrouter.conf", "manager.conf.sample", "queues.conf.sample"])
def test_config_files_are_ascii_with_unix_line_ends(name: str) -> None:
    """Asterisk reads these; keep them plain."""
    data = (DIALPLANS / name).read_bytes()
    assert b"\r" not in data
    data.decode("ascii")
