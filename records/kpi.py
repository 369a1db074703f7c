"""A council's KPIs from its contact records (pure: records and times in, plain data out).

The figures the partnership agreement judges the service on (section 5.1: accessibility,
satisfaction, service levels with first point of contact resolution against an 80 % target) and
the profile of calls by hour, day and week it asks call logging to build (4.4.1), per day, week or
month, with a baseline period to compare against (5.1.1). ``docs/reports.md`` defines every figure
and the JSON shape :func:`report` returns.

Nothing here reads ``caller.number``: the figures hold no caller number, complete or masked.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from records.model import ContactRecord, QueueVisit
from routing.core.callback_order import CALLER_DIALLED
from routing.core.plan import Tenant

Period = Literal["day", "week", "month"]
PERIODS: tuple[Period, ...] = ("day", "week", "month")
FPOC_TARGET = 0.8
"""First point of contact resolution: at least 80 % (the partnership agreement, 5.1.3)."""
DEFAULT_SERVICE_LEVEL_S = 20.0
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
OUT_OF_HOURS_KINDS = frozenset({"closed", "holiday"})


@dataclass(frozen=True)
class KpiSettings:
    """How the figures are counted for one tenant."""

    zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("Europe/London"))
    service_level_s: float = DEFAULT_SERVICE_LEVEL_S
    queue_service_level_s: Mapping[str, float] = field(default_factory=dict)  # by Asterisk queue
    fpoc_target: float = FPOC_TARGET

    def threshold(self, queue: str | None) -> float:
        if queue is not None and queue in self.queue_service_level_s:
            return self.queue_service_level_s[queue]
        return self.service_level_s


def settings_for(tenant: Tenant | None, service_level_s: float | None = None) -> KpiSettings:
    """How ``tenant``'s figures are counted, from its ``records`` part of the plan (its time
    zone, its service-level times by Asterisk queue); ``service_level_s`` overrides the plan's.
    No tenant (no plan at hand): London time and ``service_level_s`` or the default."""
    if tenant is None:
        return KpiSettings(service_level_s=service_level_s or DEFAULT_SERVICE_LEVEL_S)
    policy = tenant.records
    by_queue = {
        tenant.queues[name].asterisk_queue: float(seconds)
        for name, seconds in policy.queue_service_level_s.items()
    }
    return KpiSettings(
        zone=tenant.zone(),
        service_level_s=float(service_level_s if service_level_s is not None else policy.service_level_s),
        queue_service_level_s=by_queue,
    )


# --- what one call contributes ------------------------------------------------------------------


def _visit_wait(visit: QueueVisit) -> float | None:
    if visit.wait_s is not None:
        return visit.wait_s
    if visit.left_at is not None:
        return max(0.0, (visit.left_at - visit.joined_at).total_seconds())
    return None


def answer_wait(record: ContactRecord) -> tuple[float, str | None] | None:
    """How long an answered caller queued before the answer, and the queue that answered.

    Answered in a queue: the waits of every queue visit up to the answering one (a caller moved
    from one queue to another waited in both). Answered by the partner centre after a hop: from
    joining the first queue to the answer. None for a call not answered, or answered without
    queueing."""
    if record.answered is None or not record.queues:
        return None
    waited = 0.0
    for visit in record.queues:
        wait = _visit_wait(visit) or 0.0
        waited += wait
        if visit.outcome == "answered":
            return waited, visit.queue
    first = record.queues[0]
    return max(0.0, (record.answered.at - first.joined_at).total_seconds()), first.queue


def abandoned_in_queue(record: ContactRecord) -> float | None:
    """Seconds the caller waited before hanging up in a queue; None if they did not."""
    if record.answered is not None:
        return None
    for visit in record.queues:
        if visit.outcome == "abandoned":
            return _visit_wait(visit) or 0.0
    return None


def abandoned_in_ivr(record: ContactRecord) -> float | None:
    """Seconds from arrival to hanging up in the IVR (None if the caller did not, or the hang-up
    was not seen); see :func:`figures` for the count."""
    if not record.ivr.abandoned or record.hangup is None:
        return None
    return max(0.0, (record.hangup.at - record.arrived_at).total_seconds())


def back_office_team(record: ContactRecord) -> str | None:
    """The back-office team a call was forwarded to: the disposition's, else the last transfer's."""
    if record.disposition is None or record.disposition.kind != "back_office":
        return None
    if record.disposition.team:
        return record.disposition.team
    done = [t.to for t in record.transfers if t.result == "completed"]
    return done[-1] if done else "(not named)"


# --- queued callbacks -------------------------------------------------------------------------

# CALLER_DIALLED (routing.core.callback_order): the attempts that called the caller (``no-adviser``:
# nobody was called; ``interrupted``: not known)
NO_QUEUE = "(no queue)"


def callback_queue(record: ContactRecord) -> str:
    """The Asterisk queue a callback was offered in: the visit the caller left with a callback,
    else the last queue visit (an offer declined)."""
    for visit in record.queues:
        if visit.outcome == "callback":
            return visit.queue
    return record.queues[-1].queue if record.queues else NO_QUEUE


def callback_requested_at(record: ContactRecord) -> datetime | None:
    """When the caller took the callback: they left the queue keeping their place (the visit's
    ``left_at``: the wait's last slice, just before the offer), else the call's hang-up."""
    for visit in record.queues:
        if visit.outcome == "callback" and visit.left_at is not None:
            return visit.left_at
    return record.hangup.at if record.hangup is not None else None


def time_to_callback(record: ContactRecord) -> float | None:
    """Seconds from the request to the start of the dial that reached the caller (an answered
    callback: its ``answered`` attempt); None otherwise. The dial calls the adviser first: the
    caller is connected within its adviser wait and ring (the record holds no finer instant)."""
    cb = record.callback
    if cb is None or cb.outcome != "answered":
        return None
    requested = callback_requested_at(record)
    reached = [a.started_at for a in cb.attempts if a.outcome == "answered"]
    if requested is None or not reached:
        return None
    return max(0.0, (reached[-1] - requested).total_seconds())


@dataclass
class _CallbackCounts:
    offered: int = 0
    taken: int = 0
    made: int = 0
    calls_to_callers: int = 0
    answered: int = 0
    failed: int = 0
    cancelled: int = 0
    cancelled_at_closing: int = 0
    pending: int = 0
    waits: list[float] = field(default_factory=list)

    def add(self, record: ContactRecord) -> None:
        cb = record.callback
        if cb is None:
            return
        self.offered += bool(cb.offered)
        if not cb.accepted:
            return
        self.taken += 1
        called = sum(1 for a in cb.attempts if a.outcome in CALLER_DIALLED)
        self.made += called > 0
        self.calls_to_callers += called
        if cb.outcome is None:
            self.pending += 1
        else:
            self.answered += cb.outcome == "answered"
            self.failed += cb.outcome == "failed"
            self.cancelled += cb.outcome == "cancelled"
            self.cancelled_at_closing += cb.outcome == "cancelled_at_closing"
        if (waited := time_to_callback(record)) is not None:
            self.waits.append(waited)

    def figures(self) -> dict[str, Any]:
        ended = self.taken - self.pending
        return {
            "offered": self.offered,
            "taken": self.taken,
            "take_rate": _rate(self.taken, self.offered),
            "made": self.made,
            "calls_to_callers": self.calls_to_callers,
            "answered": self.answered,
            "answered_rate": _rate(self.answered, ended),
            "failed": self.failed,
            "cancelled": self.cancelled,
            "cancelled_at_closing": self.cancelled_at_closing,
            "pending": self.pending,
            "time_to_callback_p50_s": _one(percentile(self.waits, 0.5)),
            "time_to_callback_p90_s": _one(percentile(self.waits, 0.9)),
        }


def callback_figures(records: Iterable[ContactRecord]) -> dict[str, Any]:
    """Queued callbacks (``docs/reports.md``), from each record's ``callback``: offered, taken,
    made, answered, failed after the last attempt, cancelled, still pending, and the time from
    the request to the call back; for the whole set and by Asterisk queue (``by_queue``)."""
    total = _CallbackCounts()
    queues: dict[str, _CallbackCounts] = {}
    for record in records:
        if record.callback is None:
            continue
        total.add(record)
        queues.setdefault(callback_queue(record), _CallbackCounts()).add(record)
    return {**total.figures(), "by_queue": {q: c.figures() for q, c in sorted(queues.items())}}


# --- figures for a set of calls ------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank percentile (the smallest value with at least ``q`` of the values at or
    below it); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def _mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 1) if values else None


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _one(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def figures(records: Iterable[ContactRecord], settings: KpiSettings) -> dict[str, Any]:
    """Accessibility, service levels, satisfaction and queued callbacks of a set of calls
    (``docs/reports.md``).

    A call another centre sent here (``hop_from``) is that centre's contact: it counts only in
    ``overflowed_from_partner``."""
    offered = answered = within = ivr_abandoned = 0
    ivr_waits: list[float] = []
    queue_waits: list[float] = []
    answer_waits: list[float] = []
    talks: list[float] = []
    to_partner = from_partner = out_of_hours = emergency = withdrawn = timed_out = 0
    kinds_given: Counter[str] = Counter()
    teams: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    scores: Counter[int] = Counter()
    counted = list(records)
    for record in counted:
        if record.hop_from is not None:
            from_partner += 1
            continue
        offered += 1
        kinds = {d.kind for d in record.decisions}
        out_of_hours += bool(kinds & OUT_OF_HOURS_KINDS)
        emergency += "emergency" in kinds
        to_partner += bool(record.hops)
        outcomes = {v.outcome for v in record.queues}
        withdrawn += "withdrawn" in outcomes
        timed_out += record.answered is None and "timed_out" in outcomes
        if record.ivr.abandoned:
            ivr_abandoned += 1
            if (ivr := abandoned_in_ivr(record)) is not None:
                ivr_waits.append(ivr)
        if (queued := abandoned_in_queue(record)) is not None:
            queue_waits.append(queued)
        if record.answered is not None:
            answered += 1
            if (waited := answer_wait(record)) is not None:
                answer_waits.append(waited[0])
                within += waited[0] <= settings.threshold(waited[1])
            else:
                within += 1  # answered without queueing
            if record.talk_s is not None:
                talks.append(record.talk_s)
        if record.survey is not None:
            scores[record.survey] += 1
        if record.disposition is not None:
            kinds_given[record.disposition.kind] += 1
            _count_disposition(record, teams, reasons)
    responses = sum(scores.values())
    callbacks = callback_figures(r for r in counted if r.hop_from is None)
    dispositions, resolved = kinds_given.total(), kinds_given["resolved"]
    complaints = kinds_given["complaint"]
    fpoc = _rate(resolved, dispositions)
    return {
        "accessibility": {
            "offered": offered,
            "answered": answered,
            "answered_rate": _rate(answered, offered),
            "answered_within_service_level": within,
            "service_level_rate": _rate(within, answered),
            "abandoned_in_ivr": ivr_abandoned,
            "abandoned_in_ivr_mean_s": _mean(ivr_waits),
            "abandoned_in_queue": len(queue_waits),
            "abandoned_in_queue_mean_s": _mean(queue_waits),
            "abandoned_in_queue_p90_s": _one(percentile(queue_waits, 0.9)),
            "timed_out": timed_out,
            "overflowed_to_partner": to_partner,
            "overflowed_from_partner": from_partner,
            "out_of_hours": out_of_hours,
            "emergency_cover": emergency,
            "withdrawn": withdrawn,
        },
        "service_levels": {
            "wait_mean_s": _mean(answer_waits),
            "wait_p50_s": _one(percentile(answer_waits, 0.5)),
            "wait_p90_s": _one(percentile(answer_waits, 0.9)),
            "handle_mean_s": _mean(talks),
            "dispositions": dispositions,
            "resolved_first_point": resolved,
            "fpoc_rate": fpoc,
            "fpoc_target": settings.fpoc_target,
            "fpoc_met": None if fpoc is None else fpoc >= settings.fpoc_target,
            "back_office_by_team": dict(sorted(teams.items())),
            "avoidable_by_reason": dict(sorted(reasons.items())),
        },
        "satisfaction": {
            "good": scores[1],
            "average": scores[0],
            "poor": scores[-1],
            "responses": responses,
            "net_score": round(100 * (scores[1] - scores[-1]) / responses, 1) if responses else None,
            "response_rate": _rate(responses, answered),
            "complaints": complaints,
        },
        "callbacks": callbacks,
    }


def _count_disposition(record: ContactRecord, teams: Counter[str], reasons: Counter[str]) -> None:
    if (team := back_office_team(record)) is not None:
        teams[team] += 1
    if record.disposition is not None and record.disposition.kind == "avoidable":
        reasons[record.disposition.reason or "(not named)"] += 1


# --- periods, volume, baseline -------------------------------------------------------------------


def period_start(day: date, period: Period) -> date:
    """The first day of the day's ``period`` (weeks start on Monday)."""
    if period == "week":
        return day - timedelta(days=day.weekday())
    if period == "month":
        return day.replace(day=1)
    return day


def period_label(start: date, period: Period) -> str:
    if period == "week":
        year, week, _ = start.isocalendar()
        return f"{year}-W{week:02d}"
    if period == "month":
        return start.strftime("%Y-%m")
    return start.isoformat()


def local_day(record: ContactRecord, zone: ZoneInfo) -> date:
    return record.arrived_at.astimezone(zone).date()


def volume(records: Iterable[ContactRecord], zone: ZoneInfo) -> dict[str, Any]:
    """Calls offered by hour of day x weekday (local time) and by week (Monday's date)."""
    grid = [[0] * 24 for _ in WEEKDAYS]
    weeks: Counter[date] = Counter()
    for record in records:
        if record.hop_from is not None:
            continue
        local = record.arrived_at.astimezone(zone)
        grid[local.weekday()][local.hour] += 1
        weeks[period_start(local.date(), "week")] += 1
    return {
        "weekdays": list(WEEKDAYS),
        "by_weekday_hour": grid,
        "by_week": [{"week": d.isoformat(), "offered": n} for d, n in sorted(weeks.items())],
    }


HEADLINES: tuple[tuple[str, str], ...] = (
    ("accessibility", "answered_rate"),
    ("accessibility", "service_level_rate"),
    ("service_levels", "wait_mean_s"),
    ("service_levels", "handle_mean_s"),
    ("service_levels", "fpoc_rate"),
    ("satisfaction", "net_score"),
    ("satisfaction", "response_rate"),
)


def comparison(
    current: Mapping[str, Any], current_days: int, baseline: Mapping[str, Any], baseline_days: int
) -> list[dict[str, Any]]:
    """Headline figures against the baseline: calls offered per day, then rates and times."""
    rows = [
        _row(
            "offered_per_day",
            round(current["accessibility"]["offered"] / current_days, 1),
            round(baseline["accessibility"]["offered"] / baseline_days, 1),
        )
    ]
    rows += [_row(name, current[group][name], baseline[group][name]) for group, name in HEADLINES]
    return rows


def _row(name: str, now: float | None, then: float | None) -> dict[str, Any]:
    change = None if now is None or then is None else round(now - then, 4)
    return {"figure": name, "current": now, "baseline": then, "change": change}


@dataclass(frozen=True)
class Range:
    """Local days ``first`` to ``last`` inclusive, in the tenant's zone."""

    first: date
    last: date

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1

    def bounds(self, zone: ZoneInfo) -> tuple[datetime, datetime]:
        """The UTC-comparable instants from the first day's midnight to the day after the last."""
        start = datetime.combine(self.first, datetime.min.time(), zone)
        end = datetime.combine(self.last + timedelta(days=1), datetime.min.time(), zone)
        return start, end


def report(
    tenant: str,
    records: Iterable[ContactRecord],
    span: Range,
    period: Period,
    settings: KpiSettings,
    *,
    generated_at: datetime,
    baseline: tuple[Range, Iterable[ContactRecord]] | None = None,
) -> dict[str, Any]:
    """The whole report as plain data (the JSON a dashboard shows; ``docs/reports.md``)."""
    kept = [r for r in records if r.tenant == tenant]
    groups: dict[date, list[ContactRecord]] = {}
    for record in kept:
        groups.setdefault(period_start(local_day(record, settings.zone), period), []).append(record)
    total = figures(kept, settings)
    data: dict[str, Any] = {
        "report_version": 1,
        "tenant": tenant,
        "from": span.first.isoformat(),
        "to": span.last.isoformat(),
        "timezone": settings.zone.key,
        "generated_at": generated_at.isoformat(),
        "period": period,
        "settings": {
            "service_level_s": settings.service_level_s,
            "queue_service_level_s": dict(sorted(settings.queue_service_level_s.items())),
            "fpoc_target": settings.fpoc_target,
        },
        "total": total,
        "periods": [
            {"period": period_label(start, period), "start": start.isoformat(), **figures(calls, settings)}
            for start, calls in sorted(groups.items())
        ],
        "volume": volume(kept, settings.zone),
        "baseline": None,
    }
    if baseline is not None:
        base_span, base_records = baseline
        base = figures([r for r in base_records if r.tenant == tenant], settings)
        data["baseline"] = {
            "from": base_span.first.isoformat(),
            "to": base_span.last.isoformat(),
            "total": base,
            "comparison": comparison(total, span.days, base, base_span.days),
        }
    return data


CSV_GROUPS = ("accessibility", "service_levels", "satisfaction", "callbacks")
CSV_PREFIX = {"callbacks": "callbacks_"}  # its names would clash with the accessibility group's
CSV_BY_QUEUE = ("taken", "answered")  # the callback figures also given per queue


def csv_rows(data: Mapping[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """The report as a flat table: one row per period and one for the whole range; the
    by-team and by-reason counts as ``back_office:<team>`` and ``avoidable:<reason>`` columns,
    the callbacks taken and answered per queue as ``callbacks_taken:<queue>``..."""
    rows = [*data["periods"], {"period": "total", "start": data["from"], **data["total"]}]
    teams = sorted({t for row in rows for t in row["service_levels"]["back_office_by_team"]})
    reasons = sorted({r for row in rows for r in row["service_levels"]["avoidable_by_reason"]})
    queues = sorted({q for row in rows for q in row["callbacks"]["by_queue"]})
    scalar = [
        (group, name)
        for group in CSV_GROUPS
        for name, value in data["total"][group].items()
        if not isinstance(value, dict)
    ]
    header = ["tenant", "period", "start", *(CSV_PREFIX.get(group, "") + name for group, name in scalar)]
    header += [f"back_office:{t}" for t in teams] + [f"avoidable:{r}" for r in reasons]
    header += [f"callbacks_{name}:{q}" for q in queues for name in CSV_BY_QUEUE]
    table = []
    for row in rows:
        line: list[Any] = [data["tenant"], row["period"], row["start"]]
        line += [row[group][name] for group, name in scalar]
        line += [row["service_levels"]["back_office_by_team"].get(t, 0) for t in teams]
        line += [row["service_levels"]["avoidable_by_reason"].get(r, 0) for r in reasons]
        by_queue = row["callbacks"]["by_queue"]
        line += [by_queue[q][name] if q in by_queue else 0 for q in queues for name in CSV_BY_QUEUE]
        table.append(line)
    return header, table
