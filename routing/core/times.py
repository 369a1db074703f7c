"""Clock times and ranges as the plan writes them (pure).

A range ``"08:30-17:30"`` is half-open: open from 08:30:00 up to, not including,
17:30:00. A range whose end is not after its start runs overnight into the next
day (``"22:00-02:00"``); ``"24:00"`` may end a range. Asterisk's ``GotoIfTime``
differs: its end minute is inclusive, so ``08:30-17:30`` there still matches at
17:30:59.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time
from functools import lru_cache

_CLOCK = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")
_RANGE = re.compile(r"^\s*(\d\d:\d\d)\s*-\s*(\d\d:\d\d)\s*$")
DAY_SECONDS = 24 * 3600
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class TimeFormatError(ValueError):
    """A clock time, range, date or date-time the plan cannot use."""


def parse_clock(text: str, *, allow_24: bool = False) -> int:
    """``"08:30"`` -> seconds since midnight (30600). ``"24:00"`` only if ``allow_24``."""
    if allow_24 and text == "24:00":
        return DAY_SECONDS
    match = _CLOCK.match(text)
    if match is None:
        raise TimeFormatError(f"'{text}' is not a clock time (expected HH:MM, e.g. 08:30)")
    return int(match.group(1)) * 3600 + int(match.group(2)) * 60


@dataclass(frozen=True, slots=True)
class ClockRange:
    """``[start, end)`` in seconds since local midnight; ``end`` may exceed a day (overnight)."""

    start: int
    end: int

    @property
    def overnight(self) -> bool:
        return self.end > DAY_SECONDS

    @property
    def text(self) -> str:
        return _range_text(self.start, self.end)

    def __str__(self) -> str:
        return _range_text(self.start, self.end)


@lru_cache(maxsize=1024)
def _range_text(start: int, end: int) -> str:
    return f"{format_clock(start)}-{format_clock(end % DAY_SECONDS or end)}"


def parse_range(text: str) -> ClockRange:
    """``"08:30-17:30"`` -> ClockRange(30600, 63000); ``"22:00-02:00"`` runs overnight."""
    match = _RANGE.match(text)
    if match is None:
        raise TimeFormatError(f"'{text}' is not a time range (expected HH:MM-HH:MM, e.g. 08:30-17:30)")
    start = parse_clock(match.group(1))
    end = parse_clock(match.group(2), allow_24=True)
    if end == start:
        raise TimeFormatError(f"'{text}' is empty: its start and end are the same")
    if end < start:
        end += DAY_SECONDS
    return ClockRange(start, end)


def format_clock(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{hours:02d}:{minutes:02d}"
    return f"{text}:{secs:02d}" if secs else text


def parse_date(text: str) -> date:
    """``"2026-12-25"`` -> date; a date must carry its year."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise TimeFormatError(f"'{text}' is not a date (expected YYYY-MM-DD)") from None


def parse_local_datetime(text: str) -> datetime:
    """``"2026-12-24 12:00"`` (or with seconds) -> a naive local date-time."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise TimeFormatError(f"'{text}' is not a date-time (expected YYYY-MM-DD HH:MM)") from None
    if parsed.tzinfo is not None:
        raise TimeFormatError(f"'{text}' carries a UTC offset: write local time in the tenant's zone")
    return parsed


def seconds_of_day(moment: time) -> int:
    return moment.hour * 3600 + moment.minute * 60 + moment.second
