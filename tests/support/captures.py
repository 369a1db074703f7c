"""Read the raw Asterisk 22.10.1 wire captures (``shared/asterisk/*.txt``, beside the repository).

A capture file holds several recorded calls (``# ---- call 5401: ...``) or variants
(``# ---- variant (b): ...``). Data lines are ``<seconds> <A->S|S->A> <python bytes repr>``;
lines starting with ``#`` are the recorder's annotations (DTMF times, AGISTATUS, AMI events).

:func:`transcripts_dir` is the one place the tests look for them: ``CALLROUTER_TRANSCRIPTS``
when set, else ``../shared/asterisk`` beside the repository (where CI checks them out).
"""

from __future__ import annotations

import ast
import asyncio
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TRANSCRIPTS_VARIABLE = "CALLROUTER_TRANSCRIPTS"
_SECTION = re.compile(r"^# ---- (?:call (\d+)|variant \((\w)\)):")
_DATA = re.compile(r"^\s*(\d+\.\d+) (A->S|S->A) (.*)$")
_CLOSED = re.compile(r"^#\s+(\d+\.\d+) server closed the connection")


def transcripts_dir() -> Path:
    """Where the Asterisk transcripts are: ``$CALLROUTER_TRANSCRIPTS`` or ``../shared/asterisk``."""
    return Path(os.environ.get(TRANSCRIPTS_VARIABLE, REPO / ".." / "shared" / "asterisk"))


def captures_dir() -> Path:
    """:func:`transcripts_dir`, which must exist: these tests have no excerpts to fall back on."""
    found = transcripts_dir()
    if not found.is_dir():
        raise FileNotFoundError(
            f"Asterisk captures not found in {found}: check them out beside the repository "
            f"(shared/asterisk) or set {TRANSCRIPTS_VARIABLE}"
        )
    return found


@dataclass
class Capture:
    """One recorded call: wire items in order and the recorder's annotations."""

    title: str
    items: list[tuple[float, str, bytes | None]] = field(default_factory=list)  # None: EOF
    notes: list[str] = field(default_factory=list)
    closed_at: float | None = None

    def note(self, text: str) -> str:
        """The first annotation containing ``text``."""
        return next(note for note in self.notes if text in note)

    def sent_by_asterisk(self) -> list[tuple[float, bytes | None]]:
        return [(t, data) for t, direction, data in self.items if direction == "A->S"]

    def dtmf(self) -> list[tuple[float, str]]:
        """``# DTMFEnd received (s after accept): 1@1.15 2@1.45 ...`` as (seconds, digit)."""
        text = self.note("DTMFEnd received").partition("):")[2]
        return [(float(at), digit) for digit, _, at in (item.partition("@") for item in text.split())]


def load_capture(name: str) -> dict[str, Capture]:
    """The calls of ``<name>.txt``, by call number (``"5401"``) or variant letter (``"b"``)."""
    sections: dict[str, Capture] = {}
    current: Capture | None = None
    for line in (captures_dir() / f"{name}.txt").read_text().splitlines():
        if header := _SECTION.match(line):
            current = sections.setdefault(header[1] or header[2], Capture(line))
        elif current is None:
            continue
        elif data := _DATA.match(line):
            raw = ast.literal_eval(data[3])
            current.items.append((float(data[1]), data[2], None if raw == b"EOF" else raw))
        elif closed := _CLOSED.match(line):
            current.closed_at = float(closed[1])
        elif line.startswith("#"):
            current.notes.append(line.lstrip("# ").rstrip())
    return sections


def after_env(capture: Capture) -> list[tuple[float, str, bytes | None]]:
    """The items after the environment block (which ends with a bare ``\\n``)."""
    end = next(i for i, (_, d, data) in enumerate(capture.items) if d == "A->S" and data == b"\n")
    return capture.items[end + 1 :]


def asterisk_lines(capture: Capture) -> list[tuple[float, bytes | None]]:
    """What Asterisk sent after the environment block, with the capture's times."""
    return [(at, data) for at, direction, data in after_env(capture) if direction == "A->S"]


class CaptureServer:
    """Plays the server's side of a capture: sends its commands when the capture did (gaps of
    more than 50 ms are kept, on the emulator's time scale), reads what Asterisk sends."""

    def __init__(self, capture: Capture, time_scale: float) -> None:
        self.capture = capture
        self.scale = time_scale or 1.0
        self.received: list[bytes | None] = []
        self.done = asyncio.Event()

    async def pause(self, gap: float) -> None:
        if gap > 0.05:
            await asyncio.sleep(gap * self.scale)

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\n\n")
        last = 0.0
        for at, direction, data in after_env(self.capture):
            if direction == "S->A" and data is not None:
                await self.pause(at - last)
                writer.write(data)
                await writer.drain()
            else:
                line = await reader.readline()
                self.received.append(line or None)
                if not line:
                    break
            last = at
        if self.capture.closed_at is not None and self.received[-1:] != [None]:
            await self.pause(self.capture.closed_at - last)
        writer.close()
        self.done.set()
