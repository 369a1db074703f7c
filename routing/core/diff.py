"""Where and when two plan versions route differently (pure).

For every number either plan answers, and for the key paths a caller can press
through the menus of either plan, the two plans are evaluated on every interval
between instants where either plan's decision may change (hours boundaries,
holidays, closures, special openings, announcement windows). Intervals with the
same pair of outcomes are merged, so the result reads as time ranges.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from routing.core.decide import Call, CompiledPlan, Decision, decide, describe
from routing.core.live import NO_TOGGLES, UNKNOWN_LIVE_STATE
from routing.core.plan import MenuDest, Tenant

MAX_DEPTH = 3


@dataclass(frozen=True, slots=True)
class Difference:
    number: str  # E.164
    keys: tuple[str, ...] | None  # None: the call as it arrives, before any key
    start: datetime
    end: datetime
    old: str
    new: str

    def keys_text(self) -> str:
        if self.keys is None:
            return "on arrival"
        return "keys " + ",".join(k or "(silence)" for k in self.keys)


def outcome(decision: Decision) -> str:
    """What a caller experiences, as text two plans can be compared on."""
    prelude = "".join(f"[{p.prompt}] " for p in decision.prelude)
    return f"{decision.state}: {prelude}{describe(decision.destination)}"


def _key_paths(tenant: Tenant | None, menu: str, depth: int) -> Iterator[tuple[str, ...]]:
    if tenant is None or menu not in tenant.menus or depth == 0:
        return
    for key, dest in tenant.menus[menu].options.items():
        yield (key,)
        if isinstance(dest, MenuDest):
            yield from ((key, *rest) for rest in _key_paths(tenant, dest.menu, depth - 1))


def key_paths(old: Tenant | None, new: Tenant | None) -> list[tuple[str, ...] | None]:
    """The key sequences worth comparing: none, each menu option (nested), and silence."""
    paths: set[tuple[str, ...]] = {("", "", "")}
    for tenant in (old, new):
        if tenant is not None and isinstance(tenant.entry, MenuDest):
            paths.update(_key_paths(tenant, tenant.entry.menu, MAX_DEPTH))
    return [None, *sorted(paths)]


def _instants(plans: list[tuple[CompiledPlan, str | None]], start: datetime, end: datetime) -> list[datetime]:
    found = {start}
    for compiled, tid in plans:
        if tid is None:
            continue
        calendar = compiled.calendars[tid]
        found.update(calendar.boundaries(start.date() - timedelta(days=1), end.date()))
        for item in compiled.plan.tenants[tid].announcements:
            found.update(t.replace(tzinfo=calendar.zone) for t in (item.start, item.end))
    return sorted(t for t in found if start <= t < end)


def differences(old: CompiledPlan, new: CompiledPlan, start: datetime, end: datetime) -> list[Difference]:
    """Every (number, keys, time range) where ``old`` and ``new`` route a call differently."""
    result: list[Difference] = []
    for number in sorted(old.by_number.keys() | new.by_number.keys()):
        pair = [(old, old.by_number.get(number)), (new, new.by_number.get(number))]
        tenants = [c.plan.tenants[t] if t else None for c, t in pair]
        instants = _instants(pair, start, end)
        found = [
            d
            for keys in key_paths(*tenants)
            for d in _compare(number=number, keys=keys, old=old, new=new, instants=instants, end=end)
        ]
        result += _without_implied(found)
    return result


def _state(text: str) -> str:
    return text.partition(":")[0]


def _without_implied(found: list[Difference]) -> list[Difference]:
    """Drop key-path differences inside a range where the call's state already differs on arrival
    (e.g. open in one plan, closed in the other): the keys add nothing there."""
    arrival = [d for d in found if d.keys is None and _state(d.old) != _state(d.new)]

    def implied(item: Difference) -> bool:
        return item.keys is not None and any(a.start <= item.start and item.end <= a.end for a in arrival)

    return [d for d in found if not implied(d)]


def _compare(
    *,
    number: str,
    keys: tuple[str, ...] | None,
    old: CompiledPlan,
    new: CompiledPlan,
    instants: list[datetime],
    end: datetime,
) -> list[Difference]:
    found: list[Difference] = []
    call = Call(number, digits=keys)
    for i, instant in enumerate(instants):
        before = outcome(decide(call, old, UNKNOWN_LIVE_STATE, NO_TOGGLES, instant))
        after = outcome(decide(call, new, UNKNOWN_LIVE_STATE, NO_TOGGLES, instant))
        if before == after:
            continue
        until = instants[i + 1] if i + 1 < len(instants) else end
        last = found[-1] if found else None
        if last is not None and last.end == instant and (last.old, last.new) == (before, after):
            found[-1] = Difference(number, keys, last.start, until, before, after)
        else:
            found.append(Difference(number, keys, instant, until, before, after))
    return found


def local_day_bounds(start: date, end: date, zone: str = "Europe/London") -> tuple[datetime, datetime]:
    """``[start 00:00, end+1 00:00)`` in ``zone``, as aware datetimes."""
    tz = ZoneInfo(zone)
    first = datetime.combine(start, datetime.min.time()).replace(tzinfo=tz)
    last = datetime.combine(end + timedelta(days=1), datetime.min.time()).replace(tzinfo=tz)
    return first, last
