"""Welsh and English: the language choice on the wire, the rest of the call in the language
chosen (the files Asterisk would play), the record's language, and the fail-static path."""

from __future__ import annotations

import asyncio
import random
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from callrouter.simulate import caller_mix
from emulator.agi import CallerScript, HangUpDuring, Press, PressAfterPrompt, Silence
from emulator.classic import run_classic
from emulator.dialplan import DIALPLANS, Asterisk, place_call
from ivr import channel_vars as cv
from ivr.fastagi import FastAgiServer, ServerConfig
from ivr.static_dialplan import render
from records import facts as rf
from routing.plan_file import load_plan
from tests.controller.conftest import EXAMPLE, HARBOROUGH, Rig, fields, make_controller
from tests.records.support import builder, checked

CHARNWOOD = "01632960100"
FALLBACK = [sys.executable, "-m", "agi_scripts.route_fallback"]
CHOICE = "harborough/language-choice"
BOTH_PARTS = [f"cy/{CHOICE}", f"en/{CHOICE}"]


def welsh_plan(tmp_path: Path, *, open_always: bool = False, **choice: Any) -> Path:
    """The example plan with Harborough speaking Welsh first, then English."""
    data = yaml.safe_load(EXAMPLE.read_text())
    harborough = data["tenants"]["harborough"]
    harborough["languages"] = ["cy", "en"]
    if choice:
        harborough["language_choice"] = choice
    if open_always:  # the fallback script decides on the real clock
        harborough.update(
            hours={"weekdays": ["00:00-24:00"], "weekend": ["00:00-24:00"]}, bank_holidays="none"
        )
        for key in ("closures", "special_openings", "announcements"):
            harborough.pop(key, None)
    target = tmp_path / "plan.yaml"
    target.write_text(yaml.safe_dump(data, default_style='"'))
    assert load_plan(target).ok
    return target


class Facts(list[rf.IvrFact]):
    def of(self, kind: type[Any]) -> list[Any]:
        return [f for f in self if isinstance(f, kind)]


@pytest.fixture
async def welsh(tmp_path: Path) -> AsyncIterator[tuple[Rig, Facts]]:
    controller, clock = make_controller(plan=welsh_plan(tmp_path))
    facts = Facts()
    controller.facts = facts.append
    server = FastAgiServer(ServerConfig(host="127.0.0.1", port=0, call_timeout=20))
    controller.register(server)
    async with server:
        yield Rig(server, controller, clock), facts


async def whole_call(rig: Rig, *steps: Any, **kwargs: Any) -> Any:
    return await place_call(
        "127.0.0.1", rig.server.port, CallerScript(dial=HARBOROUGH, steps=steps), **kwargs
    )


# --- the choice ----------------------------------------------------------------------------------


async def test_key_1_welsh_the_whole_call_in_welsh(welsh: tuple[Rig, Facts]) -> None:
    """Welsh then English offer, key 1: the menu, the queue and the survey are in Welsh."""
    rig, facts = welsh
    in_queue: list[str] = []

    def answered(queue: str, variables: dict[str, str]) -> str:
        in_queue.append(variables.get(cv.CALL_LANGUAGE, ""))
        return "CONTINUE"

    record = await whole_call(
        rig, PressAfterPrompt("1"), PressAfterPrompt("1"), PressAfterPrompt("1"), outcome=answered
    )
    assert (
        record.summary() == "route (open) -> menu main -> queue hdc-revenues (continue) -> answered, survey 1"
    )
    route, menu, survey = record.sessions
    assert route.played == BOTH_PARTS
    assert route.language == "cy"
    # the topic announcement before the menu, the greeting and the menu: all from cy/
    assert menu.played == [f"cy/harborough/{p}" for p in ("bin-collection-change", "welcome", "main-menu")]
    assert survey.played == ["cy/harborough/survey-question", "cy/harborough/survey-thanks"]
    assert in_queue == ["cy"]  # Queue() runs with the channel in Welsh: its announcements too
    assert record.language == "cy"
    assert facts.of(rf.LanguageChosen) == [
        rf.LanguageChosen(route.uniqueid, facts[1].at, "cy", "chosen", "1")
    ]


async def test_key_2_english_for_the_rest_of_the_call(welsh: tuple[Rig, Facts]) -> None:
    """Key 2: English from the choice on, in every later route (they read agi_language back)."""
    rig, facts = welsh
    record = await whole_call(rig, PressAfterPrompt("2"), PressAfterPrompt("3"), PressAfterPrompt("87654321"))
    assert record.summary() == "route (open) -> menu main -> payment line +441632960777"
    route, menu, payment = record.sessions
    assert route.played == BOTH_PARTS
    assert menu.played == [f"en/harborough/{p}" for p in ("bin-collection-change", "welcome", "main-menu")]
    assert payment.played == ["en/harborough/enter-account-number"]
    assert [unpack_language(s) for s in record.sessions[:2]] == ["en", "en"]
    assert record.language == "en"
    [chosen] = facts.of(rf.LanguageChosen)
    assert (chosen.language, chosen.how, chosen.key) == ("en", "chosen", "2")


