"""AgiChannel over real loopback TCP, against the emulator and against a hand-driven peer."""

from __future__ import annotations

import asyncio

import pytest

from emulator.agi import (
    CallerScript,
    HangUpAfter,
    HangUpDuring,
    Press,
    PressAfterPrompt,
    Silence,
    run_call,
)
from ivr.fastagi import AgiChannel, AgiCommandError, AgiHangup, AgiProtocolError, AgiRequest, AgiTimeout
from tests.fastagi.conftest import StartServer, expect_line, raw_peer, suite_env

Results = dict[str, object]


async def test_every_reply_form_is_typed(start_server: StartServer) -> None:
    seen: Results = {}
    server = await start_server()

    @server.route("route")
    async def route(channel: AgiChannel, request: AgiRequest) -> None:
        await channel.answer()
        seen["interrupted"] = await channel.stream_file("hello-world", "12")
        seen["played"] = await channel.stream_file("beep")
        seen["after_prompt"] = await channel.stream_file("beep", "1")
        seen["pressed_late"] = await channel.wait_for_digit(1000)
        seen["max"] = await channel.get_data("menu", 5000, 3)
        seen["partial"] = await channel.get_data("menu", 3000, 5)
        seen["nothing"] = await channel.get_data("menu", 2000, 4)
        seen["hash"] = await channel.get_data("menu", 6000, 10)
        seen["digit"] = await channel.wait_for_digit(5000)
        seen["no_digit"] = await channel.wait_for_digit(1000)
        seen["missing_app"] = await channel.exec("NoSuchApplication", "foo")
        seen["set_app"] = await channel.exec("Set", "EXECVAR=from exec")
        await channel.verbose("hello\nfrom the controller", 3)

    steps = [Press("1"), Silence(), PressAfterPrompt("7"), Press("234"), Press("5"), Silence()]
    steps += [Press("6789*#"), Press("0"), Silence()]
    call = await run_call("127.0.0.1", server.port, CallerScript(steps=steps))
    assert seen == {
        "interrupted": "1",
        "played": None,
        "after_prompt": None,
        "max": ("234", False),
        "partial": ("5", True),
        "nothing": ("", True),
        "hash": ("6789*", False),
        "digit": "0",
        "no_digit": None,
        "pressed_late": "7",
        "missing_app": -2,
        "set_app": 0,
    }
    assert call.variables["EXECVAR"] == "from exec"
    assert call.commands[-1] == 'VERBOSE "hello from the controller" 3'
    assert call.agistatus == "SUCCESS"


async def test_variables_round_trip_with_quotes_and_parentheses(start_server: StartServer) -> None:
    values = ['say "hi" now', "a (b) c", "back\\slash", "", "a,b;c|d", "  spaced  "]
    read_back: list[str | None] = []
    server = await start_server()

    @server.route("route")
    async def route(channel: AgiChannel, request: AgiRequest) -> None:
        for index, value in enumerate(values):
            await channel.set_variable(f"V{index}", value)
            read_back.append(await channel.get_variable(f"V{index}"))
        read_back.append(await channel.get_variable("NEVER_SET_ANYWHERE"))
        read_back.append(await channel.get_variable("CALLERID(num)"))

    call = await run_call("127.0.0.1", server.port, CallerScript())
    assert read_back == [*values, None, "01632960123"]
    assert [call.variables[f"V{i}"] for i in range(len(values))] == values


async def test_510_and_520_raise_command_errors(start_server: StartServer) -> None:
    errors: list[AgiCommandError] = []
    server = await start_server()

    @server.route("route")
    async def route(channel: AgiChannel, request: AgiRequest) -> None:
        for words in (("FOOBAR", "BAZ"), ("STREAM FILE", "beep"), ("SET VARIABLE", "X", "a", "b")):
            try:
                await channel.send_command(*words)
            except AgiCommandError as exc:
                errors.append(exc)
        await channel.set_variable("AFTER", "in step")

    call = await run_call("127.0.0.1", server.port, CallerScript())
    assert [e.reply.code for e in errors] == [510, 520, 520]
    assert errors[1].reply.usage[-1] == "    <value>FAILED</value>"
    assert errors[2].reply.usage == ("Sets a variable to the current channel.",)
    assert call.variables == {"AFTER": "in step"}


