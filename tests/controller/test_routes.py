"""Each controller route, played by the Asterisk emulator over real TCP."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from emulator.agi import (
    CallerScript,
    HangUpAfter,
    HangUpDuring,
    Press,
    PressAfterPrompt,
    Silence,
    run_call,
)
from ivr.controller import PlanHolder
from ivr.fastagi import FastAgiServer, ServerConfig
from routing.core.decide import CompiledPlan
from routing.core.live import LiveState, Toggles
from tests.controller.conftest import EXAMPLE, HARBOROUGH, LONDON, Rig, fields, make_controller


async def test_route_open_hours_goes_to_the_menu_with_the_councils_voice(rig: Rig) -> None:
    """Open: the dialled council's tenant, prompt set and language; a menu with its prelude."""
    call = await rig.call("route", HARBOROUGH, dial=HARBOROUGH)
    assert call.agistatus == "SUCCESS"
    assert {
        k: fields(call)[k] for k in ("CR_TENANT", "CR_PROMPTS", "CHANNEL(language)", "CR_ACTION", "CR_TARGET")
    } == {
        "CR_TENANT": "harborough",
        "CR_PROMPTS": "harborough",
        "CHANNEL(language)": "en",
        "CR_ACTION": "menu",
        "CR_TARGET": "main",
    }
    assert fields(call)["CR_PRELUDE"] == "harborough/bin-collection-change:skip"
    assert fields(call)["CR_REASON"] == "open"
    assert call.commands[-1].startswith("SET VARIABLE CR_ROUTE ")


async def test_route_after_hours_dials_the_out_of_hours_service(rig: Rig) -> None:
    """18:00: dial the out-of-hours number, nothing played."""
    rig.clock[0] = datetime(2026, 11, 24, 18, 0, tzinfo=LONDON)
    call = await rig.call("route", HARBOROUGH, dial=HARBOROUGH)
    assert (fields(call)["CR_ACTION"], fields(call)["CR_TARGET"]) == ("dial", "+441632960999")
    assert fields(call)["CR_REASON"] == "closed"
    assert call.prompts == []


async def test_route_unknown_number(rig: Rig) -> None:
    """A number no council owns: the plan's unknown-number destination."""
    call = await rig.call("route", "01632960555", dial="01632960555")
    assert fields(call)["CR_ACTION"] == "hangup"
    assert fields(call)["CR_REASON"] == "unknown_number"
    assert fields(call)["CR_ROUTE"]


async def test_route_uses_the_dialled_extension_without_arguments(rig: Rig) -> None:
    """With no AGI argument the dialled number is ${EXTEN} (agi_extension)."""
    call = await rig.call("route", dial="+441632960100")
    assert fields(call)["CR_TENANT"] == "charnwood"


async def test_menu_key_reaches_a_queue_with_survey(rig: Rig) -> None:
    """Key 1 after the greeting: the revenues queue, its wait limit and the survey flag."""
    call = await rig.call("menu", "harborough", "main", "", dial=HARBOROUGH, steps=[PressAfterPrompt("1")])
    assert call.prompts[:2] == ["harborough/welcome", "harborough/main-menu"]
    assert {k: fields(call)[k] for k in ("CR_ACTION", "CR_TARGET", "CR_ARG", "CR_QUEUE", "CR_SURVEY")} == {
        "CR_ACTION": "queue",
        "CR_TARGET": "hdc-revenues",
        "CR_ARG": "900",
        "CR_QUEUE": "revenues",
        "CR_SURVEY": "1",
    }


async def test_menu_plays_the_prelude_first_and_it_can_be_skipped(rig: Rig) -> None:
    """A skippable announcement is streamed with # as escape digit, before the greeting."""
    call = await rig.call(
        "menu",
        "harborough",
        "main",
        "harborough/bin-collection-change:skip",
        dial=HARBOROUGH,
        steps=[Press("#"), PressAfterPrompt("2")],
    )
    media = [command for command in call.commands if not command.startswith("SET AUTOHANGUP")]
    assert media[0] == 'STREAM FILE harborough/bin-collection-change "#"'
    assert fields(call)["CR_TARGET"] == "hdc-waste"


async def test_menu_key_during_the_greeting_is_taken(rig: Rig) -> None:
    """A caller who knows the menu presses 2 during the greeting."""
    call = await rig.call("menu", "harborough", "main", "", dial=HARBOROUGH, steps=[Press("2")])
    assert fields(call)["CR_TARGET"] == "hdc-waste"
    assert "harborough/main-menu" not in call.prompts


