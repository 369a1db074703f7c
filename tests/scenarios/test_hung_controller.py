"""A controller that hangs never strands the caller; a healthy one is never cut off.

Whole calls through the emulated dialplan (``callrouter-agi``: ``AGIEXITONHANGUP=yes``,
``TIMEOUT(absolute)=5`` before each AGI(), ``T`` returns to the caller's fail-static check).
Times are on the emulator's clock (``CallerLine.clock``), the clock Asterisk would keep."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import pytest

from emulator.agi import CallerScript, EmulatedCall, PressAfterPrompt, Silence
from emulator.dialplan import FAILSTATIC, CallRecord, place_call
from ivr.fastagi import AgiChannel, AgiRequest, FastAgiServer, ServerConfig
from ivr.step_guard import StepGuard
from tests.controller.conftest import EXAMPLE, HARBOROUGH, make_controller
from tests.controller.test_fallback import SCRIPT as FALLBACK
from tests.controller.test_fallback import always_open_plan
from tests.support.processes import kill_tree
from tests.support.redis_server import free_port

PROMPT_S = 50  # every prompt of the "long call" below lasts 50 s (the guard allows 60)


class EveryPrompt(Mapping[str, int]):
    """Every prompt exists and lasts ``seconds``."""

    def __init__(self, seconds: float) -> None:
        self.samples = int(seconds * 8000)

    def __getitem__(self, name: str) -> int:
        return self.samples

    def get(self, name: str, default: object = None) -> int:  # type: ignore[override]
        return self.samples

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(())

    def __len__(self) -> int:
        return 0


class SilentController:
    """Accepts, reads the environment block, never answers (agi_server_silent.txt)."""

    def __init__(self) -> None:
        self.closed_by_asterisk = asyncio.Event()

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            await reader.readuntil(b"\n\n")
            await reader.read()  # until Asterisk closes the socket (AGIEXITONHANGUP=yes)
        writer.close()
        self.closed_by_asterisk.set()


def first_session(record: CallRecord) -> EmulatedCall:
    return record.sessions[0]


async def test_silent_controller_sends_the_caller_to_fail_static_within_6_s() -> None:
    silent = SilentController()
    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        record = await place_call("127.0.0.1", port, CallerScript(dial=HARBOROUGH), time_scale=0.05)
        await asyncio.wait_for(silent.closed_by_asterisk.wait(), 2)
    finally:
        server.close()
    assert record.ended == FAILSTATIC
    session = first_session(record)
    assert session.timed_out
    assert session.goes_to_t
    assert session.replies == ["HANGUP", "HANGUP"]  # AGIEXITONHANGUP=yes: twice, then closed
    assert record.fallback_at is not None
    assert 5.0 <= record.fallback_at <= 6.0


@pytest.fixture
async def stopped_controller(tmp_path: Path) -> AsyncIterator[int]:
    """``callrouter serve`` as a process, then SIGSTOPped: the kernel still accepts connections."""
    port = free_port()
    log = tmp_path / "controller.log"
    argv = [sys.executable, "-m", "callrouter.cli", "serve", "--plan", str(EXAMPLE), "--agi-port", str(port),
            "--no-redis", "--clock-start", "2026-11-24 10:00"]  # fmt: skip
    with log.open("w") as out:
        process = await asyncio.create_subprocess_exec(*argv, stdout=out, stderr=asyncio.subprocess.STDOUT)
    try:
        async with asyncio.timeout(15):
            while "controller.started" not in log.read_text():
                await asyncio.sleep(0.05)
        process.send_signal(signal.SIGSTOP)
        yield port
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGCONT)
            kill_tree(process.pid)
        await process.wait()


async def test_stopped_controller_process_sends_the_caller_to_fail_static_within_6_s(
    stopped_controller: int,
) -> None:
    """Variant (c) of the capture, with the real controller process frozen by SIGSTOP."""
    record = await place_call("127.0.0.1", stopped_controller, CallerScript(dial=HARBOROUGH), time_scale=0.05)
    assert record.ended == FAILSTATIC
    assert first_session(record).timed_out
    assert record.fallback_at is not None
    assert 5.0 <= record.fallback_at <= 6.0


class FreezesAfterWaitForDigit:
    """The channel of a controller that deadlocks once the menu's WAIT FOR DIGIT has answered."""

    def __init__(self, channel: AgiChannel) -> None:
        self._channel = channel

    def __getattr__(self, name: str) -> object:
        return getattr(self._channel, name)

    async def wait_for_digit(self, timeout_ms: int) -> str | None:
        await self._channel.wait_for_digit(timeout_ms)
        await asyncio.Event().wait()  # never set: the controller sends nothing more
        raise AssertionError("not reached")