async def test_after_a_queue_timeout_the_failover_is_in_the_language_chosen(welsh: tuple[Rig, Facts]) -> None:
    """The overflow route reads English back from the channel: the voicemail greeting is English."""
    rig, _ = welsh
    record = await whole_call(
        rig, PressAfterPrompt("2"), PressAfterPrompt("2"), outcome=lambda queue, _vars: "TIMEOUT"
    )
    assert (
        record.summary()
        == "route (open) -> menu main -> queue hdc-waste (timeout) -> voicemail 201@harborough"
    )
    overflow = record.sessions[-1]
    assert unpack_language(overflow) == "en"
    assert record.language == "en"


def unpack_language(session: Any) -> str:
    return fields(session)[cv.LANGUAGE]


async def test_a_key_during_the_welsh_part_skips_the_english_part(welsh: tuple[Rig, Facts]) -> None:
    rig, _ = welsh
    record = await whole_call(rig, Press("2", endpos=4000), PressAfterPrompt("1"))
    route = record.sessions[0]
    assert route.played == [f"cy/{CHOICE}"]
    assert route.commands[-2:-1] == ['SET VARIABLE CHANNEL(language) "en"']
    assert record.language == "en"


async def test_an_invalid_key_asks_again_then_english(welsh: tuple[Rig, Facts]) -> None:
    rig, facts = welsh
    record = await whole_call(rig, PressAfterPrompt("7"), PressAfterPrompt("2"), PressAfterPrompt("2"))
    assert record.sessions[0].played == BOTH_PARTS * 2
    assert record.sessions[1].played[1] == "en/harborough/welcome"
    [chosen] = facts.of(rf.LanguageChosen)
    assert (chosen.language, chosen.how) == ("en", "chosen")


async def test_only_invalid_keys_take_welsh_the_default(welsh: tuple[Rig, Facts]) -> None:
    rig, facts = welsh
    record = await whole_call(rig, PressAfterPrompt("7"), PressAfterPrompt("9"), PressAfterPrompt("2"))
    assert record.sessions[1].played[1] == "cy/harborough/welcome"
    [chosen] = facts.of(rf.LanguageChosen)
    assert (chosen.language, chosen.how, chosen.key) == ("cy", "invalid", None)


async def test_silence_takes_welsh_the_default(welsh: tuple[Rig, Facts]) -> None:
    """No key at all: the first language of the list, after the tries (2 x 5 s)."""
    rig, facts = welsh
    record = await whole_call(rig, *[Silence()] * 6, PressAfterPrompt("2"))  # both parts and the wait, twice
    assert record.sessions[0].played == BOTH_PARTS * 2
    assert record.sessions[0].commands.count("WAIT FOR DIGIT 5000") == 2
    assert record.sessions[1].played[1] == "cy/harborough/welcome"
    assert record.language == "cy"
    [chosen] = facts.of(rf.LanguageChosen)
    assert (chosen.language, chosen.how) == ("cy", "timeout")


async def test_the_plan_gives_the_keys_prompt_and_default(tmp_path: Path) -> None:
    """keys 7/8, its own prompt, English on timeout: the caller pressing nothing hears English."""
    plan = welsh_plan(
        tmp_path, keys={"7": "cy", "8": "en"}, prompt="harborough/dewis-iaith", timeout_s=3, tries=1,
        on_timeout="en",
    )  # fmt: skip
    controller, _ = make_controller(plan=plan)
    server = FastAgiServer(ServerConfig(host="127.0.0.1", port=0, call_timeout=20))
    controller.register(server)
    async with server:
        rig = Rig(server, controller, [])
        silent = await whole_call(rig, *[Silence()] * 3, PressAfterPrompt("2"))
        keyed = await whole_call(rig, PressAfterPrompt("7"), PressAfterPrompt("2"))
    assert silent.sessions[0].played == ["cy/harborough/dewis-iaith", "en/harborough/dewis-iaith"]
    assert "WAIT FOR DIGIT 3000" in silent.sessions[0].commands
    assert (silent.language, keyed.language) == ("en", "cy")


async def test_a_single_language_tenant_offers_no_choice(welsh: tuple[Rig, Facts]) -> None:
    """Charnwood speaks English only: no choice prompt, straight to its menu, as before."""
    rig, facts = welsh
    record = await place_call(
        "127.0.0.1", rig.server.port, CallerScript(dial=CHARNWOOD, steps=[PressAfterPrompt("1")])
    )
    route = record.sessions[0]
    assert route.played == []
    assert not any("CHANNEL(language)" in c for c in route.commands)
    assert record.sessions[1].played[0].startswith("en/charnwood/")
    [chosen] = facts.of(rf.LanguageChosen)
    assert (chosen.language, chosen.how) == ("en", "single")


async def test_a_caller_who_hangs_up_at_the_choice(welsh: tuple[Rig, Facts]) -> None:
    rig, facts = welsh
    record = await whole_call(rig, HangUpDuring("WAIT FOR DIGIT"))
    assert record.ended == "caller hung up"
    for _ in range(200):  # the controller learns of the hangup as Asterisk closes the socket
        if facts.of(rf.IvrAbandoned):
            break
        await asyncio.sleep(0.01)
    assert [f.where for f in facts.of(rf.IvrAbandoned)] == ["language choice"]
    assert facts.of(rf.LanguageChosen) == []