async def test_missing_prompts_are_tracked(start_server: StartServer) -> None:
    seen: Results = {}
    server = await start_server()

    @server.route("route")
    async def route(channel: AgiChannel, request: AgiRequest) -> None:
        seen["data"] = await channel.get_data("no-such-menu", 1000, 2)
        seen["status_after_get_data"] = channel.status_failure
        seen["stream"] = await channel.stream_file("no-such-prompt", "1")
        seen["missing"] = list(channel.missing_prompts)
        seen["status"] = channel.status_failure

    missing = frozenset({"no-such-menu", "no-such-prompt"})
    call = await run_call("127.0.0.1", server.port, CallerScript(missing_prompts=missing))
    assert seen == {
        "data": ("", True),
        "status_after_get_data": False,
        "stream": None,
        "missing": ["no-such-menu", "no-such-prompt"],
        "status": True,
    }
    assert call.agistatus == "FAILURE"  # what Asterisk makes of a missing STREAM FILE prompt


STEPS = ["ANSWER", "STREAM FILE", "GET DATA", "WAIT FOR DIGIT", "EXEC", "SET VARIABLE"]


@pytest.mark.parametrize("mode", ["default", "agisighup-no", "agiexitonhangup"])
@pytest.mark.parametrize("step", range(len(STEPS)))
async def test_hangup_at_every_step(start_server: StartServer, step: int, mode: str) -> None:
    reached: list[str] = []
    outcome: list[str] = []
    server = await start_server()

    @server.route("route")
    async def route(channel: AgiChannel, request: AgiRequest) -> None:
        actions = [
            channel.answer,
            lambda: channel.stream_file("welcome", "1"),
            lambda: channel.get_data("menu", 3000, 1),
            lambda: channel.wait_for_digit(1000),
            lambda: channel.exec("Queue", "council-revenues"),
            lambda: channel.set_variable("ROUTE", "revenues"),
        ]
        try:
            for name, action in zip(STEPS, actions, strict=True):
                reached.append(name)
                await action()
            await channel.verbose("finished")
        except AgiHangup:
            outcome.append("hangup")
            if channel.connected:
                await channel.set_variable("OUTCOME", "abandoned")  # allowed on a dead channel
            raise

    script = CallerScript(
        steps=[HangUpDuring(STEPS[step])],
        agisighup=mode != "agisighup-no",
        agiexitonhangup=mode == "agiexitonhangup",
    )
    call = await run_call("127.0.0.1", server.port, script, hangup_delay=0.005)
    await _settle(server, "ended")
    assert call.agistatus == "HANGUP"
    assert reached[-1] == STEPS[step]
    if mode == "agisighup-no" and STEPS[step] == "SET VARIABLE":
        # no HANGUP line and VERBOSE still works on a dead channel: the handler never knows
        assert (outcome, server.counters.completed) == ([], 1)
        return
    assert (outcome, server.counters.hung_up) == (["hangup"], 1)
    if mode != "agiexitonhangup":
        assert call.variables.get("OUTCOME") == "abandoned"


async def _settle(server: object, _what: str) -> None:
    """Wait until the server has finished every session (run_call returns first)."""
    for _ in range(100):
        counters = server.counters  # type: ignore[attr-defined]
        if counters.started and not counters.active:
            return
        await asyncio.sleep(0.01)


async def test_hangup_between_commands_is_noticed_once(start_server: StartServer) -> None:
    events: list[str] = []
    server = await start_server()

    @server.route("route")
    async def route(channel: AgiChannel, request: AgiRequest) -> None:
        await channel.set_variable("A", "1")
        try:
            await channel.set_variable("B", "2")
        except AgiHangup as exc:
            events.append(f"hangup after {exc.reply.raw if exc.reply else None}")
        events.append(f"get {await channel.get_variable('B')}")
        with pytest.raises(AgiHangup):
            await channel.stream_file("beep")
        events.append("done")

    call = await run_call("127.0.0.1", server.port, CallerScript(steps=[HangUpAfter(1)]))
    assert events == ["hangup after 200 result=1", "get 2", "done"]
    assert call.replies[:3] == ["200 result=1", "HANGUP", "200 result=1"]
    assert call.agistatus == "HANGUP"


async def test_hangup_command(start_server: StartServer) -> None:
    seen: list[object] = []
    server = await start_server()

    @server.route("route")
    async def route(channel: AgiChannel, request: AgiRequest) -> None:
        await channel.hangup()
        seen.append(channel.hung_up)
        await channel.hangup()  # no-op: Asterisk would answer 511
        seen.append(await channel.get_variable("ROUTE"))

    call = await run_call("127.0.0.1", server.port, CallerScript(), hangup_delay=0.001)
    assert seen == [True, None]
    assert call.commands == ["HANGUP", "GET VARIABLE ROUTE"]
    assert call.agistatus == "HANGUP"


