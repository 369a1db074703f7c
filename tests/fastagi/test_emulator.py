"""The Asterisk emulator replays the captured exchanges byte for byte."""

from __future__ import annotations

import asyncio
import socket

import pytest

from emulator.agi import (
    CallerScript,
    EmulatedCall,
    HangUpDuring,
    Press,
    Silence,
    collect_digits,
    parse_args,
    run_call,
)
from tests.fastagi.transcripts import Exchange, load_env, load_exchange

SUITE_SCRIPT = CallerScript(
    dial="1000",
    context="probe",
    priority=3,
    channel="PJSIP/sipp-00000023",
    uniqueid="1795533594.71",
    missing_prompts=frozenset({"no-such-prompt-xyz"}),
)
HUP_SCRIPT = CallerScript(answered=True, steps=[HangUpDuring("GET DATA")])


class Replayer:
    """A test FastAGI server that sends the captured commands and records Asterisk's bytes."""

    def __init__(self, exchange: Exchange) -> None:
        self.exchange = exchange
        self.env = b""
        self.received: list[bytes | None] = []
        self.done = asyncio.Event()

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.env = await reader.readuntil(b"\n\n")
        items = self.exchange.items
        for index, (direction, data) in enumerate(items):
            if direction == "S->A" and data is not None:
                writer.write(data)
                await writer.drain()
            elif data is not None:
                self.received.append(await reader.readline())
            elif any(later == "S->A" for later, _ in items[index + 1 :]):
                self.received.append(await reader.read() or None)  # Asterisk closed first
                break
        writer.close()
        self.done.set()

    def expected(self) -> list[bytes | None]:
        items = self.exchange.items
        wanted: list[bytes | None] = []
        for index, (direction, data) in enumerate(items):
            later_commands = any(d == "S->A" for d, _ in items[index + 1 :])
            if direction == "A->S" and (data is not None or later_commands):
                wanted.append(data)
                if data is None:
                    break
        return wanted