async def test_controller_hung_mid_menu_releases_the_caller_within_the_step_bound_plus_5_s() -> None:
    controller, _clock = make_controller()
    server = FastAgiServer(ServerConfig(host="127.0.0.1", port=0, call_timeout=30))
    server.register("route", controller.route)

    async def frozen_menu(channel: AgiChannel, request: AgiRequest) -> None:
        await controller.menu(FreezesAfterWaitForDigit(channel), request)  # type: ignore[arg-type]

    server.register("menu", frozen_menu)
    async with server:
        script = CallerScript(dial=HARBOROUGH, steps=[Silence()])
        # 0.2: the healthy part has 1 s of real time per 5 s margin, even on a busy machine
        record = await place_call("127.0.0.1", server.port, script, time_scale=0.2)
    assert record.ended == FAILSTATIC
    menu = record.sessions[1]
    assert menu.timed_out
    wait = menu.commands.index("WAIT FOR DIGIT 5000")
    assert menu.commands[wait - 1] == "SET AUTOHANGUP 10"  # the step's 5 s + the 5 s margin
    started = menu.command_times[wait]
    assert record.fallback_at is not None
    assert record.fallback_at - started <= 5 + 5 + 0.5


async def _long_call(script: CallerScript, guard: StepGuard | None) -> CallRecord:
    controller, _clock = make_controller()
    server = FastAgiServer(ServerConfig(host="127.0.0.1", port=0, call_timeout=30, step_guard=guard))
    controller.register(server)
    async with server:
        return await place_call("127.0.0.1", server.port, script)


@pytest.mark.parametrize(
    ("steps", "ending"),
    [
        # silence once (no-option prompt, menu again), key 3, an account number typed slowly
        (
            [Silence(), PressAfterPrompt("3"), PressAfterPrompt("12345678", gap=5.0)],
            "payment line +441632960777",
        ),
        # key 1, answered by an adviser, then the survey answered after its long prompt
        ([PressAfterPrompt("1"), PressAfterPrompt("1", gap=5.0)], "answered, survey 1"),
    ],
)
async def test_healthy_controller_with_a_long_call_is_never_cut_off(steps: list[object], ending: str) -> None:
    """25 s prompts, a slow typist, a survey: minutes on the emulator's clock, and no cut-off."""
    script = CallerScript(dial=HARBOROUGH, steps=steps, prompts=EveryPrompt(PROMPT_S))  # type: ignore[arg-type]
    record = await _long_call(script, StepGuard())
    assert record.ended == ending
    assert not any(session.timed_out for session in record.sessions)
    assert record.line.clock.now() > 60
    assert record.fallback_at is None


async def test_without_the_step_guard_the_same_call_would_be_cut_off() -> None:
    """The control: a controller that does not re-arm the timer loses the caller at 5 s."""
    script = CallerScript(dial=HARBOROUGH, steps=[PressAfterPrompt("1")], prompts=EveryPrompt(PROMPT_S))
    record = await _long_call(script, None)
    assert any(session.timed_out for session in record.sessions)
    assert record.ended == FAILSTATIC


@pytest.mark.parametrize("controller", ["silent", "down"])
async def test_hung_and_down_controllers_take_the_same_fail_static_route(
    controller: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """T leads where a refused connection leads: the classic fallback script, which runs the
    menu from the plan file (key 2: the waste queue) in static mode."""
    plan = always_open_plan(tmp_path)
    monkeypatch.setenv("CALLROUTER_PLAN", str(plan))
    script = CallerScript(dial=HARBOROUGH, steps=[PressAfterPrompt("2")])
    silent = SilentController()
    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    if controller == "down":
        server.close()
        await server.wait_closed()
    try:
        # the clock at the real rate: the fallback process starts in real time, within its 4 s
        record = await place_call("127.0.0.1", port, script, fallback=FALLBACK)
    finally:
        server.close()
    assert record.summary() == f"{FAILSTATIC} (open) -> queue hdc-waste (continue) -> answered"
    assert record.variables["CR_MODE"] == "static"
    assert record.fallback_at is not None
    assert record.fallback_at <= 6.0
