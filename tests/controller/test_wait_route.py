"""The wait route, one AGI step at a time, over real TCP (the emulator as Asterisk).

Live state here is given directly (a fixed snapshot); the callback desk keeps callbacks in
memory with the store's rules that matter to the route (one per call, the first join kept)."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytest

from callrouter.logs import configure_logging
from emulator.agi import CallerScript, EmulatedCall, PressAfterPrompt, Silence, run_call
from emulator.agi import Step as AgiStep
from ivr.controller import Controller, PlanHolder
from ivr.fastagi import FastAgiServer, ServerConfig
from ivr.wait_loop import clock_text, parse_wait_arg
from records import facts as rf
from routing.core.callback import CallbackRequest
from routing.core.decide import CompiledPlan
from routing.core.live import LiveState, QueueSnapshot, Toggles
from routing.core.plan import CallbackPolicy
from routing.core.wait import WaitClock
from tests.controller.conftest import TUESDAY_10AM, fields
from tests.scenarios.test_wait_and_callback import plan_file

NOW = 1_800_000_000


@dataclass
class MemoryDesk:
    """Callbacks in memory: idempotent per call, each with its join time; ``fail``: the store
    is down (every request raises, as a Redis error would)."""

    takes_callbacks = True
    handle_times: list[float] = field(default_factory=lambda: [300.0] * 10)
    stored: dict[str, CallbackRequest] = field(default_factory=dict)
    fail: bool = False

    async def wait_inputs(self, asterisk_queue: str, joined_at: float) -> tuple[list[float], int]:
        ahead = sum(1 for r in self.stored.values() if r.joined_at < joined_at)
        return self.handle_times, ahead

    async def request(
        self, req: CallbackRequest, policy: CallbackPolicy, now: float, asterisk_queue: str
    ) -> str:
        if self.fail:
            raise ConnectionError("Redis is down")
        self.stored.setdefault(req.call_id, req)
        return f"cb-{req.call_id}"


class FixedLive:
    def __init__(self, waiting: int, logged_in: int = 1, available: int = 0) -> None:
        self.snapshot = (waiting, logged_in, available)

    async def read(self, plan: CompiledPlan, tenant: str | None, now: datetime) -> tuple[LiveState, Toggles]:
        waiting, logged_in, available = self.snapshot
        snap = QueueSnapshot("hdc-revenues", waiting, 30.0, logged_in, available, now)
        return LiveState(queues={"hdc-revenues": snap}), Toggles()

    async def remember(self, latches: tuple[tuple[str, bool], ...]) -> None:
        return None


@dataclass
class Step:
    server: FastAgiServer
    desk: MemoryDesk
    live: FixedLive
    facts: list[rf.IvrFact]
    now: list[float]

    async def wait(self, arg: str, *steps: AgiStep, caller: str | None = "01632960123") -> EmulatedCall:
        script = CallerScript(dial="01632960001", caller=caller, steps=list(steps), uniqueid="1800000000.7")
        args = ("harborough", "revenues", arg)
        return await run_call("127.0.0.1", self.server.port, script, "wait", args=args, deadline=10)


@pytest.fixture
async def step(tmp_path: Path) -> AsyncIterator[Step]:
    desk, live, facts, now = MemoryDesk(), FixedLive(4), [], [float(NOW)]
    controller = Controller(
        PlanHolder.load(plan_file(tmp_path)), live, clock=lambda: TUESDAY_10AM, live_timeout=0.5,
        facts=facts.append, fact_clock=lambda: now[0], callbacks=desk,
    )  # fmt: skip
    server = FastAgiServer(ServerConfig(host="127.0.0.1", port=0, call_timeout=20))
    controller.register(server)
    async with server:
        yield Step(server, desk, live, facts, now)


def slice_arg(clock: WaitClock, position: int = 3) -> str:
    return f"slice/{position}/{clock_text(clock)}"


async def test_entry_sets_the_wait_clock_and_the_first_slice(step: Step) -> None:
    """Entry, declined: CR_WAIT = joined/deadline (900 s)/announced/offered, CR_ACTION=wait
    for 60 s (announcements every 60 s come first), the Asterisk queue as target."""
    call = await step.wait("entry//", Silence())
    route = fields(call)
    assert route["CR_WAIT"] == f"{NOW}/{NOW + 900}/{NOW}/{NOW}"
    assert (route["CR_ACTION"], route["CR_TARGET"], route["CR_ARG"]) == ("wait", "hdc-revenues", "60")
    assert route["CR_QUEUE"] == "revenues"
    assert route["CHANNEL(language)"] == ""  # the channel keeps the language it has
    assert call.commands[-1].startswith("SET VARIABLE CR_ROUTE ")


async def test_a_slice_past_the_deadline_takes_the_after_queue_route(step: Step) -> None:
    """The plan queue's 900 s have passed since the first join: as QUEUESTATUS=TIMEOUT, the
    failover (voicemail 200@harborough), with the QUEUESTATUS fact for the record."""
    clock = WaitClock(NOW - 901, NOW - 1, NOW - 60, NOW - 120)
    call = await step.wait(slice_arg(clock))
    assert (fields(call)["CR_ACTION"], fields(call)["CR_TARGET"]) == ("voicemail", "200@harborough")
    assert [f.status for f in step.facts if isinstance(f, rf.QueueStatusSeen)] == ["TIMEOUT"]


async def test_nothing_due_in_a_slice_just_rejoins(step: Step) -> None:
    """30 s after the last announcement and offer: nothing said, rejoin for the time left to the
    next thing due (at least 5 s)."""
    clock = WaitClock(NOW - 100, NOW + 800, NOW - 30, NOW - 30)
    call = await step.wait(slice_arg(clock))
    assert call.prompts == []
    assert fields(call)["CR_ARG"] == "60"
    assert fields(call)["CR_WAIT"] == clock_text(clock)


async def test_a_store_that_fails_keeps_the_caller_waiting(step: Step) -> None:
    """Redis down as the caller confirms: "callback-unavailable", and back into the queue; the
    record's fact says offered, not accepted."""
    step.desk.fail = True
    call = await step.wait("entry//", PressAfterPrompt("1"), PressAfterPrompt("1"))
    assert "harborough/callback-unavailable" in call.prompts
    assert fields(call)["CR_ACTION"] == "wait"
    assert [(f.accepted, f.number_kind) for f in step.facts if isinstance(f, rf.CallbackOffered)] == [
        (False, None)
    ]


