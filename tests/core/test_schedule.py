"""Opening hours at their boundaries, across clock changes, holidays, closures and openings."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from routing.core.schedule import timeline
from tests.core.plans import compiled, london, utc

WEEKDAY_PLAN = compiled()


def is_open(plan_at: datetime, **tenant: object) -> bool:
    plan = compiled(**tenant) if tenant else WEEKDAY_PLAN
    return plan.calendars["council"].state_at(plan_at).open


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        ("2026-11-24 08:29:59", False),
        ("2026-11-24 08:30:00", True),
        ("2026-11-24 17:29:59", True),
        ("2026-11-24 17:30:00", False),
        ("2026-11-27 12:00:00", True),  # Friday
        ("2026-11-28 12:00:00", False),  # Saturday
        ("2026-11-29 12:00:00", False),  # Sunday
    ],
)
def test_default_hours_are_half_open_weekdays(moment: str, expected: bool) -> None:
    """Default hours: weekdays [08:30, 17:30) Europe/London."""
    assert is_open(london(moment)) is expected


@pytest.mark.parametrize(
    ("instant_utc", "expected"),
    [
        ("2026-03-27 08:29:59", False),  # Friday before the change: GMT, 08:29:59 local
        ("2026-03-27 08:30:00", True),
        ("2026-03-30 07:29:59", False),  # Monday after 29 March: BST, 08:29:59 local
        ("2026-03-30 07:30:00", True),
        ("2026-03-30 16:29:59", True),
        ("2026-03-30 16:30:00", False),
        ("2026-10-23 07:30:00", True),  # Friday before 25 October: still BST
        ("2026-10-23 16:30:00", False),
        ("2026-10-26 07:30:00", False),  # Monday after: GMT again, 07:30 local
        ("2026-10-26 08:30:00", True),
        ("2026-10-26 17:30:00", False),
    ],
)
def test_hours_follow_the_wall_clock_across_2026_clock_changes(instant_utc: str, expected: bool) -> None:
    """A UTC instant is judged on London's wall clock, whichever offset is in force."""
    assert is_open(utc(instant_utc)) is expected


NIGHT = {"hours": {"sun": ["00:30-03:00"]}}


@pytest.mark.parametrize(
    ("instant_utc", "expected"),
    [
        ("2026-03-29 00:29:59", False),
        ("2026-03-29 00:30:00", True),  # 00:30 GMT
        ("2026-03-29 00:59:59", True),  # 00:59:59 GMT, then clocks jump to 02:00 BST
        ("2026-03-29 01:00:00", True),  # 02:00 BST
        ("2026-03-29 01:59:59", True),  # 02:59:59 BST
        ("2026-03-29 02:00:00", False),  # 03:00 BST
        ("2026-10-24 23:30:00", True),  # 00:30 BST on 25 October
        ("2026-10-25 00:30:00", True),  # 01:30 BST
        ("2026-10-25 01:30:00", True),  # 01:30 GMT: the hour repeats
        ("2026-10-25 02:59:59", True),  # 02:59:59 GMT
        ("2026-10-25 03:00:00", False),
    ],
)
def test_ranges_on_the_clock_change_days(instant_utc: str, expected: bool) -> None:
    """On 29 March a range over 01:00-02:00 loses an hour; on 25 October it gains one."""
    assert is_open(utc(instant_utc), **NIGHT) is expected


def _open_seconds(plan_tenant: dict[str, object], day: date) -> float:
    calendar = compiled(**plan_tenant).calendars["council"]
    items = timeline(calendar, day, day)
    end = datetime.combine(day + timedelta(days=1), datetime.min.time()).replace(tzinfo=calendar.zone)
    total = 0.0
    for item, following in zip(items, [*items[1:], None], strict=True):
        if item.state.open:
            total += (following.at if following else end).timestamp() - item.at.timestamp()
    return total


def test_clock_change_days_open_for_their_real_length() -> None:
    """00:30-03:00 lasts 1.5 h on 29 March 2026 and 3.5 h on 25 October 2026."""
    assert _open_seconds(NIGHT, date(2026, 3, 29)) == 1.5 * 3600
    assert _open_seconds(NIGHT, date(2026, 10, 25)) == 3.5 * 3600
    assert _open_seconds(NIGHT, date(2026, 11, 1)) == 2.5 * 3600


@pytest.mark.parametrize(
    ("nation", "day", "expected_cause"),
    [
        ("england-and-wales", "2026-04-03", "Good Friday"),
        ("england-and-wales", "2026-04-06", "Easter Monday"),
        ("scotland", "2026-01-02", "New Year Holiday"),
        ("northern-ireland", "2026-03-17", "Saint Patrick's Day"),
    ],
)
def test_bank_holidays_of_each_nation_close_the_day(nation: str, day: str, expected_cause: str) -> None:
    """Each nation's own bank holidays close that nation's tenants for the day."""
    state = compiled(bank_holidays=nation).calendars["council"].state_at(london(f"{day} 10:00"))
    assert not state.open
    assert state.kind == "bank_holiday"
    assert expected_cause in state.cause


@pytest.mark.parametrize(
    ("nation", "day"),
    [("england-and-wales", "2026-01-02"), ("england-and-wales", "2026-03-17"), ("scotland", "2026-04-06")],
)
def test_other_nations_holidays_do_not_close(nation: str, day: str) -> None:
    """2 January is a working day in England; Easter Monday is one in Scotland."""
    assert is_open(london(f"{day} 10:00"), bank_holidays=nation)