async def test_menu_retries_then_timeout_destination(rig: Rig) -> None:
    """Silence, an invalid key, silence: the retry prompts, then on_timeout."""
    steps = [Silence(), Silence(), Silence(), PressAfterPrompt("9")]
    call = await rig.call("menu", "harborough", "main", "", dial=HARBOROUGH, steps=steps)
    assert [c for c in call.commands if c.startswith("WAIT FOR DIGIT")] == ["WAIT FOR DIGIT 5000"] * 3
    assert call.prompts.index("harborough/no-option") < call.prompts.index("harborough/invalid-option")
    assert "harborough/no-option" in call.prompts
    assert "harborough/invalid-option" in call.prompts
    assert fields(call)["CR_QUEUE"] == "revenues"


async def test_menu_submenu_repeat_and_return(rig: Rig) -> None:
    """4 to the sub-menu, * repeats it, # returns, 3 goes to payments."""
    call = await rig.call(
        "menu",
        "harborough",
        "main",
        "",
        dial=HARBOROUGH,
        steps=[PressAfterPrompt("4"), PressAfterPrompt("*"), PressAfterPrompt("#"), PressAfterPrompt("3")],
    )
    assert call.prompts.count("harborough/more-services") == 2
    assert (fields(call)["CR_ACTION"], fields(call)["CR_TARGET"]) == ("payment", "council_tax")


async def test_menu_hangup_is_logged_as_abandoned_and_sets_no_status(
    rig: Rig, logs: Callable[[], list[dict[str, Any]]]
) -> None:
    """A caller who hangs up in the menu: AGISTATUS HANGUP, no CR_ROUTE, an abandon event."""
    call = await rig.call(
        "menu", "harborough", "main", "", dial=HARBOROUGH, steps=[HangUpDuring("WAIT FOR DIGIT")]
    )
    assert call.agistatus == "HANGUP"
    assert "CR_ROUTE" not in call.variables
    assert any(e["event"] == "call.abandoned" and e["stage"] == "menu" for e in logs())


async def test_missing_prompt_still_finishes_with_status_ok(rig: Rig) -> None:
    """Asterisk says FAILURE after a missing prompt; CR_ROUTE tells the dialplan to go on."""
    call = await rig.call(
        "menu",
        "harborough",
        "main",
        "",
        dial=HARBOROUGH,
        steps=[PressAfterPrompt("1")],
        missing_prompts=frozenset({"harborough/welcome"}),
    )
    assert call.agistatus == "FAILURE"
    assert fields(call)["CR_ROUTE"]
    assert fields(call)["CR_TARGET"] == "hdc-revenues"


async def test_menu_unknown_after_a_reload_goes_out_of_hours(rig: Rig) -> None:
    """A menu the plan no longer has: the caller is not lost."""
    call = await rig.call("menu", "harborough", "gone", "", dial=HARBOROUGH)
    assert fields(call)["CR_ACTION"] == "dial"
    assert fields(call)["CR_ROUTE"]


async def test_overflow_after_timeout_takes_the_failover(rig: Rig) -> None:
    """QUEUESTATUS=TIMEOUT with live state unknown: the queue's failover."""
    call = await rig.call("overflow", "harborough", "revenues", "TIMEOUT", dial=HARBOROUGH)
    assert (fields(call)["CR_ACTION"], fields(call)["CR_TARGET"]) == ("voicemail", "200@harborough")
    assert fields(call)["CR_REASON"] == "after_queue"


async def test_overflow_after_withdraw_goes_to_the_overflow_target(rig: Rig) -> None:
    """QUEUESTATUS=WITHDRAW: the controller withdrew the caller for overflow."""
    call = await rig.call("overflow", "harborough", "revenues", "WITHDRAW", dial=HARBOROUGH)
    assert (fields(call)["CR_ACTION"], fields(call)["CR_TARGET"]) == ("queue", "cbc-assist")
    assert fields(call)["CR_REASON"] == "withdrawn"


