"""The channel's language on the AGI wire, checked against the Asterisk 22.10.1 capture.

Observed (``agi_suite_pjsip.txt``): ``agi_language`` is the fifth line of the environment block,
``en`` for a channel whose language nobody set; ``SET VARIABLE`` answers ``200 result=1``; a
dialplan function reads through ``GET VARIABLE`` (``CHANNEL(state)`` -> ``200 result=1 (Up)``).
Writing ``CHANNEL(language)`` over AGI was not captured: ``handle_setvariable`` (res_agi.c)
calls ``pbx_builtin_setvar_helper``, which writes a name ending in ``)`` through the dialplan
function, as ``Set()`` does; the channel's language then picks each prompt's recording and is
the next ``AGI()``'s ``agi_language`` (``setup_env``). The controller relies on both: the choice
sets it, and each later route reads the caller's language back from its environment block.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from emulator.agi import CallerScript, EmulatedCall, env_lines, run_call
from ivr.fastagi.protocol import parse_request
from tests.fastagi.transcripts import load_env, load_exchange


def captured_reply(exchange: str, command: bytes) -> bytes:
    """Asterisk's reply to ``command`` in a captured exchange."""
    items = load_exchange(exchange).items
    for index, (direction, data) in enumerate(items):
        if direction == "S->A" and data == command:
            reply = items[index + 1][1]
            assert reply is not None
            return reply
    raise AssertionError(f"{command!r} is not in {exchange}")


class Commands:
    """A FastAGI server that sends ``commands`` in turn and keeps each reply line."""

    def __init__(self, commands: Sequence[bytes]) -> None:
        self.commands = commands
        self.env = b""
        self.replies: list[bytes] = []
        self.done = asyncio.Event()

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.env = await reader.readuntil(b"\n\n")
        for command in self.commands:
            writer.write(command)
            await writer.drain()
            self.replies.append(await reader.readline())
        writer.close()
        self.done.set()


async def session(commands: Sequence[bytes], script: CallerScript) -> tuple[Commands, EmulatedCall]:
    server_side = Commands(commands)
    server = await asyncio.start_server(server_side, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        call = await run_call("127.0.0.1", port, script, deadline=5)
        await asyncio.wait_for(server_side.done.wait(), 2)
    finally:
        server.close()
    return server_side, call


def test_agi_language_is_the_channels_language_in_its_place() -> None:
    """The captured block says ``agi_language: en`` fifth; the controller reads it as the call's
    language; the emulator puts a Welsh channel's ``cy`` in the same place, all else unchanged."""
    block = load_env("agi_suite_pjsip").decode().splitlines()
    assert block[4] == "agi_language: en"
    assert parse_request(load_env("agi_suite_pjsip")).language == "en"
    script = CallerScript(dial="1000", context="probe", priority=3, language="cy")
    keys = [key for key, _ in env_lines(script, "suite", "agi://x/suite", "PJSIP/sipp-00000023", "1.1")]
    assert keys == [line.partition(":")[0] for line in block if line and not line.startswith("agi_arg_")]
    assert env_lines(script, "suite", "agi://x/suite", "PJSIP/sipp-00000023", "1.1")[4] == (
        "agi_language",
        "cy",
    )


async def test_setting_the_language_function_is_answered_as_set_variable_and_changes_the_recording() -> None:
    """``SET VARIABLE CHANNEL(language) cy`` gets the captured ``SET VARIABLE`` reply; reading
    it back works as the captured ``GET VARIABLE CHANNEL(state)``; prompts are then looked up
    under ``cy/``; it is not a channel variable (no VarSet)."""
    set_reply = captured_reply("agi_suite_pjsip", b"SET VARIABLE ROUTE revenues\n")
    assert set_reply == b"200 result=1\n"
    assert captured_reply("agi_suite_pjsip", b"GET VARIABLE CHANNEL(state)\n") == b"200 result=1 (Up)\n"
    server_side, call = await session(
        [
            b"GET VARIABLE CHANNEL(language)\n",
            b'STREAM FILE hello-world ""\n',
            b"SET VARIABLE CHANNEL(language) cy\n",
            b"GET VARIABLE CHANNEL(language)\n",
            b'STREAM FILE hello-world ""\n',
        ],
        CallerScript(answered=True),
    )
    assert server_side.replies == [
        b"200 result=1 (en)\n",
        b"200 result=0 endpos=11360\n",
        set_reply,
        b"200 result=1 (cy)\n",
        b"200 result=0 endpos=11360\n",
    ]
    assert call.played == ["en/hello-world", "cy/hello-world"]
    assert call.language == "cy"
    assert call.varsets == []