async def test_the_record_holds_the_language_and_how(welsh: tuple[Rig, Facts]) -> None:
    """The facts of a real call build a schema-valid record with its language."""
    rig, facts = welsh
    await whole_call(rig, PressAfterPrompt("2"), PressAfterPrompt("7"))
    b = builder(grace_s=0.0)
    for fact in facts:
        b.feed_ivr(fact)
    [record] = [checked(r) for r in b.flush(facts[-1].at + 1)]  # no AMI here: closed as at shutdown
    assert record["language"] == {"code": "en", "how": "chosen", "key": "2"}


# --- the fail-static path ------------------------------------------------------------------------


async def test_fail_static_script_offers_the_same_choice(tmp_path: Path) -> None:
    """Controller down: the classic script offers the choice too, and its menu is in English."""
    plan = welsh_plan(tmp_path, open_always=True)
    caller = CallerScript(dial=HARBOROUGH, steps=[PressAfterPrompt("2"), PressAfterPrompt("2")])
    call, code = await run_classic(FALLBACK, caller, [HARBOROUGH, str(plan)])
    assert code == 0
    assert call.played == [*BOTH_PARTS, "en/harborough/welcome", "en/harborough/main-menu"]
    got = fields(call)
    assert (got[cv.ACTION], got[cv.TARGET], got[cv.LANGUAGE], got[cv.MODE]) == (
        "queue",
        "hdc-waste",
        "en",
        "static",
    )


async def test_controller_down_the_call_goes_on_in_the_language_chosen(
    tmp_path: Path, unused_tcp_port: int
) -> None:
    """The whole dialplan with nothing at CR_AGI: the fail-static script's choice holds to the queue."""
    plan = welsh_plan(tmp_path, open_always=True)
    record = await place_call(
        "127.0.0.1", unused_tcp_port,
        CallerScript(dial=HARBOROUGH, steps=[PressAfterPrompt("2"), PressAfterPrompt("1")]),
        fallback=[*FALLBACK, HARBOROUGH, str(plan)],
    )  # fmt: skip
    assert record.summary() == "fail-static route (open) -> queue hdc-revenues (continue) -> answered"
    assert record.language == "en"
    assert record.variables[cv.CALL_LANGUAGE] == "en"


def static_asterisk(tmp_path: Path, plan: Path) -> Asterisk:
    loaded = load_plan(plan).plan
    assert loaded is not None
    static = tmp_path / "callrouter-static.conf"
    static.write_text(render(loaded))
    return Asterisk(dialplans=(DIALPLANS / "callrouter.conf", static))


@pytest.mark.parametrize(
    ("settled", "heard"),
    [({}, "cy"), ({cv.CALL_LANGUAGE: "en"}, "en")],
    ids=["no-choice-yet-welsh", "chosen-english-kept"],
)
async def test_static_route_offers_no_choice_and_keeps_one_made(
    tmp_path: Path, unused_tcp_port: int, settled: dict[str, str], heard: str
) -> None:
    """Controller and fail-static script both failing (no plan for the script): the static route
    queues the caller at once, no choice offered: in Welsh, the first language, unless the call's
    language was settled earlier (CR_LANGUAGE), which is kept."""
    plan = welsh_plan(tmp_path)
    broken = tmp_path / "broken.yaml"
    broken.write_text("version: 1\n")
    record = await place_call(
        "127.0.0.1", unused_tcp_port,
        CallerScript(dial=HARBOROUGH, language=heard if settled else "en", variables=settled),
        asterisk=static_asterisk(tmp_path, plan),
        fallback=[*FALLBACK, HARBOROUGH, str(broken)],
    )  # fmt: skip
    assert (
        record.summary()
        == "fail-static route (failed) -> static route -> queue hdc-revenues (continue) -> answered"
    )
    assert record.language == heard


def test_simulated_callers_to_a_bilingual_council_choose_a_language_first(tmp_path: Path) -> None:
    """``callrouter simulate``: a Harborough caller presses a language key before the menu key;
    a silent one stays silent through the choice too; Charnwood's callers are asked nothing."""
    loaded = load_plan(welsh_plan(tmp_path)).plan
    assert loaded is not None
    next_caller = caller_mix(loaded, random.Random(5))
    callers = [next_caller() for _ in range(200)]
    to_harborough = [c for c in callers if c.script.dial == HARBOROUGH]
    keyed = [c for c in to_harborough if c.intent.startswith("chooses")]
    assert keyed
    assert all(c.script.steps[0] in (PressAfterPrompt("1"), PressAfterPrompt("2")) for c in keyed)
    assert {c.intent.split(",")[0] for c in keyed} == {"chooses cy", "chooses en"}
    assert any(c.intent == "stays silent" and len(c.script.steps) == 12 + 3 * 2 for c in to_harborough)
    assert not any(c.intent.startswith("chooses") for c in callers if c.script.dial == CHARNWOOD)
