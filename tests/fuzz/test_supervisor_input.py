"""Property tests of the supervisor's inputs: toggle kind, tenant, service, reason, by, expiry.

Documented (``routing.supervisor``): the checks are pure and refuse a request with
:class:`ToggleError` "with the reason in plain words" (the CLI prints it and exits 2);
anything else escaping is a traceback on the supervisor's screen. An accepted toggle keeps
the reason and name stripped, and expires after ``now`` and at most 14 days ahead. What is
stored reads back the same."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from ivr.controller import PlanHolder
from routing.live.source import toggle_from_json, toggle_json
from routing.supervisor import KINDS, MAX_EXPIRY, ToggleError, ToggleRequest, check_request, parse_expiry
from tests.controller.conftest import EXAMPLE
from tests.fuzz.strategies import LINE_TEXT

PLAN = PlanHolder.load(EXAMPLE).current.plan
LONDON = ZoneInfo("Europe/London")
NOW = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC))

HUGE_NUMBER = re.compile(r"[0-9]{7,}")  # durations of a million units or more: see the xfail below
EXPIRY = st.one_of(
    st.builds(
        "{}{}{}".format,
        st.integers(0, 10**6),
        st.sampled_from(["", " ", "  "]),
        st.sampled_from(["m", "min", "h", "d", "s", ""]),
    ),
    st.builds("{:02d}:{:02d}".format, st.integers(0, 99), st.integers(0, 99)),
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)).map(
        lambda d: d.isoformat(" ")
    ),
    st.datetimes(timezones=st.timezones()).map(str),
    LINE_TEXT,
).filter(lambda text: not HUGE_NUMBER.search(text))


@given(
    kind=st.one_of(st.sampled_from(KINDS), LINE_TEXT),
    tenant=st.one_of(st.sampled_from(sorted(PLAN.tenants)), LINE_TEXT),
    on=st.booleans(),
    by=LINE_TEXT,
    reason=LINE_TEXT,
    expires=EXPIRY,
    service=st.one_of(st.none(), st.sampled_from(["revenues", "emergency", "bins-2026"]), LINE_TEXT),
    now=NOW,
)
@example(
    kind="emergency",
    tenant="harborough",
    on=True,
    by="\x00",
    reason="\x1b[2J",
    expires="0001-01-01",
    service=None,
    now=datetime(2026, 1, 1, tzinfo=UTC),
)
def test_a_toggle_request_is_accepted_or_refused_in_plain_words(
    *,
    kind: str,
    tenant: str,
    on: bool,
    by: str,
    reason: str,
    expires: str,
    service: str | None,
    now: datetime,
) -> None:
    request = ToggleRequest(kind, tenant, on, by, reason, expires, service)
    try:
        toggle = check_request(PLAN, request, now)
    except ToggleError:
        return
    if toggle is None:
        assert not on
        return
    assert (toggle.reason, toggle.by, toggle.service) == (reason.strip(), by.strip(), service)
    assert now < toggle.expires_at <= now + MAX_EXPIRY
    assert toggle_from_json(toggle_json(toggle)) == toggle


@given(EXPIRY, NOW)
@example("0001-01-01 00:00", datetime(2026, 1, 1, tzinfo=UTC))
@example("9999-12-31 23:59", datetime(2026, 1, 1, tzinfo=UTC))
def test_an_expiry_parses_to_an_aware_time_or_is_refused(text: str, now: datetime) -> None:
    try:
        moment = parse_expiry(text, now, LONDON)
    except ToggleError:
        return
    assert moment.tzinfo is not None


@given(st.text("0123456789", min_size=7, max_size=30), st.sampled_from(["m", "h", "d"]))
@example("1" + "0" * 20, "d")  # OverflowError: timedelta
@example("9" * 5000, "m")  # ValueError: over int()'s 4300-digit limit
def test_a_huge_duration_is_refused_in_plain_words(number: str, unit: str) -> None:
    request = ToggleRequest("emergency", "harborough", True, "sam", "flood", f"9{number}{unit}")
    with pytest.raises(ToggleError):
        check_request(PLAN, request, datetime(2026, 11, 24, 10, 0, tzinfo=UTC))