def test_no_bank_holidays_keeps_weekly_hours() -> None:
    """bank_holidays: none opens on Good Friday by the weekly hours."""
    assert is_open(london("2026-04-03 10:00"), bank_holidays="none")


CLOSURE = {"closures": [{"from": "2026-12-24 12:00", "until": "2026-12-24 17:30", "reason": "early close"}]}


@pytest.mark.parametrize(
    ("moment", "expected"),
    [("2026-12-24 11:59:59", True), ("2026-12-24 12:00:00", False), ("2026-12-24 17:29:59", False)],
)
def test_one_off_closure_is_half_open(moment: str, expected: bool) -> None:
    """A dated closure [from, until) closes part of a day."""
    assert is_open(london(moment), **CLOSURE) is expected


def test_whole_day_closure_names_its_reason() -> None:
    """A closure by date closes the whole day and says why."""
    state = compiled(closures=[{"date": "2027-01-08", "reason": "training day"}]).calendars["council"]
    found = state.state_at(london("2027-01-08 10:00"))
    assert (found.open, found.kind) == (False, "closure")
    assert "training day" in found.cause
    assert state.state_at(london("2027-01-07 10:00")).open


SPECIAL = {"special_openings": [{"date": "2026-11-28", "hours": ["09:00-12:00"], "reason": "bins"}]}


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        ("2026-11-28 08:59:59", False),
        ("2026-11-28 09:00:00", True),
        ("2026-11-28 11:59:59", True),
        ("2026-11-28 12:00:00", False),
    ],
)
def test_special_opening_on_a_saturday(moment: str, expected: bool) -> None:
    """A special opening replaces the (empty) Saturday hours for that date."""
    assert is_open(london(moment), **SPECIAL) is expected


def test_special_opening_replaces_a_weekday_s_hours() -> None:
    """On a weekday, the special hours replace the weekly ones for that date only."""
    tenant = {"special_openings": [{"date": "2026-11-25", "hours": ["10:00-12:00"], "reason": "staff event"}]}
    assert not is_open(london("2026-11-25 09:00"), **tenant)
    assert is_open(london("2026-11-25 10:00"), **tenant)
    assert is_open(london("2026-11-26 09:00"), **tenant)


def test_bank_holiday_beats_special_opening_unless_it_overrides() -> None:
    """Precedence: a holiday closes unless the special opening says it overrides holidays."""
    opening = {"date": "2026-12-28", "hours": ["10:00-14:00"], "reason": "bins"}
    assert not is_open(london("2026-12-28 11:00"), special_openings=[opening])
    assert is_open(london("2026-12-28 11:00"), special_openings=[{**opening, "overrides_holiday": True}])


def test_closure_beats_special_opening() -> None:
    """A dated closure wins over a special opening on the same date."""
    tenant = {
        **SPECIAL,
        "closures": [{"date": "2026-11-28", "reason": "flooded building"}],
    }
    assert not is_open(london("2026-11-28 10:00"), **tenant)


OVERNIGHT = {"hours": {"fri": ["22:00-02:00"]}}


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        ("2026-11-27 21:59:59", False),
        ("2026-11-27 22:00:00", True),
        ("2026-11-28 01:59:59", True),  # Saturday morning: Friday's range
        ("2026-11-28 02:00:00", False),
        ("2026-11-28 22:30:00", False),  # Saturday evening has no range
    ],
)
def test_overnight_range_runs_into_the_next_day(moment: str, expected: bool) -> None:
    """``22:00-02:00`` on Friday opens Friday 22:00 to Saturday 02:00."""
    assert is_open(london(moment), **OVERNIGHT) is expected


def test_overnight_range_of_a_holiday_is_closed_even_after_midnight() -> None:
    """A holiday closes the day's own ranges, including their tail after midnight."""
    tenant = {"hours": {"thu": ["22:00-02:00"], "fri": ["22:00-02:00"]}}
    assert is_open(london("2026-04-03 01:00"), **tenant)  # Thursday's range, on Good Friday morning
    assert not is_open(london("2026-04-04 01:00"), **tenant)  # Good Friday's own range


def test_timeline_lists_causes_and_clock_change_offsets() -> None:
    """The timeline over Easter 2026 shows each transition with its cause and UTC offset."""
    items = timeline(WEEKDAY_PLAN.calendars["council"], date(2026, 3, 27), date(2026, 4, 7))
    rows = [(f"{t.at:%Y-%m-%d %H:%M %z}", t.state.open, t.state.kind) for t in items]
    assert rows[:3] == [
        ("2026-03-27 00:00 +0000", False, "outside_hours"),
        ("2026-03-27 08:30 +0000", True, "hours"),
        ("2026-03-27 17:30 +0000", False, "outside_hours"),
    ]
    assert ("2026-03-30 08:30 +0100", True, "hours") in rows
    assert ("2026-04-03 00:00 +0100", False, "bank_holiday") in rows
    assert ("2026-04-06 00:00 +0100", False, "bank_holiday") in rows
    assert not any(open_ and day.startswith(("2026-04-03", "2026-04-06")) for day, open_, _ in rows)