async def test_survey_scores_good_average_poor(rig: Rig, logs: Callable[[], list[dict[str, Any]]]) -> None:
    """1 Good +1, 2 Average 0, 3 Poor -1; no answer is recorded as unanswered."""
    scores = []
    for steps in (
        [PressAfterPrompt("1")],
        [PressAfterPrompt("2")],
        [PressAfterPrompt("3")],
        [Silence(), Silence()],
    ):
        call = await rig.call("survey", "harborough", "revenues", dial=HARBOROUGH, steps=steps)
        scores.append(fields(call)["CR_SURVEY_SCORE"])
    assert scores == ["1", "0", "-1", ""]
    events = [e for e in logs() if e["event"] == "call.survey"]
    assert [e["score"] for e in events] == [1, 0, -1, None]
    assert all(e["tenant"] == "harborough" for e in events)


async def test_payment_hands_off_with_a_reference(rig: Rig, logs: Callable[[], list[dict[str, Any]]]) -> None:
    """A reference of exactly max_digits: asked for max_digits + 1, accepted after the timeout."""
    ok = await rig.call(
        "payment", "harborough", "council_tax", dial=HARBOROUGH, steps=[PressAfterPrompt("12345678")]
    )
    assert (fields(ok)["CR_ACTION"], fields(ok)["CR_TARGET"]) == ("payment", "+441632960777")
    assert fields(ok)["CR_PAYMENT_REF"] == "12345678"
    assert "GET DATA harborough/enter-account-number 6000 9" in ok.commands
    handoff = next(e for e in logs() if e["event"] == "call.payment_handoff")
    assert handoff["reference"] is True


async def test_payment_line_without_reference_asks_nothing(rig: Rig) -> None:
    """Charnwood's line takes no reference: straight hand-off."""
    call = await rig.call("payment", "charnwood", "payments", dial="01632960100")
    assert call.prompts == []
    assert fields(call)["CR_TARGET"] == "+441632960778"
    assert fields(call)["CR_PAYMENT_REF"] == ""


class SlowLive:
    """A live source that never answers in time (Redis stalled)."""

    async def read(self, plan: CompiledPlan, tenant: str | None, now: datetime) -> tuple[LiveState, Toggles]:
        import asyncio

        await asyncio.sleep(30)
        raise AssertionError("not reached")

    async def remember(self, latches: tuple[tuple[str, bool], ...]) -> None:
        return None


async def test_stalled_live_state_still_routes_within_the_deadline(
    logs: Callable[[], list[dict[str, Any]]],
) -> None:
    """Fail static: a stalled live source costs at most live_timeout, then defaults apply."""
    controller, _clock = make_controller(live=SlowLive())
    server = FastAgiServer(ServerConfig(host="127.0.0.1", port=0))
    controller.register(server)
    async with server:
        call = await run_call(
            "127.0.0.1", server.port, CallerScript(dial=HARBOROUGH), "route", args=[HARBOROUGH]
        )
    assert fields(call)["CR_ROUTE"]
    assert call.duration < 2
    assert any(e["event"] == "live.unavailable" for e in logs())


def test_reload_keeps_the_last_good_plan(tmp_path: Path, logs: Callable[[], list[dict[str, Any]]]) -> None:
    """A broken plan is rejected with its problems; a good one is swapped in."""
    target = tmp_path / "plan.yaml"
    target.write_text(EXAMPLE.read_text())
    holder = PlanHolder.load(target)
    first = holder.current
    target.write_text(EXAMPLE.read_text().replace("queue: waste}", "queue: bins}", 1))
    assert not holder.reload().ok
    assert holder.current is first
    assert holder.version == 1
    target.write_text(EXAMPLE.read_text().replace('"08:30-17:30"', '"08:00-18:00"'))
    assert holder.reload().ok
    assert holder.current is not first
    assert holder.version == 2
    rejected = [e for e in logs() if e["event"] == "plan.rejected"]
    assert rejected
    assert "unknown queue 'bins'" in rejected[0]["problems"][0]


async def test_hangup_at_every_step_of_a_menu_call(rig: Rig) -> None:
    """Whichever command the caller hangs up after, the session ends cleanly and the next call works."""
    full = await rig.call("menu", "harborough", "main", "", dial=HARBOROUGH, steps=[PressAfterPrompt("1")])
    assert len(full.commands) >= 4
    for step in range(len(full.commands)):
        call = await rig.call("menu", "harborough", "main", "", dial=HARBOROUGH, steps=[HangUpAfter(step)])
        assert call.agistatus == "HANGUP", step
        assert "CR_ROUTE" not in call.variables, step
    after = await rig.call("route", HARBOROUGH, dial=HARBOROUGH)
    assert fields(after)["CR_ACTION"] == "menu"
    assert rig.server.counters.failed == 0
