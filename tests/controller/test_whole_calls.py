"""Whole calls through the dialplan's flow: route, menu, queue, overflow, survey, payment."""

from __future__ import annotations

from datetime import datetime

from emulator.agi import CallerScript, HangUpDuring, PressAfterPrompt, Silence
from emulator.dialplan import place_call, place_calls
from tests.controller.conftest import HARBOROUGH, LONDON, Rig


async def test_revenues_call_answered_then_rated_good(rig: Rig) -> None:
    """Menu key 1, answered, survey key 1: the whole journey in the dialled council's voice."""
    script = CallerScript(dial=HARBOROUGH, steps=[PressAfterPrompt("1"), PressAfterPrompt("1")])
    record = await place_call("127.0.0.1", rig.server.port, script)
    assert (
        record.summary() == "route (open) -> menu main -> queue hdc-revenues (continue) -> answered, survey 1"
    )
    assert record.tenant == "harborough"
    assert [s.agistatus for s in record.sessions] == ["SUCCESS", "SUCCESS", "SUCCESS"]


async def test_queue_timeout_goes_to_failover(rig: Rig) -> None:
    """QUEUESTATUS=TIMEOUT: the overflow route sends the caller to the failover voicemail."""
    script = CallerScript(dial=HARBOROUGH, steps=[PressAfterPrompt("2")])
    record = await place_call("127.0.0.1", rig.server.port, script, outcome=lambda queue, _vars: "TIMEOUT")
    assert (
        record.summary()
        == "route (open) -> menu main -> queue hdc-waste (timeout) -> voicemail 201@harborough"
    )


async def test_payment_journey(rig: Rig) -> None:
    """Key 3, then the account number: handed to the payment line with the reference."""
    script = CallerScript(dial=HARBOROUGH, steps=[PressAfterPrompt("3"), PressAfterPrompt("87654321")])
    record = await place_call("127.0.0.1", rig.server.port, script)
    assert record.summary() == "route (open) -> menu main -> payment line +441632960777"
    assert record.variables["CR_PAYMENT_REF"] == "87654321"


async def test_out_of_hours_call_is_dialled_through(rig: Rig) -> None:
    """Saturday afternoon: straight to the out-of-hours service."""
    rig.clock[0] = datetime(2026, 11, 28, 15, 0, tzinfo=LONDON)
    record = await place_call("127.0.0.1", rig.server.port, CallerScript(dial=HARBOROUGH))
    assert record.summary() == "route (closed) -> dial +441632960999"


async def test_caller_who_hangs_up_in_the_menu(rig: Rig) -> None:
    """An abandon in the IVR ends the call there."""
    script = CallerScript(dial=HARBOROUGH, steps=[HangUpDuring("WAIT FOR DIGIT")])
    record = await place_call("127.0.0.1", rig.server.port, script)
    assert record.summary() == "route (open) -> menu main -> caller hung up"


async def test_silent_caller_reaches_an_adviser(rig: Rig) -> None:
    """A caller who presses nothing (e.g. a rotary phone) is not lost: on_timeout -> revenues."""
    script = CallerScript(dial=HARBOROUGH, steps=[Silence()] * 12)
    record = await place_call("127.0.0.1", rig.server.port, script)
    assert record.summary().startswith("route (open) -> menu main -> queue hdc-revenues")


async def test_controller_down_takes_the_fail_static_route(unused_tcp_port: int) -> None:
    """Nothing listening: the dialplan would take the fail-static path."""
    record = await place_call("127.0.0.1", unused_tcp_port, CallerScript(dial=HARBOROUGH))
    assert record.ended.endswith("fail-static route")


async def test_many_calls_at_once(rig: Rig) -> None:
    """Fifty concurrent callers all complete their journeys."""
    scripts = [
        CallerScript(dial=HARBOROUGH, steps=[PressAfterPrompt(str(1 + i % 2)), Silence()]) for i in range(50)
    ]
    records = await place_calls("127.0.0.1", rig.server.port, scripts, concurrency=25)
    assert len(records) == 50
    assert {r.ended for r in records} == {"answered, survey not answered"}
    assert sum("hdc-revenues" in r.summary() for r in records) == 25
