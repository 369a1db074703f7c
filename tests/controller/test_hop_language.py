"""The caller's language across the partner hop: ``X-Callrouter-Language``, read by
``callrouter-inbound`` into ``CR_FROM_LANGUAGE`` (URI-encoded, as the other partner headers:
``agi_inbound_dialled_header.txt``), checked and taken by the route, the fail-static script and
the static route of the centre the call was sent to.

A value taken: no language choice again, the channel in that language, the record's
``language.how`` is ``hop``. Anything else (too long, not one of the answering council's
languages, from no known partner centre) is ignored, never an error to the caller: the choice
is offered as for any call. The value comes from the network: never logged whole."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from emulator.agi import CallerScript, PressAfterPrompt
from emulator.classic import run_classic
from emulator.dialplan import Asterisk, place_call
from ivr import channel_vars as cv
from ivr.contract import HOP_LANGUAGE_MAX, read_hop_language, unpack
from ivr.controller import PlanHolder
from ivr.fastagi import FastAgiServer, ServerConfig
from records import facts as rf
from routing.core.language import choice_spec
from tests.controller.conftest import HARBOROUGH, Rig, fields, make_controller
from tests.controller.test_language import BOTH_PARTS, CHOICE, Facts, static_asterisk, welsh, welsh_plan
from tests.records.support import builder, checked

__all__ = ["welsh"]  # the fixture, used by name

LINKEDID = "1795970000.7"
FALLBACK = [sys.executable, "-m", "agi_scripts.route_fallback"]
GET_LANGUAGE = f"GET VARIABLE {cv.FROM_LANGUAGE}"


def welsh_spec(tmp_path: Path) -> Any:
    plan = PlanHolder.load(welsh_plan(tmp_path)).current
    return plan.choices["harborough"]


# --- the check (pure) ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("cy", ("cy", None)),
        ("en", ("en", None)),
        ("", (None, None)),  # no header: nothing carried
        ("fr", (None, "not_listed")),  # a language, but not one of this council's
        ("CY", (None, "not_listed")),
        ("cy%2Cen", (None, "not_listed")),  # URIENCODE()d comma: one value, not two
        ("cy%7C1", (None, "not_listed")),  # a pipe cannot reach CR_ROUTE
        ("..%2F..%2Fetc", (None, "not_listed")),  # no path under sounds/
        ("%20cy", (None, "not_listed")),
        ("c" * HOP_LANGUAGE_MAX, (None, "not_listed")),  # at the bound: checked, refused
        ("c" * (HOP_LANGUAGE_MAX + 1), (None, "too_long")),  # over it: refused unread
    ],
    ids=["cy", "en", "absent", "fr", "upper", "comma", "pipe", "path", "space", "at-bound", "long"],
)
def test_read_hop_language(tmp_path: Path, value: str, expected: tuple[str | None, str | None]) -> None:
    assert read_hop_language(welsh_spec(tmp_path), value) == expected


def test_a_council_with_one_language_takes_nothing(tmp_path: Path) -> None:
    """One language: no choice to skip, so nothing is carried (the call is in that language)."""
    plan = PlanHolder.load(welsh_plan(tmp_path)).current
    assert choice_spec(plan.plan.tenants["charnwood"]) is None
    assert read_hop_language(None, "en") == (None, None)


# --- the route ----------------------------------------------------------------------------------


async def hop_call(rig: Rig, language: str | None, centre: str = "harborough", **script: Any) -> Any:
    variables = {} if language is None else {cv.FROM_LANGUAGE: language}
    return await rig.call(
        "route", HARBOROUGH, centre, LINKEDID, "", dial=HARBOROUGH, variables=variables, **script
    )


async def test_the_language_sent_with_the_call_is_taken_no_choice_again(welsh: tuple[Rig, Facts]) -> None:
    """A partner centre sent the caller here in English: no choice played, the route sets
    English, the record says it came with the hop."""
    rig, facts = welsh
    call = await hop_call(rig, "en")
    assert not any(p.endswith("language-choice") for p in call.prompts)
    assert call.commands.count(GET_LANGUAGE) == 1
    assert fields(call)[cv.LANGUAGE] == "en"
    [chosen] = facts.of(rf.LanguageChosen)
    assert (chosen.language, chosen.how, chosen.key) == ("en", "hop", None)


async def test_the_record_at_the_partner_says_hop(welsh: tuple[Rig, Facts]) -> None:
    rig, facts = welsh
    await hop_call(rig, "cy")
    make = builder(grace_s=0.0)
    for fact in facts:
        make.feed_ivr(fact)
    [record] = make.flush(facts[-1].at + 1)  # no AMI here: closed as at shutdown
    assert checked(record)["language"] == {"code": "cy", "how": "hop", "key": None}
    assert checked(record)["hop_from"] == {"centre": "harborough", "id": LINKEDID}


@pytest.mark.parametrize(
    "value",
    ["fr", "c" * 200, "cy%2C%22x%7C" + "4929123456781234", "en%0A"],
    ids=["not-listed", "long", "hostile", "newline"],
)
async def test_a_bad_value_is_ignored_and_the_choice_offered(
    welsh: tuple[Rig, Facts], logs: Callable[[], list[dict[str, Any]]], value: str
) -> None:
    """Not one of the council's languages, however formed: the caller gets the choice as on
    any call (key 2: English); one warning, bounded and masked, never the value."""
    rig, facts = welsh
    call = await hop_call(rig, value, steps=[PressAfterPrompt("2")])
    assert call.prompts[:2] == [CHOICE, CHOICE]
    assert fields(call)[cv.LANGUAGE] == "en"
    [chosen] = facts.of(rf.LanguageChosen)
    assert (chosen.how, chosen.key) == ("chosen", "2")
    [warning] = [line for line in logs() if line["event"] == "call.hop_header_refused"]
    assert warning["header"] == cv.HEADER_LANGUAGE
    assert warning["length"] == len(value)
    assert len(warning["sample"]) <= 24
    assert "4929" not in str(logs())


async def test_no_partner_centre_no_language_asked_for(welsh: tuple[Rig, Facts]) -> None:
    """The variable is asked for only on a call from a known partner centre: a plain call, or
    one naming an unknown centre, pays no round trip and gets the choice."""
    rig, _facts = welsh
    for centre in ("", "elsewhere"):
        call = await hop_call(rig, "en", centre, steps=[PressAfterPrompt("1")])
        assert GET_LANGUAGE not in call.commands
        assert call.prompts[:1] == [CHOICE]
        assert fields(call)[cv.LANGUAGE] == "cy"


async def test_a_header_absent_gets_the_choice(welsh: tuple[Rig, Facts]) -> None:
    """From a partner centre that sent no language (its caller was sent on before its choice):
    the variable reads empty and the choice is offered here."""
    rig, facts = welsh
    call = await hop_call(rig, "", steps=[PressAfterPrompt("1")])
    assert call.commands.count(GET_LANGUAGE) == 1
    assert call.prompts[:1] == [CHOICE]
    assert [f.how for f in facts.of(rf.LanguageChosen)] == ["chosen"]


async def test_a_council_with_one_language_is_not_asked(welsh: tuple[Rig, Facts]) -> None:
    rig, facts = welsh
    call = await rig.call(
        "route", "01632960100", "harborough", LINKEDID, "", dial="01632960100",
        variables={cv.FROM_LANGUAGE: "cy"},
    )  # fmt: skip
    assert GET_LANGUAGE not in call.commands
    assert fields(call)[cv.LANGUAGE] == "en"
    assert [f.how for f in facts.of(rf.LanguageChosen)] == ["single"]


async def test_a_prelude_before_the_route_ends_plays_in_the_language_sent(tmp_path: Path) -> None:
    """A destination that is not a menu plays its prelude in this route, before the dialplan
    sets the route's language on the channel (here: Harborough closed, an announcement, then
    its out-of-hours service): the channel is set to the language sent first, so a Welsh
    caller hears the Welsh recording."""
    plan = welsh_plan(tmp_path)
    data = yaml.safe_load(plan.read_text())
    data["tenants"]["harborough"]["out_of_hours"] = {
        "type": "announcement", "prompt": "harborough/closed",
        "then": {"type": "external", "number": "01632 960999", "label": "Harborough out-of-hours"},
    }  # fmt: skip
    plan.write_text(yaml.safe_dump(data, default_style='"'))
    controller, clock = make_controller(plan=plan)
    clock[0] = clock[0].replace(hour=23)  # closed
    server = FastAgiServer(ServerConfig(host="127.0.0.1", port=0, call_timeout=20))
    controller.register(server)
    async with server:
        call = await hop_call(Rig(server, controller, clock), "cy")
    assert call.played == ["cy/harborough/closed"]
    assert f'SET VARIABLE {cv.LANGUAGE} "cy"' in call.commands
    assert fields(call)[cv.LANGUAGE] == "cy"


# --- not settled: not sent on -------------------------------------------------------------------


async def test_a_call_sent_straight_out_before_the_choice_carries_no_language(
    tmp_path: Path, welsh: tuple[Rig, Facts]
) -> None:
    """Dialled out with nothing of ours played (here: Harborough closed, its out-of-hours
    service): the language was never settled, so the route's language field is empty and the
    dialplan sends no X-Callrouter-Language; the far end, if it is a partner, offers its own."""
    rig, facts = welsh
    rig.clock[0] = rig.clock[0].replace(hour=23)  # closed: out of hours
    call = await rig.call("route", HARBOROUGH, dial=HARBOROUGH)
    route = unpack(call.variables[cv.ROUTE])
    assert (route[cv.ACTION], route[cv.TARGET]) == ("dial", "+441632960999")
    assert not call.prompts
    assert route[cv.LANGUAGE] == ""
    assert [f.how for f in facts.of(rf.LanguageChosen)] == ["not_offered"]


async def test_the_dialplan_sends_no_language_for_a_call_sent_straight_out(welsh: tuple[Rig, Facts]) -> None:
    """The whole dialplan: the out-of-hours dial carries the partner headers but no
    X-Callrouter-Language (the route's language field was empty, CR_LANGUAGE stays empty)."""
    rig, _facts = welsh
    rig.clock[0] = rig.clock[0].replace(hour=23)
    record = await place_call("127.0.0.1", rig.server.port, CallerScript(dial=HARBOROUGH))
    [attempt] = record.dials
    assert attempt.invite is not None
    assert attempt.invite.header(cv.HEADER_TENANT) == "harborough"
    assert attempt.invite.header(cv.HEADER_LANGUAGE) is None


async def test_the_dialplan_sends_the_language_chosen(welsh: tuple[Rig, Facts]) -> None:
    """Chosen (key 2, English), then queued where a partner team is a member
    (Local/<number>@callrouter-outbound): the Local hop's dial carries the choice (__CR_LANGUAGE)."""
    rig, _facts = welsh
    partner = "+441632960400"
    asterisk = Asterisk(queue_members={"hdc-revenues": [f"Local/{partner}@callrouter-outbound"]})
    script = CallerScript(dial=HARBOROUGH, steps=[PressAfterPrompt("2"), PressAfterPrompt("1")])
    record = await place_call("127.0.0.1", rig.server.port, script, asterisk=asterisk)
    [attempt] = record.dials
    assert attempt.caller.endswith(";2")
    assert attempt.invite is not None
    assert attempt.invite.header(cv.HEADER_LANGUAGE) == "en"


# --- fail-static: the classic script and the static route ----------------------------------------


async def test_fail_static_script_takes_the_language_sent(tmp_path: Path) -> None:
    """Controller down at the partner centre: the classic script reads the partner headers'
    variables too and plays the menu in the language sent, with no choice."""
    plan = welsh_plan(tmp_path, open_always=True)
    caller = CallerScript(
        dial=HARBOROUGH, steps=[PressAfterPrompt("2")],
        variables={cv.FROM_CENTRE: "harborough", cv.FROM_LANGUAGE: "en"},
    )  # fmt: skip
    call, code = await run_classic(FALLBACK, caller, [HARBOROUGH, str(plan)])
    assert code == 0
    assert call.played == ["en/harborough/welcome", "en/harborough/main-menu"]
    assert fields(call)[cv.LANGUAGE] == "en"


async def test_fail_static_script_plays_the_menu_in_a_language_sent_other_than_the_channels(
    tmp_path: Path,
) -> None:
    """The channel came in English (its endpoint's language) and the partner sent Welsh: the
    script sets the channel's language before the greeting, so the menu is heard in Welsh."""
    plan = welsh_plan(tmp_path, open_always=True)
    caller = CallerScript(
        dial=HARBOROUGH, language="en", steps=[PressAfterPrompt("2")],
        variables={cv.FROM_CENTRE: "harborough", cv.FROM_LANGUAGE: "cy"},
    )  # fmt: skip
    call, code = await run_classic(FALLBACK, caller, [HARBOROUGH, str(plan)])
    assert code == 0
    assert call.played == ["cy/harborough/welcome", "cy/harborough/main-menu"]
    assert fields(call)[cv.LANGUAGE] == "cy"


async def test_fail_static_script_answers_for_the_council_dialled_there(tmp_path: Path) -> None:
    """The call arrived on Charnwood's number, sent by the partner for a caller who dialled
    Harborough there (X-Callrouter-Dialled, URI-encoded): the script answers as Harborough, in
    the language sent, as the controller would."""
    plan = welsh_plan(tmp_path, open_always=True)
    caller = CallerScript(
        dial="01632960100", steps=[PressAfterPrompt("2")],
        variables={cv.FROM_CENTRE: "harborough", cv.FROM_DIALLED: "%2B441632960001", cv.FROM_LANGUAGE: "en"},
    )  # fmt: skip
    call, code = await run_classic(FALLBACK, caller, ["01632960100", str(plan)])
    assert code == 0
    assert call.played == ["en/harborough/welcome", "en/harborough/main-menu"]
    assert (fields(call)[cv.TENANT], fields(call)[cv.LANGUAGE]) == ("harborough", "en")


@pytest.mark.parametrize(
    "variables",
    [
        {cv.FROM_CENTRE: "harborough", cv.FROM_LANGUAGE: "fr"},
        {cv.FROM_CENTRE: "elsewhere", cv.FROM_LANGUAGE: "en"},
        {cv.FROM_LANGUAGE: "en"},
    ],
    ids=["not-listed", "unknown-centre", "no-centre"],
)
async def test_fail_static_script_offers_the_choice_otherwise(
    tmp_path: Path, variables: dict[str, str]
) -> None:
    plan = welsh_plan(tmp_path, open_always=True)
    caller = CallerScript(dial=HARBOROUGH, steps=[PressAfterPrompt("1")], variables=variables)
    call, code = await run_classic(FALLBACK, caller, [HARBOROUGH, str(plan)])
    assert code == 0
    assert call.played[:2] == BOTH_PARTS
    assert fields(call)[cv.LANGUAGE] == "cy"


@pytest.mark.parametrize(
    ("language", "settled", "heard"),
    [
        ("en", {}, "en"),  # sent with the call: kept
        ("fr", {}, "cy"),  # not the council's: its first language
        ('en")', {}, "cy"),  # URI-encoded by callrouter-inbound: en%22%29, no match
        ("en", {cv.CALL_LANGUAGE: "cy"}, "cy"),  # settled here first: kept
    ],
    ids=["carried", "not-listed", "hostile", "settled-here"],
)
async def test_static_route_takes_a_language_sent_with_the_call(
    tmp_path: Path, unused_tcp_port: int, language: str, settled: dict[str, str], heard: str
) -> None:
    """Controller and fail-static script both failing: the static route (generated from the
    plan) compares CR_FROM_LANGUAGE, read from the INVITE's header by callrouter-inbound, with
    each of the council's languages."""
    plan = welsh_plan(tmp_path)
    broken = tmp_path / "broken.yaml"
    broken.write_text("version: 1\n")
    record = await place_call(
        "127.0.0.1", unused_tcp_port,
        CallerScript(dial=HARBOROUGH, language="en", variables=settled),
        asterisk=static_asterisk(tmp_path, plan),
        fallback=[*FALLBACK, HARBOROUGH, str(broken)],
        headers=[(cv.HEADER_CENTRE, "harborough"), (cv.HEADER_LANGUAGE, language)],
    )  # fmt: skip
    assert record.summary().endswith("static route -> queue hdc-revenues (continue) -> answered")
    assert record.language == heard


# --- a council with one language that is not the channel's ------------------------------------


def welsh_only_plan(tmp_path: Path, *, open_always: bool = False) -> Path:
    """Harborough speaking Welsh alone, closed with an announcement before its out-of-hours
    service (a prelude in the route itself)."""
    plan = welsh_plan(tmp_path, open_always=open_always)
    data = yaml.safe_load(plan.read_text())
    harborough = data["tenants"]["harborough"]
    harborough["languages"] = ["cy"]
    harborough["out_of_hours"] = {
        "type": "announcement", "prompt": "harborough/closed",
        "then": {"type": "external", "number": "01632 960999", "label": "Harborough out-of-hours"},
    }  # fmt: skip
    plan.write_text(yaml.safe_dump(data, default_style='"'))
    return plan


async def test_a_single_language_councils_prelude_plays_in_its_language_on_an_english_channel(
    tmp_path: Path,
) -> None:
    """The channel came in English (its endpoint's language); Harborough speaks Welsh alone, so
    no choice is offered, and its announcement, played in this route before the dialplan sets
    the route's language, must be heard in Welsh: the channel is set first."""
    controller, clock = make_controller(plan=welsh_only_plan(tmp_path))
    clock[0] = clock[0].replace(hour=23)  # closed
    server = FastAgiServer(ServerConfig(host="127.0.0.1", port=0, call_timeout=20))
    controller.register(server)
    async with server:
        rig = Rig(server, controller, clock)
        call = await rig.call("route", HARBOROUGH, dial=HARBOROUGH, language="en")
        same = await rig.call("route", HARBOROUGH, dial=HARBOROUGH, language="cy")
    assert call.played == ["cy/harborough/closed"]
    assert f'SET VARIABLE {cv.LANGUAGE} "cy"' in call.commands
    assert fields(call)[cv.LANGUAGE] == "cy"
    # a channel already in the council's language costs no extra command
    assert same.played == ["cy/harborough/closed"]
    assert not any(c.startswith(f"SET VARIABLE {cv.LANGUAGE}") for c in same.commands)


async def test_fail_static_script_plays_a_single_language_councils_menu_in_its_language(
    tmp_path: Path,
) -> None:
    """The same in the fail-static script: a Welsh-only council's greeting and menu on an
    English channel are heard in Welsh."""
    plan = welsh_only_plan(tmp_path, open_always=True)
    caller = CallerScript(dial=HARBOROUGH, language="en", steps=[PressAfterPrompt("2")])
    call, code = await run_classic(FALLBACK, caller, [HARBOROUGH, str(plan)])
    assert code == 0
    assert call.played == ["cy/harborough/welcome", "cy/harborough/main-menu"]
    assert fields(call)[cv.LANGUAGE] == "cy"


async def test_fail_static_script_asks_for_no_partner_header_in_a_plan_without_partners(
    tmp_path: Path,
) -> None:
    """A centre with no partner centre in its plan cannot be sent a call by one: the script
    asks Asterisk for none of the partner variables (one round trip fewer on every call)."""
    plan = welsh_plan(tmp_path, open_always=True)
    data = yaml.safe_load(plan.read_text())
    del data["centres"]["harborough"]
    general = data["tenants"]["charnwood"]["queues"]["general"]
    general.pop("overflow")
    plan.write_text(yaml.safe_dump(data, default_style='"'))
    caller = CallerScript(dial=HARBOROUGH, steps=[PressAfterPrompt("1"), PressAfterPrompt("2")])
    call, code = await run_classic(FALLBACK, caller, [HARBOROUGH, str(plan)])
    assert code == 0
    assert not any(c.startswith("GET VARIABLE CR_FROM_") for c in call.commands)
    assert call.played[:3] == ["cy/harborough/language-choice", "en/harborough/language-choice",
                               "cy/harborough/welcome"]  # fmt: skip
