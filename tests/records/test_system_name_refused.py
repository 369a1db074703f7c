"""A call from an Asterisk whose ``systemname`` makes ids callrouter cannot file (a space in the
name, say): the call is routed as any other, its facts are refused (no record: its id could not
travel in a URL, a Redis key, a CSV cell or a SIP header), and the log says so once a minute,
with the fix, not once per fact or per call. What it shows of the name is escaped and masked."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from emulator.agi import CallerScript, PressAfterPrompt
from emulator.dialplan import Asterisk, CallRecord, place_call
from ivr import channel_vars as cv
from ivr.controller import Controller, NoLiveState, PlanHolder
from ivr.fastagi import FastAgiServer, ServerConfig
from records.builder import RecordBuilder
from records.facts import CallArrived, SurveyAnswered
from records.outbox import FOREIGN_ID_WARN_S, MemorySink, RecordPump
from routing.core.linkedid import FIX
from tests.controller.conftest import EXAMPLE, HARBOROUGH, TUESDAY_10AM
from tests.records.support import KEY

T0 = 1795533337.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("records.id_not_linkedid")]


def test_one_warning_a_minute_whatever_the_number_of_calls(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    pump = RecordPump(RecordBuilder("charnwood", KEY), MemorySink(), clock=clock)
    with caplog.at_level(logging.WARNING, logger="records.outbox"):
        for n in range(1, 21):  # 20 calls, two facts each, within the minute
            pump.fact(CallArrived(f"ast 1-1795533337.{n}", clock.now, "01632960001", "07700900123", None))
            pump.fact(SurveyAnswered(f"ast 1-1795533337.{n}", clock.now, 1))
            clock.now += 1
        assert len(warnings(caplog)) == 1
        clock.now = T0 + FOREIGN_ID_WARN_S + 1
        pump.fact(SurveyAnswered("ast 1-1795533337.99", clock.now, 1))
    first, second = warnings(caplog)
    assert first.startswith("records.id_not_linkedid facts=1 system_name='ast 1': ")
    assert second.startswith("records.id_not_linkedid facts=40 system_name='ast 1': ")  # all since
    assert FIX in first
    assert "systemname" in first
    assert (pump.refused_facts, pump.foreign_ids, len(pump.builder)) == (41, 41, 0)
    assert "1795533337" not in caplog.text  # the ids themselves are not logged, nor the caller


def test_what_the_warning_shows_of_the_name_is_escaped_bounded_and_masked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pump = RecordPump(RecordBuilder("charnwood", KEY), MemorySink(), clock=Clock())
    hostile = "ast\n07700900123\x1b[31m" + "x" * 200 + "-1795533337.1"
    with caplog.at_level(logging.WARNING, logger="records.outbox"):
        pump.fact(SurveyAnswered(hostile, T0, 1))
    [said] = warnings(caplog)
    assert "\n" not in said
    assert "\x1b" not in said
    assert "07700900123" not in said
    assert "'ast\\n********123\\x1b[31m" in said  # masked as caller numbers are in logs
    assert "x" * 51 not in said  # cut to 64 characters


def test_a_malformed_fact_with_a_good_id_is_still_said_each_time(caplog: pytest.LogCaptureFixture) -> None:
    pump = RecordPump(RecordBuilder("charnwood", KEY), MemorySink(), clock=Clock())
    with caplog.at_level(logging.WARNING, logger="records.outbox"):
        pump.fact(SurveyAnswered("1795533337.1", float("nan"), 1))
        pump.fact(SurveyAnswered("1795533337.1", float("nan"), 1))
    assert caplog.text.count("records.fact_refused") == 2
    assert warnings(caplog) == []


@dataclass
class Centre:
    server: FastAgiServer
    pump: RecordPump


@pytest.fixture
async def centre() -> AsyncIterator[Centre]:
    pump = RecordPump(RecordBuilder("charnwood", KEY), MemorySink())
    controller = Controller(
        PlanHolder.load(EXAMPLE), NoLiveState(), clock=lambda: TUESDAY_10AM, facts=pump.fact
    )
    server = FastAgiServer(ServerConfig(host="127.0.0.1", port=0, call_timeout=20))
    controller.register(server)
    await server.start()
    try:
        yield Centre(server, pump)
    finally:
        await server.drain(0)


async def call(centre: Centre, system_name: str, n: int) -> CallRecord:
    script = CallerScript(dial=HARBOROUGH, caller=f"0770090{n:04d}", steps=[PressAfterPrompt("1")])
    asterisk = Asterisk(system_name=system_name)
    return await place_call("127.0.0.1", centre.server.port, script, asterisk=asterisk, number=n, deadline=10)


async def test_such_a_call_is_routed_as_any_other(centre: Centre, caplog: pytest.LogCaptureFixture) -> None:
    """The emulated Asterisk with ``systemname = ast 1`` (Asterisk takes it: ``"%s-%li.%d"``):
    each call goes where a call from an Asterisk with a good name goes, in the same steps."""
    good = await call(centre, "ast1", 1)
    assert good.sessions[0].uniqueid.startswith("ast1-")
    with caplog.at_level(logging.WARNING, logger="records.outbox"):
        bad = [await call(centre, "ast 1", n) for n in (2, 3, 4)]
    for record in bad:
        assert record.sessions[0].uniqueid.startswith("ast 1-")
        assert record.summary() == good.summary()
        assert record.variables[cv.ROUTE] == good.variables[cv.ROUTE]
        assert record.variables[cv.TENANT] == good.variables[cv.TENANT]
    assert good.summary().startswith("route (open) -> menu main -> queue")
    assert len(warnings(caplog)) == 1
    held = centre.pump.builder.flush(T0 + 10**9)
    assert [r.id for r in held] == [good.sessions[0].uniqueid]  # only the good call has a record