async def replay(name: str, script: CallerScript, **kwargs: object) -> tuple[Replayer, EmulatedCall]:
    replayer = Replayer(load_exchange(name))
    server = await asyncio.start_server(replayer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        call = await run_call("127.0.0.1", port, script, hangup_delay=0.01, **kwargs)  # type: ignore[arg-type]
        await asyncio.wait_for(replayer.done.wait(), 2)
    finally:
        server.close()
    return replayer, call


async def test_environment_block_is_byte_exact() -> None:
    replayer, call = await replay(
        "agi_server_close_immediately",
        SUITE_SCRIPT,
        route="suite",
        query="tenant=harborough",
        args=["arg1", "arg2"],
    )
    port = replayer.env.split(b"agi://127.0.0.1:")[1].split(b"/")[0]
    assert replayer.env == load_env("agi_suite_pjsip").replace(b":4573/", b":" + port + b"/")
    assert call.agistatus == "SUCCESS"


async def test_local_and_anonymous_environment_blocks() -> None:
    local = CallerScript(
        channel_type="Local",
        dial="1000",
        caller="01632960999",
        caller_name="Harborough Test",
        context="probe",
        priority=3,
        channel="Local/1000@probe-00000012;2",
        uniqueid="1795533613.73",
    )
    replayer, _ = await replay(
        "agi_server_close_immediately",
        local,
        route="suite",
        query={"tenant": "harborough"},
        args=["arg1", "arg2"],
    )
    expected = load_env("agi_suite_local").splitlines()
    assert _without_port_and_thread(replayer.env) == _without_port_and_thread(b"\n".join(expected))
    anonymous = CallerScript(
        channel_type="Local",
        dial="1050",
        caller=None,
        context="probe",
        priority=4,
        channel="Local/1050@probe-00000000;2",
        uniqueid="1795534086.1",
    )
    replayer, _ = await replay("agi_server_close_immediately", anonymous, route="localdtmf")
    assert _without_port_and_thread(replayer.env) == _without_port_and_thread(load_env("agi_local_playdtmf"))


def _without_port_and_thread(env: bytes) -> list[bytes]:
    lines = env.rstrip(b"\n").split(b"\n")
    return [line.split(b":")[0] if b"threadid" in line or b"agi_request" in line else line for line in lines]


async def test_command_suite_replies_match_the_capture() -> None:
    replayer, call = await replay("agi_suite_pjsip", SUITE_SCRIPT)
    assert replayer.received == replayer.expected()
    assert len(replayer.received) > 100
    assert call.agistatus == replayer.exchange.agistatus == "FAILURE"
    assert call.variables["ROUTE"] == "revenues"
    assert call.variables["EXECVAR"] == "from exec"
    assert ("NoSuchApplication", "foo") not in call.apps
    assert call.answered


async def test_dtmf_replies_match_the_capture() -> None:
    steps = [
        Press("1", endpos=17280),
        Press("0"),
        Press("234"),
        Press("5"),
        Silence(),
        Silence(),
        Press("6789*#"),
    ]
    replayer, call = await replay("agi_dtmf_pjsip", CallerScript(answered=True, steps=steps))
    assert replayer.received == replayer.expected()
    assert call.agistatus == "SUCCESS"
    assert call.variables == {"ROUTE": "dtmf-done"}


@pytest.mark.parametrize(
    ("capture", "script"),
    [
        ("agi_caller_hangup_default", HUP_SCRIPT),
        (
            "agi_caller_hangup_agisighup_no",
            CallerScript(answered=True, steps=[HangUpDuring()], agisighup=False),
        ),
        ("agi_caller_hangup_agiexitonhangup_yes", CallerScript(steps=[HangUpDuring()], agiexitonhangup=True)),
        ("agi_hangup_command", CallerScript(answered=True)),
    ],
)
async def test_hangup_variants_match_the_capture(capture: str, script: CallerScript) -> None:
    replayer, call = await replay(capture, script)
    assert replayer.received == replayer.expected()
    assert call.agistatus == replayer.exchange.agistatus == "HANGUP"
    assert call.hung_up
    assert not call.dialplan_continues


async def test_exit_on_hangup_closes_the_socket() -> None:
    _, call = await replay(
        "agi_caller_hangup_agiexitonhangup_yes", CallerScript(steps=[HangUpDuring()], agiexitonhangup=True)
    )
    assert call.outcome == "exit-on-hangup"
    assert call.replies == ["200 result=-1", "HANGUP", "HANGUP"]


async def test_exit_on_hangup_without_agisighup_closes_with_no_hangup_line() -> None:
    """run_agi() leaves its loop on AGIEXITONHANGUP whether or not AGISIGHUP lets it send the
    HANGUP lines (res_agi.c; not captured)."""
    script = CallerScript(steps=[HangUpDuring()], agiexitonhangup=True, agisighup=False)
    _, call = await replay("agi_caller_hangup_agiexitonhangup_yes", script)
    assert call.outcome == "exit-on-hangup"
    assert call.replies == ["200 result=-1"]


@pytest.mark.parametrize(
    ("capture", "status", "outcome"),
    [
        ("agi_server_failure_line", "FAILURE", "failure-line"),
        ("agi_server_partial_line_close", "SUCCESS", "closed"),
        ("agi_server_status_streamfile_missing", "FAILURE", "closed"),
        ("agi_server_status_exec_missing_app", "SUCCESS", "closed"),
        ("agi_server_status_getdata_missing", "SUCCESS", "closed"),
        ("agi_server_close_immediately", "SUCCESS", "closed"),
    ],
)
async def test_agistatus_rules(capture: str, status: str, outcome: str) -> None:
    script = CallerScript(answered=True, missing_prompts=frozenset({"no-such-prompt-xyz"}))
    replayer, call = await replay(capture, script)
    assert replayer.received == replayer.expected()
    assert (call.agistatus, call.outcome) == (replayer.exchange.agistatus, outcome)
    assert call.agistatus == status
    assert call.dialplan_continues


async def test_partial_line_is_executed_and_failure_keeps_earlier_variables() -> None:
    _, partial = await replay("agi_server_partial_line_close", CallerScript())
    assert partial.variables == {"ROUTE": "partial"}
    _, failure = await replay("agi_server_failure_line", CallerScript())
    assert failure.variables == {"ROUTE": "before-failure"}
    assert failure.replies[-1] == "HANGUP"


async def test_unreachable_server_is_failure() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    call = await run_call("127.0.0.1", port, CallerScript())
    assert (call.agistatus, call.outcome) == ("FAILURE", "connect-failed")


async def test_silent_server_is_reported_not_waited_for_forever() -> None:
    closed = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # never writes a byte, like agi_server_silent.txt
        writer.close()
        closed.set()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    try:
        call = await run_call("127.0.0.1", server.sockets[0].getsockname()[1], CallerScript(), deadline=0.3)
        await asyncio.wait_for(closed.wait(), 2)
    finally:
        server.close()
    assert (call.agistatus, call.outcome) == (None, "server-silent")
    assert 0.3 <= call.duration < 1.5


def test_argument_parser_matches_capture_cases() -> None:
    # agi_suite_pjsip.txt: what GET VARIABLE returned for each SET VARIABLE form
    assert parse_args('SET VARIABLE QUOTEDSPACES "hello world from agi"')[3] == "hello world from agi"
    assert parse_args('SET VARIABLE ESCAPEDQUOTES "say \\"hi\\" now"')[3] == 'say "hi" now'
    assert parse_args('SET VARIABLE UNESCAPEDQUOTES "say "hi" now"')[3] == "say hi now"
    assert parse_args('SET VARIABLE BAREQUOTES say"hi"now')[3] == "sayhinow"
    assert parse_args('SET VARIABLE EMPTYVAR ""')[3] == ""
    assert parse_args("GET   VARIABLE    ROUTE") == ["GET", "VARIABLE", "ROUTE"]
    assert parse_args("SET VARIABLE TABS\tvalue") == ["SET", "VARIABLE", "TABS", "value"]
    assert parse_args("NOOP\r") == ["NOOP\r"]


def test_get_data_digit_collection() -> None:
    assert collect_digits("234", 3) == ("234", False)
    assert collect_digits("6789*#", 10) == ("6789*", False)
    assert collect_digits("5", 5) == ("5", True)
    assert collect_digits("", 4) == ("", True)
