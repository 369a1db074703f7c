"""The emulator against the raw captures: digits in time, GET DATA at max digits, the absolute
timeout and AGIEXITONHANGUP (``agi_getdata_maxdigits_overflow.txt``,
``agi_hung_controller_timeout.txt``). Every expectation below is read from the capture files."""

from __future__ import annotations

import asyncio
import re

import pytest

from emulator.agi import CallerScript, EmulatedCall, run_call
from emulator.line import CallClock, CallerLine, read_app
from tests.support.captures import Capture, CaptureServer, asterisk_lines, load_capture

OVERFLOW = "agi_getdata_maxdigits_overflow"
HUNG = "agi_hung_controller_timeout"
AFTER_AGI = re.compile(r"AGISTATUS=(\w+), Read\(\) .* got LEFTOVER='(\d*)' READSTATUS=(\w+) \(at ([\d.]+) s")
AGISTATUS_SET = re.compile(r"AMI\s+\+([\d.]+) s VarSet \S+ AGISTATUS=(\w+)")

LATE_REAL_S = 0.25
"""How much later than captured a line may go out, in real seconds: the emulator's clock runs
on while it waits for the server and for a turn of the event loop, which on a loaded two-core
machine can take tens of milliseconds (up to 73 ms seen beside busy loops). Never early: the
clock only moves on, so a line ahead of its captured time is a modelling error, held to each
test's own tolerance."""


def on_time(got: float, captured: float, early: float, scale: float) -> bool:
    """``got`` (the emulator's clock) is no more than ``early`` before ``captured`` and no more
    than :data:`LATE_REAL_S` of real time after it, on a clock running at ``scale``."""
    late = LATE_REAL_S / scale if scale > 0 else LATE_REAL_S
    return captured - early <= got <= captured + late


