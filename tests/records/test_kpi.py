"""KPIs from a day of calls with known outcomes: every figure worked out by hand below."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

from records.kpi import KpiSettings, Range, csv_rows, figures, percentile, report
from records.model import ContactRecord
from tests.records.factory import record

TUESDAY = datetime(2026, 11, 24, tzinfo=UTC)  # London is on UTC in November
SETTINGS = KpiSettings(queue_service_level_s={"hdc-waste": 30})
CALLER = "01632960123"


def at(hour: int, minute: int = 0, second: float = 0) -> datetime:
    return TUESDAY + timedelta(hours=hour, minutes=minute, seconds=second)


def iso(moment: datetime) -> str:
    return moment.isoformat()


def queued(arrived: datetime, queue: str, wait: float, outcome: str) -> dict[str, Any]:
    joined = arrived + timedelta(seconds=30)
    return {
        "queue": queue, "joined_at": iso(joined), "left_at": iso(joined + timedelta(seconds=wait)),
        "position": 1, "wait_s": wait, "unanswered_rings": 0, "outcome": outcome,
    }  # fmt: skip


def decided(arrived: datetime, kind: str) -> dict[str, Any]:
    return {"at": iso(arrived + timedelta(seconds=20)), "kind": kind, "destination": "x", "reasons": []}


def answered_call(
    n: int, arrived: datetime, queue: str, wait: float, talk: float, **fields: Any
) -> ContactRecord:
    answer = arrived + timedelta(seconds=30 + wait)
    given: dict[str, Any] = {"decisions": [decided(arrived, "open")], **fields}
    return record(
        f"1795533337.{n}", arrived,
        queues=[queued(arrived, queue, wait, "answered")],
        answered={"at": iso(answer), "by": {"centre": "charnwood", "id": "PJSIP/agent1", "name": None},
                  "queue": queue},
        talk_s=talk,
        **given,
    )  # fmt: skip


def disposition(kind: str, arrived: datetime, team: str | None = None, reason: str | None = None) -> Any:
    given = iso(arrived + timedelta(minutes=9))
    return {"kind": kind, "team": team, "reason": reason, "by": None, "at": given}


def a_day() -> list[ContactRecord]:
    """Twelve records: ten calls offered to Harborough, one sent by the partner, one for Charnwood."""
    a, b, c, d, e, f = at(9, 5), at(9, 20), at(10, 10), at(10, 40), at(11), at(11, 30)
    g, h, i, j, k, m = at(18, 30), at(13), at(14), at(15), at(15, 30), at(16)
    partner_answer = f + timedelta(seconds=30 + 75)  # f joined at +30 s, answered 75 s later
    return [
        answered_call(1, a, "hdc-revenues", 12, 300, survey=1, disposition=disposition("resolved", a)),
        answered_call(2, b, "hdc-revenues", 35, 200, survey=0,
                      disposition=disposition("back_office", b, team="council-tax")),
        answered_call(3, c, "hdc-waste", 25, 100, survey=-1, disposition=disposition("resolved", c)),
        record("1795533337.4", d, decisions=[decided(d, "open")],
               queues=[queued(d, "hdc-revenues", 40, "abandoned")]),
        record("1795533337.5", e, caller=None,
               ivr={"menus": [{"menu": "main", "at": iso(e + timedelta(seconds=5)), "keys": []}],
                    "invalid": 0, "timeouts": 1, "announcements": [], "abandoned": True,
                    "abandoned_in": "main"},
               hangup={"at": iso(e + timedelta(seconds=15)), "by": "caller", "cause": 16,
                       "cause_text": "Normal Clearing"}),
        record("1795533337.6", f, decisions=[decided(f, "open"), decided(f, "overflow")],
               queues=[queued(f, "hdc-revenues", 60, "withdrawn")],
               hops=[{"centre": "harborough", "at": iso(f + timedelta(seconds=91)), "answered": True}],
               answered={"at": iso(partner_answer), "by": {"centre": "harborough", "id": None, "name": None},
                         "queue": None},
               talk_s=120.0, centre="harborough"),
        record("1795533337.7", g, decisions=[decided(g, "closed")]),
        answered_call(8, h, "hdc-emergency", 5, 50, decisions=[decided(h, "emergency")], survey=1,
                      disposition=disposition("avoidable", h, reason="chasing-progress")),
        answered_call(9, i, "hdc-revenues", 3, 90, hop_from={"centre": "harborough", "id": None}, survey=1),
        answered_call(10, j, "hdc-revenues", 8, 400, disposition=disposition("complaint", j)),
        answered_call(11, k, "cbc-main", 1, 10, tenant="charnwood", survey=-1),
        record("1795533337.12", m, decisions=[decided(m, "open")],
               queues=[queued(m, "hdc-revenues", 600, "timed_out")]),
    ]  # fmt: skip


EXPECTED_DAY = {
    "accessibility": {
        "offered": 10,
        "answered": 6,  # 1, 2, 3, 6 (at the partner), 8, 10
        "answered_rate": 0.6,
        "answered_within_service_level": 4,  # 12 s, 25 s (waste: 30 s), 5 s, 8 s; not 35 s nor 75 s
        "service_level_rate": 0.6667,
        "abandoned_in_ivr": 1,
        "abandoned_in_ivr_mean_s": 15.0,
        "abandoned_in_queue": 1,
        "abandoned_in_queue_mean_s": 40.0,
        "abandoned_in_queue_p90_s": 40.0,
        "timed_out": 1,
        "overflowed_to_partner": 1,
        "overflowed_from_partner": 1,
        "out_of_hours": 1,
        "emergency_cover": 1,
        "withdrawn": 1,
    },
    "service_levels": {
        "wait_mean_s": 26.7,  # (12 + 35 + 25 + 75 + 5 + 8) / 6 = 26.67
        "wait_p50_s": 12.0,  # sorted 5, 8, 12, 25, 35, 75: the 3rd
        "wait_p90_s": 75.0,  # the 6th
        "handle_mean_s": 195.0,  # (300 + 200 + 100 + 120 + 50 + 400) / 6
        "dispositions": 5,
        "resolved_first_point": 2,
        "fpoc_rate": 0.4,
        "fpoc_target": 0.8,
        "fpoc_met": False,
        "back_office_by_team": {"council-tax": 1},
        "avoidable_by_reason": {"chasing-progress": 1},
    },
    "satisfaction": {
        "good": 2,
        "average": 1,
        "poor": 1,
        "responses": 4,
        "net_score": 25.0,  # (2 - 1) / 4
        "response_rate": 0.6667,  # 4 of 6 calls taken
        "complaints": 1,
    },
    "callbacks": {
        "offered": 0,
        "taken": 0,
        "take_rate": None,
        "made": 0,
        "calls_to_callers": 0,
        "answered": 0,
        "answered_rate": None,
        "failed": 0,
        "cancelled": 0,
        "cancelled_at_closing": 0,
        "pending": 0,
        "time_to_callback_p50_s": None,
        "time_to_callback_p90_s": None,
        "by_queue": {},
    },  # no callback that day
}


def test_a_day_of_calls_gives_the_figures_worked_out_by_hand() -> None:
    harborough = [r for r in a_day() if r.tenant == "harborough"]
    assert figures(harborough, SETTINGS) == EXPECTED_DAY


def test_the_report_keeps_to_the_tenant_and_profiles_the_volume() -> None:
    data = report("harborough", a_day(), Range(date(2026, 11, 24), date(2026, 11, 24)), "day", SETTINGS,
                  generated_at=at(20))  # fmt: skip
    assert data["total"] == EXPECTED_DAY
    assert [p["period"] for p in data["periods"]] == ["2026-11-24"]
    grid = data["volume"]["by_weekday_hour"]
    assert grid[1] == [0] * 9 + [2, 2, 2, 0, 1, 0, 1, 1, 0, 1] + [0] * 5  # Tuesday, hour by hour
    assert sum(map(sum, grid)) == 10
    assert data["volume"]["by_week"] == [{"week": "2026-11-23", "offered": 10}]
    text = json.dumps(data)
    assert CALLER not in text
    assert "0163296" not in text


def test_weeks_months_and_a_baseline() -> None:
    day = a_day()
    next_week = [answered_call(20, at(24 * 7 + 10), "hdc-revenues", 30, 60, survey=-1)]
    first_of_december = [answered_call(21, at(24 * 7 + 10) + timedelta(days=1), "hdc-revenues", 10, 60)]
    span = Range(date(2026, 11, 24), date(2026, 12, 2))
    weekly = report(
        "harborough",
        day + next_week + first_of_december,
        span,
        "week",
        SETTINGS,
        generated_at=at(20),
        baseline=(Range(date(2026, 11, 24), date(2026, 11, 24)), day),
    )
    assert [(p["period"], p["start"], p["accessibility"]["offered"]) for p in weekly["periods"]] == [
        ("2026-W48", "2026-11-23", 10), ("2026-W49", "2026-11-30", 2)
    ]  # fmt: skip
    monthly = report("harborough", day + next_week + first_of_december, span, "month", SETTINGS,
                     generated_at=at(20))  # fmt: skip
    assert [(p["period"], p["accessibility"]["offered"]) for p in monthly["periods"]] == [
        ("2026-11", 10), ("2026-12", 2)
    ]  # fmt: skip
    rows = {row["figure"]: row for row in weekly["baseline"]["comparison"]}
    assert rows["offered_per_day"] == {"figure": "offered_per_day", "current": 1.3, "baseline": 10.0,
                                       "change": -8.7}  # 12 calls in 9 days against 10 in 1  # fmt: skip
    # 8 answered of 12 offered against 6 of 10
    assert rows["answered_rate"] == {"figure": "answered_rate", "current": 0.6667, "baseline": 0.6,
                                     "change": 0.0667}  # fmt: skip


def test_the_csv_table_has_a_row_per_period_and_a_total() -> None:
    data = report("harborough", a_day(), Range(date(2026, 11, 24), date(2026, 11, 24)), "day", SETTINGS,
                  generated_at=at(20))  # fmt: skip
    header, rows = csv_rows(data)
    assert header[:5] == ["tenant", "period", "start", "offered", "answered"]
    assert header[-2:] == ["back_office:council-tax", "avoidable:chasing-progress"]
    assert [row[:5] for row in rows] == [
        ["harborough", "2026-11-24", "2026-11-24", 10, 6],
        ["harborough", "total", "2026-11-24", 10, 6],
    ]
    fpoc = header.index("fpoc_rate")
    assert rows[1][fpoc] == 0.4


def test_percentile_is_the_nearest_rank() -> None:
    assert percentile([], 0.5) is None
    assert percentile([7.0], 0.9) == 7.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.0
    assert percentile([float(n) for n in range(1, 11)], 0.9) == 9.0


def attempt(start: datetime, outcome: str) -> dict[str, Any]:
    return {"started_at": iso(start), "ended_at": iso(start + timedelta(seconds=40)), "outcome": outcome,
            "adviser": "Adviser 1" if outcome == "answered" else None}  # fmt: skip


def with_callback(
    n: int,
    arrived: datetime,
    queue: str,
    wait: float,
    *,
    taken: bool,
    outcome: str | None,
    tried: list[tuple[float, str]],
) -> ContactRecord:
    """A call that was offered a callback in ``queue`` after ``wait`` s (it left the queue then,
    when ``taken``); ``tried``: each attempt's start, in seconds after the request, and outcome."""
    requested = arrived + timedelta(seconds=30 + wait)
    callback = {
        "offered": True,
        "accepted": taken,
        "number_kind": "mobile" if taken else None,
        "attempts": [attempt(requested + timedelta(seconds=t), o) for t, o in tried],
        "outcome": outcome,
    }
    return record(f"1795533337.{n}", arrived, decisions=[decided(arrived, "open")],
                  queues=[queued(arrived, queue, wait, "callback" if taken else "abandoned")],
                  callback=callback)  # fmt: skip


