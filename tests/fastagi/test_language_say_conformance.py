"""The emulated FastAGI channel against the Asterisk 22.10.1 capture of the channel's language
through AGI (``agi_language_say.txt``).

Captured: ``SET VARIABLE CHANNEL(language) cy`` is answered ``200 result=1`` and read back by
``GET VARIABLE`` and ``GET FULL VARIABLE``; a prompt missing in the channel's language is looked
up under ``en/`` (an ``en``-only prompt plays on a ``cy`` channel), but a ``cy``-only prompt does
not play on an ``en`` channel (``200 result=-1 endpos=0``, a WARNING, AGISTATUS FAILURE);
``SAY NUMBER`` / ``SAY DIGITS`` answer ``200 result=0`` in ``cy`` as in ``en`` (the English digit
files; ``SAY NUMBER`` warns "Language cy not currently supported"); the next ``AGI()`` on the
channel is told ``agi_language: cy``."""

from __future__ import annotations

import asyncio
import re

from emulator.agi import SAY_FILE_SAMPLES, CallerScript, EmulatedCall, run_call
from tests.fastagi.transcripts import FIXTURES, AgiConnection, agi_connections

CAPTURE = FIXTURES / "agi_language_say.txt"
_DATA = re.compile(r"^\s*\d+\.\d+ (A->S|S->A) (.*)$")
_PLAYING = re.compile(r"Playing '([^']+)\.slin'.*\(language '(\w+)'\)")
# The capture's sounds (its header): en/ is the whole English set, cy/ holds two files only.
CY_ONLY = {"cy/cr-croeso": 45235, "cy/hello-world": 3404}  # lengths: the capture's endpos
EN = {"en/vm-goodbye": 6920, "en/hello-world": 11360}


def sessions() -> list[AgiConnection]:
    return agi_connections(CAPTURE.read_text(encoding="utf-8"))


def log(connection: int) -> list[str]:
    """Asterisk's log lines during FastAGI connection ``connection`` (1 or 2), without the prefix."""
    lines: list[str] = []
    current = 0
    for line in CAPTURE.read_text(encoding="utf-8").splitlines():
        if line.startswith("# ---- FastAGI connection"):
            current += 1
        elif "asterisk log: " in line and current == connection:
            lines.append(line.split("asterisk log: ", 1)[1])
    return lines


def warnings(connection: int) -> list[str]:
    """The WARNING lines, as ``file.c: ...`` / ``say.c: ...``."""
    return [line.split("] ", 1)[1] for line in log(connection) if line.startswith("WARNING[")]


def played(connection: int) -> list[str]:
    """Each recording Asterisk played, as the path it came from: the log names the file and the
    channel's language; the capture's sounds say which directory holds it."""
    paths = []
    for file, language in _PLAYING.findall("\n".join(log(connection))):
        paths.append(f"cy/{file}" if f"{language}/{file}" in CY_ONLY else f"en/{file}")
    return paths


def recordings() -> dict[str, int]:
    """The emulator's sounds: as the capture's, with the English digit files it played."""
    digits = {path: SAY_FILE_SAMPLES for path in played(1) + played(2) if "/digits/" in path}
    return {**EN, **CY_ONLY, **digits}


FIRST, SECOND = sessions()


class Commands:
    """A FastAGI server that sends the captured commands in turn and keeps each reply line."""

    def __init__(self, commands: list[bytes]) -> None:
        self.commands = commands
        self.replies: list[bytes] = []
        self.done = asyncio.Event()

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\n\n")
        for command in self.commands:
            writer.write(command)
            await writer.drain()
            self.replies.append(await reader.readline())
        writer.close()
        self.done.set()


async def emulate(commands: list[bytes], language: str = "en") -> tuple[list[bytes], EmulatedCall]:
    server_side = Commands(commands)
    server = await asyncio.start_server(server_side, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    script = CallerScript(answered=True, prompts=recordings(), language=language)
    try:
        call = await run_call("127.0.0.1", port, script, deadline=60)
        await asyncio.wait_for(server_side.done.wait(), 5)
    finally:
        server.close()
    return server_side.replies, call


def test_what_the_capture_shows() -> None:
    replies = dict(FIRST.exchange[5:8])  # after the language is set
    assert FIRST.env["agi_language"] == "en"
    assert replies[b"SET VARIABLE CHANNEL(language) cy\n"] == b"200 result=1\n"
    assert replies[b"GET VARIABLE CHANNEL(language)\n"] == b"200 result=1 (cy)\n"
    assert replies[b"GET FULL VARIABLE ${CHANNEL(language)}\n"] == b"200 result=1 (cy)\n"
    assert FIRST.exchange[1] == (
        b'STREAM FILE cr-croeso ""\n',
        b"200 result=-1 endpos=0\n",
    )  # cy only, en channel
    assert FIRST.exchange[9] == (
        b'STREAM FILE vm-goodbye ""\n',
        b"200 result=0 endpos=6920\n",
    )  # en only, cy channel
    assert {reply for command, reply in FIRST.exchange if command.startswith(b"SAY ")} == {b"200 result=0\n"}
    assert SECOND.env["agi_language"] == "cy"  # the next AGI() on the channel
    assert warnings(1) == [
        "file.c: File cr-croeso does not exist in any format",
        "file.c: File cr-nowhere does not exist in any format",
        "say.c: Language cy not currently supported, defaulting to English",
        "say.c: Language cy not currently supported, defaulting to English",
    ]
    # SAY in cy: English rules (21 = 20 + 1) and, with no cy/digits/, the English files
    assert played(1)[-2:] == ["en/digits/20", "en/digits/1"]
    assert "cy/cr-croeso" in played(1)
    assert "en/vm-goodbye" in played(1)[5:]  # on the cy channel, from en/


async def test_the_emulator_answers_every_command_as_captured() -> None:
    """Every command of the first AGI(): the same reply lines (GET/SET of CHANNEL(language), a
    cy-only prompt on the en channel, an en-only prompt on the cy channel, a prompt in both, one
    in neither, SAY NUMBER / SAY DIGITS in en and cy)."""
    commands = [command for command, _ in FIRST.exchange]
    replies, call = await emulate(commands)
    assert replies == [reply for _, reply in FIRST.exchange]
    assert call.language == "cy"  # what the PBX carries to the next AGI()'s agi_language
    assert call.agistatus == "FAILURE"  # the missing prompts, as captured


async def test_the_recordings_played_and_the_warnings_are_the_captured_ones() -> None:
    """The prompts and SAY's digit files come from the directories Asterisk took them from
    (cy/ first on the cy channel, then en/); the WARNING lines are Asterisk's."""
    _, call = await emulate([command for command, _ in FIRST.exchange])
    assert call.played == played(1)
    assert call.warnings == warnings(1)


async def test_a_prompt_only_under_cy_is_missing_on_an_en_channel() -> None:
    replies, call = await emulate([b'STREAM FILE cr-croeso ""\n'])
    assert replies == [FIRST.exchange[1][1]]
    assert call.agistatus == "FAILURE"
    assert call.played == []


async def test_the_next_agi_on_the_welsh_channel_says_digits_from_en() -> None:
    """The second AGI(): ``agi_language: cy``; SAY DIGITS 4 plays en/digits/4, no warning."""
    replies, call = await emulate([command for command, _ in SECOND.exchange], language="cy")
    assert replies == [reply for _, reply in SECOND.exchange]
    assert call.played == played(2) == ["en/digits/4"]
    assert call.warnings == warnings(2) == []
    assert call.agistatus == "SUCCESS"
