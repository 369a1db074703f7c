"""Read the capture excerpts in tests/fixtures/asterisk (copied from real Asterisk 22.10.1 logs)."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "asterisk"


@dataclass(frozen=True)
class Exchange:
    """Items in wire order: ("S->A", bytes), ("A->S", bytes) or ("A->S", None) for EOF."""

    items: list[tuple[str, bytes | None]]
    agistatus: str


def load_env(name: str) -> bytes:
    """The environment block bytes of ``<name>.env``."""
    lines = (FIXTURES / f"{name}.env").read_text().splitlines()
    return b"".join(ast.literal_eval(line) for line in lines if not line.startswith("#"))


def load_exchange(name: str) -> Exchange:
    """The command/reply exchange of ``<name>.exchange``."""
    items: list[tuple[str, bytes | None]] = []
    status = ""
    for line in (FIXTURES / f"{name}.exchange").read_text().splitlines():
        if line.startswith("#"):
            continue
        direction, _, data = line.partition(" ")
        if direction == "AGISTATUS":
            status = data
        else:
            items.append((direction, None if data == "EOF" else ast.literal_eval(data)))
    return Exchange(items, status)


_CAPTURE_LINE = re.compile(r"^\s*\d+\.\d+ (A->S|S->A) (.*)$")


@dataclass
class AgiConnection:
    """One FastAGI connection of an annotated capture (``# ---- FastAGI connection`` and its
    ``<seconds> <direction> <bytes repr>`` lines): the environment and each command with its reply."""

    env: dict[str, str] = field(default_factory=dict)
    exchange: list[tuple[bytes, bytes]] = field(default_factory=list)  # (command, reply)


def agi_connections(text: str) -> list[AgiConnection]:
    """Each FastAGI connection of a capture's ``text``, in order."""
    found: list[AgiConnection] = []
    command: bytes | None = None
    for line in text.splitlines():
        if line.startswith("# ---- FastAGI connection"):
            found.append(AgiConnection())
            continue
        match = _CAPTURE_LINE.match(line)
        if not match or not found:
            continue
        data: bytes = ast.literal_eval(match.group(2))
        if match.group(1) == "S->A":
            command = None if data == b"<close>" else data
        elif command is not None:
            found[-1].exchange.append((command, data))
            command = None
        elif data != b"\n":
            key, _, value = data.decode().rstrip("\n").partition(": ")
            found[-1].env[key] = value
    return found
