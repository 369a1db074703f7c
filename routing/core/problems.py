"""Problems found in a routing plan, each with the path of the value at fault (pure)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

Severity = Literal["error", "warning"]
PathPart = str | int
_BARE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a plan. ``path`` reads like ``tenants.harborough.menus.main``."""

    path: str
    message: str
    severity: Severity = "error"
    source: str | None = None  # "plan.yaml:42" when known
    # the path as parts, for the loader to find the line: ("tenants", "h", "menus", "main")
    parts: tuple[PathPart, ...] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def at(cls, parts: Sequence[PathPart], message: str, severity: Severity = "error") -> Problem:
        """A problem at the value ``parts`` leads to (its line is found by the loader)."""
        return cls(format_path(parts), message, severity, parts=tuple(parts))

    def __str__(self) -> str:
        where = f"{self.source}: " if self.source else ""
        tag = "" if self.severity == "error" else "warning: "
        return f"{where}{tag}{self.path}: {self.message}"

    def as_dict(self) -> dict[str, str | None]:
        return {"severity": self.severity, "path": self.path, "message": self.message, "source": self.source}


def format_path(parts: Sequence[PathPart]) -> str:
    """``("tenants", "h", "options", "7", 0)`` -> ``tenants.h.options."7"[0]``."""
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        elif _BARE.match(part):
            text += f".{part}" if text else part
        else:
            quoted = '"' + part.replace('"', '\\"') + '"'
            text += f".{quoted}" if text else quoted
    return text or "(plan)"


def errors(problems: Iterable[Problem]) -> list[Problem]:
    return [p for p in problems if p.severity == "error"]


def warnings(problems: Iterable[Problem]) -> list[Problem]:
    return [p for p in problems if p.severity == "warning"]
