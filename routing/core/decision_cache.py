"""``decide()`` remembered until the first instant its answer could change (pure: no clock).

The route entry decides every new call; at a few thousand calls a second most of them dial the
same few numbers against the same plan, live state and toggles, so the same decision is taken
again and again (``decide()`` was ~15-20 us of a ~115 us route session in-process,
``benchmarks/route_inprocess_bench.py``; ``docs/performance.md``, "Per core").

:class:`DecisionCache` answers exactly what :func:`~routing.core.decide.decide` would. An entry is
kept for ``(dialled, digits)`` with the objects the decision was taken on (the compiled plan,
held weakly so that a replaced plan can be freed, the live state, the toggles: all immutable,
compared by identity, so a new plan, a refreshed live state or a switched toggle is a miss)
and the window ``[taken, until)`` in which nothing ``decide()`` reads of the time can change:

* ``taken``: the instant it was decided (kept in UTC). Before it (a clock set back) is a miss:
  a toggle that had expired by then was still on earlier.
* the next whole second: the calendar (hours, closures, bank holidays, topic announcements) is
  judged on the wall clock in whole seconds (a closed call's trace names the second), provided
  the plan's dated instants fall on whole seconds; for a plan whose do not (``12:00:00.5``,
  which the plan file accepts), nothing is cached.
* every toggle still on: its ``expires_at`` (a toggle that is off stays off as time goes on).
* every snapshot still fresh (queues and partners): the instant it turns stale, a millisecond
  early (``LiveState`` compares float timestamps; a stale snapshot stays stale).

``decide()`` reads ``call.dialled`` and ``call.digits`` only (never the caller), so those are the
key. The cache holds at most ``max_entries`` numbers (dialled strings come from the network):
when full it is emptied, and it starts again.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from routing.core.decide import Call, CompiledPlan, Decision, decide
from routing.core.live import LiveState, Toggles

_SECOND = timedelta(seconds=1)
_STALE_MARGIN = timedelta(milliseconds=1)


@dataclass(frozen=True, slots=True)
class _Entry:
    live: LiveState
    toggles: Toggles
    taken: datetime
    until: datetime
    decision: Decision


class DecisionCache:
    """:func:`~routing.core.decide.decide` with its answers remembered (see the module)."""

    def __init__(self, max_entries: int = 1024) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, not {max_entries!r}")
        self.max_entries = max_entries
        self._entries: dict[tuple[str, tuple[str, ...] | None], _Entry] = {}
        # The plan every entry was decided on, held weakly: a replaced plan is freed once no call
        # holds it (callrouter.service.retire waits for that), not kept alive by the cache.
        self._plan: weakref.ref[CompiledPlan] | None = None
        self._plan_cacheable = False
        self.hits = 0
        self.misses = 0

    def decide(
        self, call: Call, plan: CompiledPlan, live: LiveState, toggles: Toggles, now: datetime
    ) -> Decision:
        """What ``decide(call, plan, live, toggles, now)`` returns."""
        key = (call.dialled, call.digits)
        entry = self._entries.get(key)
        if (
            entry is not None
            and self._plan is not None
            and self._plan() is plan
            and entry.live is live
            and entry.toggles is toggles
            and entry.taken <= now < entry.until
        ):
            self.hits += 1
            return entry.decision
        self.misses += 1
        decision = decide(call, plan, live, toggles, now)
        if self._cacheable(plan):
            entries = self._entries
            if len(entries) >= self.max_entries and key not in entries:
                entries.clear()
            taken = now.astimezone(UTC)
            entries[key] = _Entry(live, toggles, taken, valid_until(live, toggles, taken), decision)
        return decision

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def _cacheable(self, plan: CompiledPlan) -> bool:
        if self._plan is None or self._plan() is not plan:
            self._plan, self._plan_cacheable = weakref.ref(plan), whole_seconds(plan)
            self._entries.clear()  # the old plan's entries can never hit again: let them go
        return self._plan_cacheable


def next_second(now: datetime) -> datetime:
    """The first whole second after ``now``, in UTC (``10:00:00.3`` -> ``10:00:01``)."""
    return now.astimezone(UTC).replace(microsecond=0) + _SECOND


def valid_until(live: LiveState, toggles: Toggles, now: datetime) -> datetime:
    """The end (in UTC) of the window from ``now`` in which a decision on ``live`` and
    ``toggles`` stays the same, for a plan whose instants fall on whole seconds
    (:func:`whole_seconds`). Instants are compared and added to in UTC: on a zone's own
    datetimes Python adds wall-clock time and compares two of one zone without their offsets,
    both wrong across a change of the clocks."""
    until = next_second(now)
    for kind in (toggles.emergency, toggles.closure, toggles.announcement):
        for toggle in kind.values():
            if now < toggle.expires_at < until:
                until = toggle.expires_at.astimezone(UTC)
    fresh = [snap for name, snap in live.queues.items() if live.snapshot(name, now) is not None]
    fresh += [snap for name, snap in live.partners.items() if live.partner(name, now) is not None]
    for snap in fresh:
        stale_at = _stale_at(live, snap.observed_at)
        if stale_at is not None and stale_at < until:
            until = stale_at
    return until


def _stale_at(live: LiveState, observed_at: datetime) -> datetime | None:
    """A millisecond before the instant a snapshot observed at ``observed_at`` turns stale;
    None if that is beyond the calendar (it never turns stale) or ``max_age_s`` is not a
    number (NaN: never stale either)."""
    try:
        return observed_at.astimezone(UTC) + timedelta(seconds=live.max_age_s) - _STALE_MARGIN
    except (OverflowError, ValueError):  # inf, NaN, or past datetime.max
        return None


def whole_seconds(plan: CompiledPlan) -> bool:
    """True when every dated instant of the plan (closures, topic announcements) falls on a
    whole second, so that a tenant's calendar cannot change within a wall-clock second."""
    for tenant in plan.plan.tenants.values():
        for closure in tenant.closures:
            if any(moment.microsecond for moment in closure.span()):
                return False
        for item in tenant.announcements:
            if item.start.microsecond or item.end.microsecond:
                return False
    return True
