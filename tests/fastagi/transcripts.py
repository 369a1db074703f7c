"""Read the capture excerpts in tests/fixtures/asterisk (copied from real Asterisk 22.10.1 logs)."""

from __future__ import annotations

import ast
from dataclasses import dataclass
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