def callback_day() -> list[ContactRecord]:
    """Seven callbacks offered at Harborough; one more offered at a call the partner sent here."""
    rev, waste = "hdc-revenues", "hdc-waste"
    return [
        with_callback(31, at(9), rev, 100, taken=False, outcome=None, tried=[]),  # declined
        with_callback(32, at(9, 10), rev, 120, taken=True, outcome="answered",
                      tried=[(600, "no-answer"), (1380, "answered")]),
        with_callback(33, at(9, 20), rev, 90, taken=True, outcome="failed",
                      tried=[(300, "no-answer"), (1200, "busy"), (2100, "no-answer")]),
        with_callback(34, at(10), waste, 200, taken=True, outcome="cancelled", tried=[]),
        with_callback(35, at(16), waste, 300, taken=True, outcome="cancelled_at_closing",
                      tried=[(60, "no-adviser")]),
        with_callback(36, at(11), rev, 400, taken=True, outcome=None, tried=[(500, "short-answer")]),
        with_callback(37, at(12), waste, 60, taken=True, outcome="answered", tried=[(300, "answered")]),
        record("1795533337.38", at(13), hop_from={"centre": "harborough", "id": None},
               callback={"offered": True, "accepted": True, "number_kind": "geographic", "attempts": [],
                         "outcome": None}),  # the partner's contact
    ]  # fmt: skip


