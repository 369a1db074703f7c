"""Opening hours, bank holidays, closures and special openings of one tenant (pure).

Precedence for an instant, first match wins: a dated closure, a bank holiday
(unless a special opening overrides it), a special opening, the weekly hours.
A day's ranges belong to that day: a bank holiday closes the day's own hours,
including an overnight range's tail after midnight, and a range that starts the
evening before a holiday still runs to its end. Ranges are half-open.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo

import holidays

from routing.core.plan import Closure, SpecialOpening, Tenant, WeekdayName
from routing.core.times import DAY_SECONDS, WEEKDAYS, ClockRange, seconds_of_day

_SUBDIVISIONS = {"england-and-wales": "ENG", "scotland": "SCT", "northern-ireland": "NIR"}
_DAY_GROUPS = {"weekdays": WEEKDAYS[:5], "weekend": WEEKDAYS[5:]}

StateKind = Literal["hours", "outside_hours", "bank_holiday", "closure", "special_opening", "special_closed"]


@lru_cache(maxsize=256)
def bank_holidays(calendar: str, year: int) -> dict[date, str]:
    """UK bank holidays of one nation and year, from the ``holidays`` package."""
    subdivision = _SUBDIVISIONS.get(calendar)
    if subdivision is None:
        return {}
    found = holidays.country_holidays("GB", subdiv=subdivision, years=year)
    return {day: str(name) for day, name in sorted(found.items())}


@dataclass(frozen=True, slots=True)
class OpenState:
    """Whether a tenant is open at an instant, and the cause an engineer reads."""

    open: bool
    kind: StateKind
    cause: str
    closure: Closure | None = None


@dataclass(frozen=True, slots=True)
class DayPlan:
    """The hours that govern one local date, with the words a trace uses for them."""

    ranges: tuple[ClockRange, ...]
    kind: StateKind
    label: str
    day: str  # "2026-11-24 Tue"

    @property
    def hours_text(self) -> str:
        return ", ".join(str(r) for r in self.ranges) or "closed all day"


def expand_hours(hours: Mapping[WeekdayName, list[ClockRange]]) -> tuple[tuple[ClockRange, ...], ...]:
    """Weekly hours by weekday index (Monday 0); ``weekdays``/``weekend`` expand to their days."""
    week: list[list[ClockRange]] = [[] for _ in WEEKDAYS]
    for key, ranges in hours.items():
        for day in _DAY_GROUPS.get(key, (key,)):
            week[WEEKDAYS.index(day)].extend(ranges)
    return tuple(tuple(sorted(day, key=lambda r: r.start)) for day in week)


class Calendar:
    """A tenant's compiled calendar: answers :meth:`state_at` for any instant."""

    def __init__(self, tenant: Tenant) -> None:
        self.zone = ZoneInfo(tenant.timezone)
        self.nation = tenant.bank_holidays
        self.weekly = expand_hours(tenant.hours)
        self.closures = tuple((*c.span(), c) for c in tenant.closures)
        self.special: dict[date, SpecialOpening] = {s.date: s for s in tenant.special_openings}
        self._days: dict[date, DayPlan] = {}  # memo of day_plan(): a pure function of the date

    def holiday(self, day: date) -> str | None:
        return bank_holidays(self.nation, day.year).get(day)

    def day_plan(self, day: date) -> DayPlan:
        """Which hours govern local ``day``: a special opening, a bank holiday, or the week's."""
        known = self._days.get(day)
        if known is None:
            if len(self._days) > 4096:
                self._days.clear()
            known = self._days[day] = self._day_plan(day)
        return known

    def _day_plan(self, day: date) -> DayPlan:
        special = self.special.get(day)
        holiday = self.holiday(day)
        name = f"{day.isoformat()} {day:%a}"
        if special is not None and (special.overrides_holiday or holiday is None):
            label = f"special opening ({special.reason})"
            return DayPlan(tuple(special.hours), "special_opening", label, name)
        if holiday is not None:
            return DayPlan((), "bank_holiday", f"{holiday} (bank holiday)", name)
        weekday = day.weekday()
        return DayPlan(self.weekly[weekday], "hours", f"weekly hours ({WEEKDAYS[weekday]})", name)

    def closure_at(self, local: datetime) -> Closure | None:
        for start, end, closure in self.closures:
            if start <= local < end:
                return closure
        return None

    def wall_clock(self, now: datetime) -> datetime:
        """``now`` on the tenant's wall clock, as a naive local date-time."""
        return now.astimezone(self.zone).replace(tzinfo=None)

    def state_at(self, now: datetime, local: datetime | None = None) -> OpenState:
        """The state at aware instant ``now``, judged on the tenant's wall clock (``local``,
        when the caller has it already)."""
        local = self.wall_clock(now) if local is None else local
        closure = self.closure_at(local)
        if closure is not None:
            cause = f"{local.date().isoformat()} closure ({closure.reason}): closed"
            return OpenState(False, "closure", cause, closure)
        seconds = seconds_of_day(local.time())
        today = self.day_plan(local.date())
        for rng in today.ranges:
            if rng.start <= seconds < rng.end:
                return OpenState(True, today.kind, f"{today.day} {today.label} {rng.text}: open")
        yesterday = self.day_plan(local.date() - timedelta(days=1))
        for rng in yesterday.ranges:
            if rng.overnight and seconds + DAY_SECONDS < rng.end:
                cause = f"{yesterday.day} {yesterday.label} {rng.text} (overnight): open"
                return OpenState(True, yesterday.kind, cause)
        return self._closed(local, today)

    def _closed(self, local: datetime, today: DayPlan) -> OpenState:
        day = today.day[:10]
        if today.kind == "bank_holiday":
            return OpenState(False, "bank_holiday", f"{day} {today.label}: closed")
        if today.kind == "special_opening":
            return OpenState(False, "special_closed", f"{day} {today.label}, outside its hours: closed")
        cause = f"{today.day} {local.time().isoformat('seconds')} outside weekly hours ({today.hours_text})"
        return OpenState(False, "outside_hours", cause)

    # --- timeline -------------------------------------------------------------------------

    def _local_boundaries(self, day: date) -> Iterator[datetime]:
        midnight = datetime.combine(day, datetime.min.time())
        yield midnight
        for rng in (*self.weekly[day.weekday()], *self._special_ranges(day)):
            yield midnight + timedelta(seconds=rng.start)
            yield midnight + timedelta(seconds=rng.end)
        for start, end, _ in self.closures:
            yield from (t for t in (start, end) if t.date() == day)

    def _special_ranges(self, day: date) -> tuple[ClockRange, ...]:
        special = self.special.get(day)
        return tuple(special.hours) if special else ()

    def boundaries(self, start: date, end: date) -> list[datetime]:
        """Every instant (aware, UTC) in ``[start, end]`` local days where the state may change."""
        found: set[datetime] = set()
        day = start - timedelta(days=1)
        while day <= end:
            for local in self._local_boundaries(day):
                found.add(local.replace(tzinfo=self.zone).astimezone(ZoneInfo("UTC")))
            day += timedelta(days=1)
        return sorted(found)


@dataclass(frozen=True, slots=True)
class Transition:
    at: datetime  # aware, in the tenant's zone
    state: OpenState


def timeline(calendar: Calendar, start: date, end: date) -> list[Transition]:
    """Every open/closed transition from local ``start`` 00:00 to ``end`` 24:00, with its cause.

    The first entry is the state at the start; a change of cause while closed
    (e.g. evening, then a bank holiday from midnight) is listed too."""
    first = datetime.combine(start, datetime.min.time()).replace(tzinfo=calendar.zone)
    last = datetime.combine(end + timedelta(days=1), datetime.min.time()).replace(tzinfo=calendar.zone)
    result: list[Transition] = []
    for instant in [first, *calendar.boundaries(start, end)]:
        if not first <= instant < last:
            continue
        state = calendar.state_at(instant)
        if not result or (state.open, state.kind) != (result[-1].state.open, result[-1].state.kind):
            result.append(Transition(instant.astimezone(calendar.zone), state))
    return result
