"""Read the raw Asterisk 22.10.1 wire captures (``shared/asterisk/*.txt``, beside the repository).

A capture file holds several recorded calls (``# ---- call 5401: ...``) or variants
(``# ---- variant (b): ...``). Data lines are ``<seconds> <A->S|S->A> <python bytes repr>``;
lines starting with ``#`` are the recorder's annotations (DTMF times, AGISTATUS, AMI events).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_SECTION = re.compile(r"^# ---- (?:call (\d+)|variant \((\w)\)):")
_DATA = re.compile(r"^\s*(\d+\.\d+) (A->S|S->A) (.*)$")
_CLOSED = re.compile(r"^#\s+(\d+\.\d+) server closed the connection")


def captures_dir() -> Path:
    """``shared/asterisk`` beside the repository (CI checks it out there) or further up."""
    for parent in ROOT.parents:
        candidate = parent / "shared" / "asterisk"
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"Asterisk captures not found: expected shared/asterisk beside {ROOT}")


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