async def test_unknown_live_state_says_no_figure_but_offers_on_the_key(step: Step) -> None:
    """No live state: nothing estimated, so no offer at entry and no figure said; the offer key
    still gets the offer."""
    step.desk.handle_times = []
    call = await step.wait("entry//")
    assert 'STREAM FILE queue-thereare ""' in call.commands  # the position is still known
    assert not any(
        c.startswith(("STREAM FILE queue-holdtime", "STREAM FILE vm-morethan")) for c in call.commands
    )
    assert not any("callback" in p for p in call.prompts)
    clock = parse_wait_arg(f"slice/3/{fields(call)['CR_WAIT']}").clock
    assert clock is not None
    keyed = await step.wait(f"key1/3/{clock_text(clock)}", Silence())
    assert "harborough/callback-offer" in keyed.prompts


async def test_the_caller_number_is_masked_in_the_logs(step: Step) -> None:
    stream = io.StringIO()
    configure_logging(json=True, level="debug", stream=stream)
    try:
        keys = ("1", "2", "07700900123", "1")  # take the offer, not this number, a mobile, right
        await step.wait("entry//", *(PressAfterPrompt(k) for k in keys))
    finally:
        configure_logging(json=True, level="warning", stream=io.StringIO())
    lines = [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
    taken = [line for line in lines if line["event"] == "call.callback_taken"]
    assert len(taken) == 1
    assert taken[0]["number_kind"] == "mobile"
    assert "7700900123" not in stream.getvalue()
    assert step.desk.stored["1800000000.7"].number == "+447700900123"


@pytest.mark.parametrize(
    "arg",
    ["", "slice", "key12/3/", "keyX/1/1/2/3/4", "slice/3/1/2/3", "../../etc", "a" * 500],
)
async def test_anything_unrecognised_is_the_entry_step(step: Step, arg: str) -> None:
    """The route's argument comes from the channel: anything it cannot read starts the wait
    afresh (the caller queued, nothing assumed about their place)."""
    parsed = parse_wait_arg(arg)
    assert (parsed.event, parsed.position, parsed.clock) == ("entry", None, None)
    call = await step.wait(arg, Silence())
    assert fields(call)["CR_ACTION"] == "wait"


async def test_an_unknown_queue_goes_out_of_hours(step: Step) -> None:
    script = CallerScript(dial="01632960001", uniqueid="1800000000.8")
    call = await run_call(
        "127.0.0.1", step.server.port, script, "wait", args=("harborough", "nope", "entry//")
    )
    assert fields(call)["CR_ACTION"] == "dial"


async def test_no_callback_store_offers_nothing_but_still_announces(tmp_path: Path) -> None:
    """serve without Redis: the wait is announced (position from live state) and the offer key
    just rejoins: no number is taken that could not be kept."""
    controller = Controller(
        PlanHolder.load(plan_file(tmp_path)), FixedLive(4), clock=lambda: TUESDAY_10AM, live_timeout=0.5
    )
    server = FastAgiServer(ServerConfig(host="127.0.0.1", port=0, call_timeout=20))
    controller.register(server)
    async with server:
        script = CallerScript(dial="01632960001", uniqueid="1800000000.9", steps=[PressAfterPrompt("1")])
        entry = await run_call(
            "127.0.0.1", server.port, script, "wait", args=("harborough", "revenues", "entry//")
        )
        clock = fields(entry)["CR_WAIT"]
        keyed = await run_call(
            "127.0.0.1", server.port, script, "wait", args=("harborough", "revenues", f"key1/3/{clock}")
        )
    assert 'STREAM FILE queue-thereare ""' in entry.commands
    assert not any("callback" in p for p in entry.prompts + keyed.prompts)
    assert fields(keyed)["CR_ACTION"] == "wait"


async def test_the_after_queue_route_keeps_the_language_chosen(tmp_path: Path) -> None:
    """A bilingual council (Welsh first): the caller chose English; when the queue's time runs
    out during the wait, the after-queue route keeps English on the channel."""
    path = plan_file(tmp_path)
    path.write_text(path.read_text().replace('languages: ["en"]', 'languages: ["cy", "en"]', 1))
    controller = Controller(
        PlanHolder.load(path), FixedLive(4), clock=lambda: TUESDAY_10AM, live_timeout=0.5,
        facts=lambda _fact: None, fact_clock=lambda: float(NOW), callbacks=MemoryDesk(),
    )  # fmt: skip
    server = FastAgiServer(ServerConfig(host="127.0.0.1", port=0, call_timeout=20))
    controller.register(server)
    clock = WaitClock(NOW - 901, NOW - 1, NOW - 60, NOW - 120)
    script = CallerScript(
        dial="01632960001", caller="01632960123", steps=[], uniqueid="1800000000.8", language="en"
    )
    async with server:
        call = await run_call(
            "127.0.0.1",
            server.port,
            script,
            "wait",
            args=("harborough", "revenues", slice_arg(clock)),
            deadline=10,
        )
    assert fields(call)["CR_ACTION"] == "voicemail"
    assert fields(call)["CHANNEL(language)"] == "en"