async def test_inline_hangup_before_a_reply_does_not_shift_replies(start_server: StartServer) -> None:
    seen: list[object] = []
    server = await start_server()

    @server.route("route")
    async def route(channel: AgiChannel, request: AgiRequest) -> None:
        try:
            await channel.set_variable("ROUTE", "x")
        except AgiHangup as exc:
            seen.append(exc.reply.raw if exc.reply else None)
        seen.append(await channel.get_variable("ROUTE"))
        seen.append(await channel.get_variable("OTHER"))

    reader, writer = await raw_peer(server.port, suite_env())
    assert await expect_line(reader) == b'SET VARIABLE ROUTE "x"\n'
    writer.write(b"HANGUP\n200 result=1\n")  # the HANGUP line arrived first
    assert await expect_line(reader) == b"GET VARIABLE ROUTE\n"
    writer.write(b"200 result=1 (x)\n")
    assert await expect_line(reader) == b"GET VARIABLE OTHER\n"
    writer.write(b"200 result=0\n")
    assert await expect_line(reader) == b""  # server closed
    writer.close()
    assert seen == ["200 result=1", "x", None]


async def test_a_key_code_that_is_no_dtmf_key_is_a_protocol_error(start_server: StartServer) -> None:
    # Found by fuzzing: "200 result=99999999999" made chr() raise OverflowError out of
    # stream_file/wait_for_digit; the reply is read, so the channel stays in step.
    seen: list[object] = []
    server = await start_server()

    @server.route("route")
    async def route(channel: AgiChannel, request: AgiRequest) -> None:
        for command in (lambda: channel.stream_file("menu", "1"), lambda: channel.wait_for_digit(100)):
            with pytest.raises(AgiProtocolError, match="not the code of a DTMF key"):
                await command()
        seen.append(await channel.wait_for_digit(100))

    reader, writer = await raw_peer(server.port, suite_env())
    assert await expect_line(reader) == b'STREAM FILE menu "1"\n'
    writer.write(b"200 result=99999999999 endpos=0\n")
    assert await expect_line(reader) == b"WAIT FOR DIGIT 100\n"
    writer.write(b"200 result=120\n")  # "x"
    assert await expect_line(reader) == b"WAIT FOR DIGIT 100\n"
    writer.write(b"200 result=35\n")  # "#"
    assert await expect_line(reader) == b""
    writer.close()
    assert seen == ["#"]
    assert server.counters.completed == 1


async def test_eof_and_reset_are_hangups(start_server: StartServer) -> None:
    reasons: list[str] = []
    server = await start_server()

    @server.route("route")
    async def route(channel: AgiChannel, request: AgiRequest) -> None:
        try:
            await channel.get_data("menu", 5000, 4)
        except AgiHangup as exc:
            reasons.append(exc.reason)
        with pytest.raises(AgiHangup):
            await channel.set_variable("X", "1")

    reader, writer = await raw_peer(server.port, suite_env())
    assert (await expect_line(reader)).startswith(b"GET DATA menu")
    writer.write(b"200 res")  # a partial line, then the peer vanishes
    writer.close()
    await _settle(server, "ended")
    assert reasons == ["connection lost: IncompleteReadError"]
    assert server.counters.completed == 1  # the handler caught the hangup and returned


async def test_reply_timeout(start_server: StartServer) -> None:
    raised: list[BaseException] = []
    server = await start_server(reply_timeout=0.2)

    @server.route("route")
    async def route(channel: AgiChannel, request: AgiRequest) -> None:
        try:
            await channel.stream_file("long-announcement")  # 2 s at time_scale=1
        except AgiTimeout as exc:
            raised.append(exc)
        with pytest.raises(AgiTimeout):
            await channel.set_variable("X", "1")
        assert not channel.connected

    script = CallerScript(prompts={"long-announcement": 16000})
    call = await run_call("127.0.0.1", server.port, script, time_scale=1.0, deadline=5)
    assert len(raised) == 1
    assert call.agistatus == "SUCCESS"
    assert call.commands == ['STREAM FILE long-announcement ""']


async def test_standalone_channel_times_out_without_a_watchdog() -> None:
    """AgiChannel outside FastAgiServer falls back to asyncio.timeout per command."""
    got: list[BaseException] = []
    done = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\n\n")
        channel = AgiChannel(reader, writer, reply_timeout=0.1)
        try:
            await channel.answer()
        except AgiTimeout as exc:
            got.append(exc)
        writer.close()
        done.set()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    reader, writer = await raw_peer(server.sockets[0].getsockname()[1], suite_env())
    assert await expect_line(reader) == b"ANSWER\n"  # and never answered
    await asyncio.wait_for(done.wait(), 2)
    writer.close()
    server.close()
    assert len(got) == 1
    assert "within 0.1 s" in str(got[0])