async def replay(
    capture: Capture, script: CallerScript, line: CallerLine
) -> tuple[CaptureServer, EmulatedCall]:
    server_side = CaptureServer(capture, line.clock.time_scale)
    server = await asyncio.start_server(server_side, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        call = await run_call("127.0.0.1", port, script, line=line, hangup_delay=0.0, deadline=20)
        await asyncio.wait_for(server_side.done.wait(), 20)
    finally:
        server.close()
    return server_side, call


def assert_same_times(call: EmulatedCall, capture: Capture, early: float, scale: float) -> None:
    """Each line Asterisk sent went out at the captured time (the emulator's clock), as
    :func:`on_time` allows."""
    expected = [(at, data) for at, data in asterisk_lines(capture) if data is not None]
    assert [line.encode() + b"\n" for _, line in call.timeline] == [data for _, data in expected]
    for (sent, text), (at, _) in zip(call.timeline, expected, strict=True):
        assert on_time(sent, at, early, scale), (text, sent, at)


# --- digits: nothing buffered, GET DATA at max digits, (timeout) with exactly N -----------------


@pytest.mark.parametrize("number", ["5401", "5402", "5403", "5404", "5405", "5406", "5407"])
async def test_digits_reach_only_the_command_listening_when_they_arrive(number: str) -> None:
    """The caller types as captured (DTMFEnd times); each reply, its time, and what the dialplan's
    ``Read(LEFTOVER,,16,,,2)`` after AGI() got, all as the capture shows."""
    capture = load_capture(OVERFLOW)[number]
    line = CallerLine(CallClock(0.0))
    for at, digit in capture.dtmf():
        line.type(digit, at)
    server, call = await replay(capture, CallerScript(answered=True), line)
    assert server.received == [data for _, data in asterisk_lines(capture)]
    assert_same_times(call, capture, early=0.03, scale=0.0)
    status, leftover, read_status, read_at = AFTER_AGI.search(capture.note("dialplan after AGI()")).groups()  # type: ignore[union-attr]
    assert call.agistatus == status
    assert await read_app(line, 16, 2) == (leftover, read_status)
    assert on_time(line.clock.now(), float(read_at), early=0.05, scale=0.0), (line.clock.now(), read_at)


def test_capture_shows_what_the_controller_must_handle() -> None:
    """The facts the payment capture relies on, read from the capture itself."""
    calls = load_capture(OVERFLOW)
    first = asterisk_lines(calls["5401"])[0][1]
    assert first == b"200 result=12345678\n"  # 8 of 16 digits: GET DATA N cannot tell
    assert asterisk_lines(calls["5403"])[0][1] == b"200 result=123456789\n"  # N+1 detects more
    assert asterisk_lines(calls["5405"])[0][1] == b"200 result=12345678 (timeout)\n"
    assert asterisk_lines(calls["5407"])[-1][1] == b"200 result=0\n"  # drained


# --- the absolute timeout, AGIEXITONHANGUP, SET AUTOHANGUP ---------------------------------------


def hung_variant(letter: str) -> tuple[Capture, CallerScript]:
    capture = load_capture(HUNG)[letter]
    exit_on_hangup = "AGIEXITONHANGUP=yes" in "\n".join(capture.notes)
    script = CallerScript(answered=True, absolute_timeout=5, agiexitonhangup=exit_on_hangup)
    return capture, script


def status_note(capture: Capture) -> tuple[float, str]:
    at, status = AGISTATUS_SET.search("\n".join(capture.notes)).groups()  # type: ignore[union-attr]
    return float(at), status


@pytest.mark.parametrize("letter", ["a", "b"])
async def test_silent_server_is_cut_by_the_absolute_timeout(letter: str) -> None:
    """(a) ``HANGUP`` at 5 s, AGI() returns when the server closes (20 s); (b) with
    AGIEXITONHANGUP, ``HANGUP`` twice and the socket closed at 5 s. Either way AGISTATUS=HANGUP
    and the dialplan goes on at ``T``."""
    capture, script = hung_variant(letter)
    scale = 0.25  # 4x: the 20 s of variant a take 5 s, and 0.25 s late is 1 s on this clock
    line = CallerLine(CallClock(scale))
    server, call = await replay(capture, script, line)
    assert server.received == [data for _, data in asterisk_lines(capture)]
    assert_same_times(call, capture, early=0.2, scale=scale)  # 50 ms of real time
    returned_at, status = status_note(capture)
    assert call.agistatus == status == "HANGUP"
    assert call.goes_to_t == any("UserEvent=TExten" in note for note in capture.notes)
    assert call.goes_to_t
    assert on_time(call.ended_at, returned_at, early=1.0, scale=scale), (call.ended_at, returned_at)
    assert (call.outcome == "exit-on-hangup") == script.agiexitonhangup


@pytest.mark.parametrize("letter", ["d", "e"])
async def test_healthy_controller_disarms_or_is_cut(letter: str) -> None:
    """(d) ``SET AUTOHANGUP 0`` disarms the timer: ``EXEC Wait 8`` runs to the end, SUCCESS.
    (e) without it, ``EXEC Wait 8`` is cut at 5 s with ``200 result=-1``, HANGUP x2, closed."""
    capture, script = hung_variant(letter)
    line = CallerLine(CallClock(0.0))
    server, call = await replay(capture, script, line)
    assert server.received == [data for _, data in asterisk_lines(capture)]
    assert_same_times(call, capture, early=0.02, scale=0.0)
    _at, status = status_note(capture)
    assert call.agistatus == status
    assert call.goes_to_t == any("UserEvent=TExten" in note for note in capture.notes)
    assert ("ROUTE" in call.variables) == (letter == "d")


async def test_set_autohangup_rearms_the_same_timer() -> None:
    """``SET AUTOHANGUP n`` moves the ``TIMEOUT(absolute)`` deadline (res_agi sets the channel's
    whentohangup, as variant d shows for 0): 10 s covers an 8 s Wait, 2 s cuts it."""

    done = asyncio.Event()

    async def controller(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\n\n")
        for command in (b"SET AUTOHANGUP 10\n", b"EXEC Wait 8\n", b"SET AUTOHANGUP 2\n", b"EXEC Wait 8\n"):
            writer.write(command)
            if not await reader.readline():
                break
        await reader.read()
        writer.close()
        done.set()

    server = await asyncio.start_server(controller, "127.0.0.1", 0)
    try:
        script = CallerScript(answered=True, absolute_timeout=5, agiexitonhangup=True)
        call = await run_call("127.0.0.1", server.sockets[0].getsockname()[1], script, hangup_delay=0)
        await asyncio.wait_for(done.wait(), 10)
    finally:
        server.close()
    assert call.replies == [
        "200 result=0",
        "200 result=0",
        "200 result=0",
        "200 result=-1",
        "HANGUP",
        "HANGUP",
    ]
    assert call.timed_out_at is not None
    assert on_time(call.timed_out_at, 10.0, early=0.05, scale=0.0), call.timed_out_at
    assert call.goes_to_t


SCALE = 0.5  # the 1 s timer takes 0.5 s; 0.25 s late is 0.5 s on this clock


async def test_after_the_timer_without_exit_on_hangup_the_channel_is_dead() -> None:
    """Variant (a): after the timer's HANGUP Asterisk keeps serving in dead mode until the server
    closes: SET AUTOHANGUP and media get 511 (res_agi: not allowed on a dead channel), SET
    VARIABLE still works; a malformed SET AUTOHANGUP is a usage error."""
    done = asyncio.Event()
    seen: list[bytes] = []

    async def controller(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\n\n")
        writer.write(b"SET AUTOHANGUP soon\n")
        while (line := await reader.readline()) and not line.startswith(b"520 "):
            seen.append(line)
        seen.append(line)
        writer.write(b"SET AUTOHANGUP 1\n")
        seen.append(await reader.readline())
        seen.append(await reader.readline())  # the timer's HANGUP, 1 s later
        for command in (b"SET AUTOHANGUP 10\n", b"WAIT FOR DIGIT 100\n", b"SET VARIABLE X y\n"):
            writer.write(command)
            seen.append(await reader.readline())
        writer.close()
        done.set()

    server = await asyncio.start_server(controller, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        call = await run_call("127.0.0.1", port, CallerScript(answered=True), time_scale=SCALE)
        await asyncio.wait_for(done.wait(), 10)
    finally:
        server.close()
    assert seen[0] == b"520-Invalid command syntax.  Proper usage follows:\n"
    assert seen[-6:] == [
        b"520 End of proper usage.\n",
        b"200 result=0\n",
        b"HANGUP\n",
        b"511 Command Not Permitted on a dead channel or intercept routine\n",
        b"511 Command Not Permitted on a dead channel or intercept routine\n",
        b"200 result=1\n",
    ]
    assert call.timed_out_at is not None
    assert on_time(call.timed_out_at, 1.0, early=0.3, scale=SCALE), call.timed_out_at
    assert (call.agistatus, call.goes_to_t, call.variables["X"]) == ("HANGUP", True, "y")