def test_callback_figures_worked_out_by_hand() -> None:
    """Taken 6 of 7 offered; the caller called in 4 of them (7 calls: a no-adviser attempt called
    nobody); answered 2 of the 5 that ended; the time to the call back 1380 s and 300 s."""
    data = report("harborough", callback_day(), Range(date(2026, 11, 24), date(2026, 11, 24)), "day",
                  SETTINGS, generated_at=at(20))  # fmt: skip
    cb = dict(data["total"]["callbacks"])
    by_queue = cb.pop("by_queue")
    assert cb == {
        "offered": 7, "taken": 6, "take_rate": 0.8571, "made": 4, "calls_to_callers": 7, "answered": 2,
        "answered_rate": 0.4, "failed": 1, "cancelled": 1, "cancelled_at_closing": 1, "pending": 1,
        "time_to_callback_p50_s": 300.0, "time_to_callback_p90_s": 1380.0,
    }  # fmt: skip
    assert by_queue == {
        "hdc-revenues": {
            "offered": 4, "taken": 3, "take_rate": 0.75, "made": 3, "calls_to_callers": 6, "answered": 1,
            "answered_rate": 0.5, "failed": 1, "cancelled": 0, "cancelled_at_closing": 0, "pending": 1,
            "time_to_callback_p50_s": 1380.0, "time_to_callback_p90_s": 1380.0,
        },
        "hdc-waste": {
            "offered": 3, "taken": 3, "take_rate": 1.0, "made": 1, "calls_to_callers": 1, "answered": 1,
            "answered_rate": 0.3333, "failed": 0, "cancelled": 1, "cancelled_at_closing": 1, "pending": 0,
            "time_to_callback_p50_s": 300.0, "time_to_callback_p90_s": 300.0,
        },
    }  # fmt: skip
    assert data["periods"][0]["callbacks"]["taken"] == 6
    header, rows = csv_rows(data)
    total = dict(zip(header, rows[-1], strict=True))
    assert (total["callbacks_offered"], total["callbacks_answered"], total["offered"]) == (7, 2, 7)
    assert (total["callbacks_taken:hdc-revenues"], total["callbacks_answered:hdc-waste"]) == (3, 1)
